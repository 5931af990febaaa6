"""``fer-model``: train, evaluate and export the expression model.

Errors a user can make (a missing path, a wrong layout, a model of the wrong
shape) are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from training.config import TrainConfig
from training.data import DataError, load_faces, shared_split
from training.gpu import app as gpu_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train, evaluate and export the FER-TMS expression model.",
)
app.add_typer(gpu_app, name="gpu")  # fer-model gpu run|students|fit: the torch/GPU trainer
err = Console(stderr=True, soft_wrap=True)  # one error, one line: never hard-wrap
_DEFAULT = TrainConfig(data="", val="", out="")
"""``fer-model train``'s defaults: the config's own."""
_DEFAULT_WIDTHS = ",".join(map(str, _DEFAULT.widths))
_DEFAULT_CONVS = ",".join(map(str, _DEFAULT.convs_per_stage))


@app.callback()
def _root() -> None:
    """Train, evaluate and export the FER-TMS expression model."""


def fail(message: str) -> NoReturn:
    """Print one clear error line and exit with status 2."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option(help="Training data: .npz, fer2013.csv or image folder.")],
    val: Annotated[Path, typer.Option(help="Validation data, same formats (csv: PublicTest).")],
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints, history, curves.")],
    epochs: Annotated[
        int,
        typer.Option(
            min=1,
            help="keras: epochs, which the LR schedule spans; torch: only the unit of "
            "--warmup-epochs.",
        ),
    ] = _DEFAULT.epochs,
    batch_size: Annotated[int, typer.Option(min=1)] = _DEFAULT.batch_size,
    learning_rate: Annotated[
        float, typer.Option(min=0.0, help="The peak, after the warm-up.")
    ] = _DEFAULT.learning_rate,
    weight_decay: Annotated[
        float, typer.Option(min=0.0, help="AdamW decoupled decay.")
    ] = _DEFAULT.weight_decay,
    warmup_epochs: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Linear warm-up, in epochs: the first --warmup-epochs / --epochs of the "
            "schedule (torch: of --time-budget).",
        ),
    ] = 0.5,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.5)] = _DEFAULT.label_smoothing,
    widths: Annotated[
        str, typer.Option(help="Channels per stage, comma-separated.")
    ] = _DEFAULT_WIDTHS,
    convs_per_stage: Annotated[
        str,
        typer.Option(help="Convolutions per stage: one number, or one per stage comma-separated."),
    ] = _DEFAULT_CONVS,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9)] = _DEFAULT.dropout,
    seed: Annotated[
        int, typer.Option(help="Seed for weights, shuffling and augmentation.")
    ] = _DEFAULT.seed,
    time_budget: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Minutes. keras: stop (resumably) before an epoch would end past them; "
            "torch (required): the schedule spans them.",
        ),
    ] = None,
    max_steps_per_epoch: Annotated[
        int | None, typer.Option(min=1, help="keras only: cap steps per epoch (smoke tests).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="keras only: continue the run in --out from last.keras, with its own "
            "options (config.json) except those given here; --time-budget is this command's."
        ),
    ] = False,
    init_weights: Annotated[
        Path | None,
        typer.Option(
            help="Start a new run from this .keras model's weights (fresh optimiser and "
            "schedule); keras narrows a wider model to --widths, keeping its strongest channels."
        ),
    ] = None,
    teacher: Annotated[
        list[Path] | None,
        typer.Option(
            help="Distil from this model: its probabilities are mixed into the targets "
            "(keras: .keras/.tflite, flip-averaged once; torch: .keras, on each augmented "
            "batch). Repeat it for an ensemble: their mean is used."
        ),
    ] = None,
    distill_weight: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="The teacher's share of each target.")
    ] = _DEFAULT.distill_weight,
    bf16: Annotated[
        bool, typer.Option(help="torch only: bfloat16 autocast of the forward passes.")
    ] = _DEFAULT.bf16,
    backend: Annotated[
        str,
        typer.Option(
            help="keras: Keras/TensorFlow epochs on CPU; torch: one `fer-model gpu fit` worker "
            "(Keras on torch, wall-clock schedule over --time-budget, online distillation)."
        ),
    ] = "keras",
) -> None:
    """Train the classifier on FER2013 and keep the epoch with the best validation accuracy."""
    if backend not in ("keras", "torch"):
        fail(f"--backend must be keras or torch, got {backend!r}")
    if backend == "torch" and resume:
        fail("--resume is for --backend keras (a torch run is one wall-clock cycle)")
    if backend == "torch" and time_budget is None:
        fail("--backend torch schedules over wall-clock time: give --time-budget")
    if backend == "torch" and max_steps_per_epoch is not None:
        fail("--max-steps-per-epoch is for --backend keras")
    if backend == "torch" and any(path.suffix != ".keras" for path in teacher or ()):
        fail("--teacher: --backend torch distils from .keras models only")
    if backend == "keras" and bf16:
        fail("--bf16 is for --backend torch")
    from training.train import IncompatibleWeights
    from training.train import train as run_training

    options: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "weight_decay": weight_decay,
        "label_smoothing": label_smoothing,
        "widths": _int_tuple(widths, "--widths"),
        "convs_per_stage": _int_tuple(convs_per_stage, "--convs-per-stage"),
        "dropout": dropout,
        "seed": seed,
        "max_steps_per_epoch": max_steps_per_epoch,
        "teachers": tuple(str(path) for path in teacher or ()),
        "distill_weight": distill_weight,
        "bf16": bf16,
    }
    if resume:  # what the command line left unset comes from the run's config.json
        names = (*options, "warmup_fraction")
        options.update(_resumed_options(ctx, data, val, out, names))
    if "warmup_fraction" not in options:  # the one place --warmup-epochs becomes a share
        if warmup_epochs > options["epochs"]:
            fail("--warmup-epochs cannot exceed --epochs")
        options["warmup_fraction"] = warmup_epochs / options["epochs"]
    if len(options["convs_per_stage"]) == 1:
        options["convs_per_stage"] *= len(options["widths"])
    if len(options["convs_per_stage"]) != len(options["widths"]):
        fail("--convs-per-stage needs one number, or one per stage of --widths")
    try:
        train_set = load_faces(data, "train")
        val_set = load_faces(val, "val")
    except DataError as exc:
        fail(str(exc))
    if resume and not (out / "last.keras").exists():
        fail(f"--resume: no checkpoint at {out / 'last.keras'}")
    if init_weights is not None and (resume or not init_weights.is_file()):
        fail(
            f"--init-weights: no such model {init_weights}"
            if not resume
            else "--init-weights starts a new run; it cannot be combined with --resume"
        )
    config = TrainConfig(
        data=str(data),
        val=str(val),
        out=str(out),
        time_budget_seconds=None if time_budget is None else 60.0 * time_budget,
        init_weights=str(init_weights) if init_weights else None,
        **options,
    )
    if backend == "torch":  # one `fer-model gpu fit` worker, in its own process
        from training.gpu import run_workers

        run_workers([config])
        return
    for path in config.teachers:
        _check_teacher(Path(path))
    err.print(
        f"train: {len(train_set)} faces from {train_set.source}; "
        f"val: {len(val_set)} from {val_set.source}"
    )
    try:
        best = run_training(
            config,
            train_set,
            val_set,
            resume=resume,
            command=shlex.join(["fer-model", *sys.argv[1:]]),
        )
    except IncompatibleWeights as exc:
        fail(str(exc))
    err.print(f"best model: {best}")


_OPTIONS = {"teachers": "teacher", "warmup_fraction": "warmup_epochs"}
"""Config fields whose ``fer-model train`` option has another name."""


def _resumed_options(
    ctx: typer.Context, data: Path, val: Path, out: Path, names: tuple[str, ...]
) -> dict[str, Any]:
    """The run's saved values of the fields ``names`` whose options this command left unset."""
    path = out / "config.json"
    if not path.exists():  # a run from before config.json: the command line alone
        return {}
    try:
        raw = json.loads(path.read_text())["config"]
        saved = TrainConfig.from_json(raw, data=str(data), val=str(val), out=str(out))
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"--resume: cannot read the run's options from {path}")
    options: dict[str, Any] = {}
    for name in names:
        source = ctx.get_parameter_source(_OPTIONS.get(name, name))  # click's ParameterSource
        if source is not None and source.name == "DEFAULT":
            options[name] = getattr(saved, name)
    return options


def _check_teacher(path: Path) -> None:
    """Fail early, before any output, on a --teacher that is missing or not 48×48×1 → 7."""
    from fer_tui.classifier import ModelError
    from training.predict import load_predictor

    if not path.is_file():
        fail(f"--teacher: no such model {path}")
    try:
        load_predictor(path)
    except ModelError as exc:
        fail(f"--teacher: {exc}")


@app.command()
def export(
    model: Annotated[Path, typer.Option(help="Trained .keras model (48×48×1 → 7).")],
    out: Annotated[Path, typer.Option(help="The .tflite to write; its .json goes beside it.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Training data for int8 calibration [default: ../shared/data/fer2013/train.npz]."
        ),
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option(
            help="Validation data for the float/int8 comparison "
            "[default: ../shared/data/fer2013/val.npz]."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for picking calibration faces.")] = 0,
) -> None:
    """Quantise a model to full-integer int8 TFLite, calibrated on real training faces."""
    from fer_tui.classifier import ModelError
    from training.export import comparison_table
    from training.export import export as run_export
    from training.predict import load_keras_model

    if out.suffix != ".tflite":
        fail(f"--out must name a .tflite file, got {out}")
    data_path = _data_or_default(data, "train", "--data")
    val_path = _data_or_default(val, "val", "--val")
    try:
        keras_model = load_keras_model(model)
        train_set = load_faces(data_path, "train")
        val_set = load_faces(val_path, "val")
    except (ModelError, DataError) as exc:
        fail(str(exc))
    command = shlex.join(["fer-model", *sys.argv[1:]])
    err.print(
        f"calibrating on {train_set.source}, validating on {len(val_set)} faces "
        f"from {val_set.source}"
    )
    try:
        record = run_export(
            keras_model,
            model,
            out,
            train_set,
            val_set,
            {"train": data_path, "val": val_path},
            command,
            seed=seed,
        )
    except ModelError as exc:
        fail(str(exc))
    typer.echo(comparison_table(record))
    typer.echo(
        f"wrote {out} ({record['file_bytes'] / 1024:.0f} KiB) and {out.with_suffix('.json')}"
    )


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="A .keras or .tflite model.")],
    out: Annotated[
        Path, typer.Option(help="Folder for metrics.md, metrics.json and confusion.png.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Faces to score: .npz, fer2013.csv or image folder "
            "[default: ../shared/data/fer2013/val.npz]."
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="Split to read from a .csv or a folder of splits.")
    ] = "val",
    flip: Annotated[
        bool | None,
        typer.Option(
            "--flip/--no-flip",
            help="Average each face's scores with its mirror image's "
            "[default: as the model's JSON says, else no].",
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            min=0.01, help="Temperature for the scores [default: the model's JSON's, else 1]."
        ),
    ] = None,
) -> None:
    """Accuracy, per-class precision/recall/F1, macro-F1 and calibration error of a model,
    run as the client runs it (the inference mode in a .tflite's JSON) unless told otherwise."""
    from fer_tui.classifier import ModelError
    from training.evaluate import evaluate as run_evaluate
    from training.predict import load_predictor, model_inference

    data_path = _data_or_default(data, "val", "--data")
    try:
        faces = load_faces(data_path, split)
        predict = load_predictor(model)
        inference = model_inference(model)
    except (ModelError, DataError) as exc:
        fail(str(exc))
    results = run_evaluate(
        predict,
        faces,
        out,
        flip=inference.flip_average if flip is None else flip,
        temperature=inference.temperature if temperature is None else temperature,
        model_name=model.name,
    )
    typer.echo((out / "metrics.md").read_text(encoding="utf-8"))
    summary = ", ".join(
        f"{mode}: accuracy {m.accuracy:.4f} macro-F1 {m.macro_f1:.4f}"
        for mode, m in results.items()
    )
    typer.echo(f"{summary}; wrote {out}")


@app.command()
def calibrate(
    model: Annotated[Path, typer.Option(help="A .tflite model; its .json gets the result.")],
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled faces [default: ../shared/data/fer2013/val.npz]."),
    ] = None,
    split: Annotated[
        str, typer.Option(help="Split to read from a .csv or a folder of splits.")
    ] = "val",
    flip: Annotated[
        bool, typer.Option("--flip/--no-flip", help="The client flip-averages with this model.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the two-fold split.")] = 0,
) -> None:
    """Fit the temperature of a model's confidences (NLL) and record the client's
    inference mode in its JSON, with the calibration error before and after."""
    from fer_tui.classifier import InferenceMode, ModelError, combine_views
    from fer_tui.preprocess import mirrored
    from training.calibration import calibrate as fit
    from training.export import shown_path
    from training.predict import load_predictor

    meta_path = model.with_suffix(".json")
    if model.suffix != ".tflite" or not meta_path.is_file():
        fail(f"{model}: expected a .tflite model with its .json beside it")
    data_path = _data_or_default(data, split, "--data")
    try:
        faces = load_faces(data_path, split)
        predict = load_predictor(model)
    except (ModelError, DataError) as exc:
        fail(str(exc))
    probs = combine_views(predict(faces.x), predict(mirrored(faces.x)) if flip else None)
    result = fit(probs, faces.y, seed=seed)
    record = json.loads(meta_path.read_text(encoding="utf-8"))
    record["inference"] = {
        **InferenceMode(flip, result.temperature).to_json(),
        "fitted_on": {"data": shown_path(data_path), "images": len(faces), **result.to_json()},
        "command": shlex.join(["fer-model", *sys.argv[1:]]),
    }
    partial = meta_path.with_name(f".{meta_path.name}.partial")
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, meta_path)
    typer.echo(
        f"T = {result.temperature:.2f} (folds {result.folds[0]:.2f}, {result.folds[1]:.2f}); "
        f"ECE {result.ece_before:.4f} -> {result.ece_after:.4f} on the fitted faces, "
        f"{result.ece_two_fold:.4f} two-fold; wrote {meta_path}"
    )


def _data_or_default(path: Path | None, split: str, option: str) -> Path:
    if path is not None:
        return path
    default = shared_split(split)
    if default is None:
        fail(f"{option} is required: no {split}.npz under ../shared/data/fer2013")
    return default


def _int_tuple(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        fail(f"{option} must be comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        fail(f"{option} must be positive integers, got {text!r}")
    return values


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
