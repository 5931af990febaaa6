"""Train on a CUDA GPU: wide teachers, then small students distilled from them.

``fer-model gpu run --data train.npz --val val.npz --out DIR`` trains
the teachers side by side, then the students side by side, each as its own
process sharing the one GPU, and leaves in ``DIR/<name>/`` the same records as
``fer-model train`` (``best.keras``, ``history.csv``, ``curves.png``,
``config.json``). ``fer-model export`` turns a student's ``best.keras`` into
the shipped int8 model on any machine. ``fer-model gpu students``
then trains more students from one of them with the same teachers, a cycle
that costs only the students' time on a machine that still holds ``DIR``.

The lent GPU machines have PyTorch but no TensorFlow, so this runs Keras 3 on
its torch backend with the same :func:`training.model.build_model`; a
``.keras`` file does not depend on the backend that wrote it. Four things
differ from the CPU loop in :mod:`training.train`, because on a GPU a step is
cheap and Python is not:

- the forward pass runs as plain torch operations on the model's own
  variables (:mod:`training.torch_forward`), skipping Keras's per-layer Python
  work, for the students and for the teachers that label their batches;
- augmentation runs on the GPU (:mod:`training.augment_torch`, the same
  :class:`~training.augment_config.AugmentConfig`);
- distillation is online: each step a student matches the teachers' mean
  probabilities on the very faces it sees, augmented ("consistent teaching",
  Beyer et al. 2022, where students gain from long schedules);
- schedules run on wall-clock time: the learning rate follows a cosine over
  the time budget, so a run on a time-limited machine ends on time and anneals
  fully whatever the card's speed.

Each model's options are a :class:`~training.config.TrainConfig`, as for
``fer-model train``, whose ``--backend torch`` runs one such worker.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fer_tui.emotions import NUM_CLASSES
from training.augment_config import AugmentConfig
from training.config import TrainConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
WORKER = [sys.executable, "-m", "training.cli", "gpu", "fit"]
"""How ``run`` and ``students`` start one model's worker process."""


@app.callback()
def _gpu_root() -> None:
    """Train on a CUDA GPU: wide teachers, then small students distilled from them."""
    # Before anything imports Keras: the GPU machines have torch, not TensorFlow.
    os.environ.setdefault("KERAS_BACKEND", "torch")


def learning_rate_at(progress: float, config: TrainConfig) -> float:
    """Linear warm-up from a tenth of the peak, then a cosine down to 1 % of it.

    ``progress`` is the share of the time budget spent. The same curve as the
    Keras backend's ``CosineDecay`` over its steps (:mod:`training.train`).
    """
    peak = config.learning_rate
    if progress < config.warmup_fraction:
        return peak * (0.1 + 0.9 * progress / config.warmup_fraction)
    rest = (progress - config.warmup_fraction) / (1.0 - config.warmup_fraction)
    return peak * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(rest, 1.0))))


def fit(config: TrainConfig, copy_best_to: Path | None = None) -> Path:
    """Train one model for its time budget in ``config.out``; return its ``best.keras``.

    ``copy_best_to`` also receives each new best model as soon as it is saved,
    so a machine taken back mid-run still leaves the best so far there.
    """
    import keras
    import torch

    from training.data import load_faces
    from training.model import build_model
    from training.torch_forward import torch_forward
    from training.train import plot_curves, write_history

    if config.time_budget_seconds is None:
        raise ValueError("the torch backend schedules over wall-clock time: it needs a budget")
    seconds, out = config.time_budget_seconds, Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cudnn.benchmark = True
    keras.utils.set_random_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    train_set, val_set = load_faces(config.data, "train"), load_faces(config.val, "val")
    x_train = torch.as_tensor(train_set.x, device=device)
    y_train = torch.as_tensor(train_set.y, device=device)
    x_val = torch.as_tensor(val_set.x, device=device)
    y_val = torch.as_tensor(val_set.y, device=device)

    model = build_model(config.widths, config.convs_per_stage, config.dropout)
    if config.init_weights:
        model.set_weights(load_weights(config.init_weights))
    forward = torch_forward(model)  # Keras's per-layer Python cost would pace the GPU
    teachers = [
        torch_forward(keras.models.load_model(path, compile=False)) for path in config.teachers
    ]
    params = [v.value for v in model.trainable_variables]
    optimizer = torch.optim.AdamW(
        params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=device == "cuda"
    )
    ensemble_acc = _evaluate(_Ensemble(teachers), x_val, y_val)[1] if teachers else None
    _write_run_config(out, config, device, ensemble_acc)

    rng = np.random.default_rng(config.seed)
    batches = _Batches(x_train, y_train, teachers, config, generator, rng)
    history: list[dict] = []
    best_val, best_path = -1.0, out / "best.keras"
    started = time.monotonic()
    epoch = 0
    while time.monotonic() - started < seconds:
        epoch += 1
        epoch_started = time.monotonic()
        loss, accuracy, seen = _one_epoch(forward, optimizer, batches, config, started, seconds)
        if seen == 0:
            break
        val_loss, val_acc = _evaluate(forward, x_val, y_val)
        row = {
            "epoch": epoch,
            "loss": loss,
            "accuracy": accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.monotonic() - epoch_started, 1),
        }
        history.append(row)
        if val_acc > best_val:
            best_val = val_acc
            model.save(best_path)
            if copy_best_to:
                shutil.copyfile(best_path, copy_best_to)
        write_history(out / "history.csv", history)
        print(f"{config.name} epoch {epoch}: " + json.dumps(row), flush=True)
    model.save(out / "last.keras")
    plot_curves(history, out / "curves.png")
    return best_path


@dataclass
class _Batches:
    """The training faces on the device, and how one step's batch and targets are made."""

    x: Any  # uint8 N×48×48 tensor (Any: torch is optional and untyped for mypy here)
    y: Any  # int64 N tensor
    teachers: list
    config: TrainConfig
    generator: Any  # torch's, for the shuffling order
    rng: np.random.Generator  # numpy's, for the augmentation draws

    def get(self, index):
        """Augmented faces (N×48×48×1, 0–255) and their targets for ``index``."""
        from training.augment_torch import augment_batch

        faces = augment_batch(self.x[index, None].float(), self.config.augment, self.rng)
        faces = faces.permute(0, 2, 3, 1)  # N×H×W×1, as the Keras model takes them
        return faces, _targets(self.y[index], faces, self.teachers, self.config)


def _one_epoch(
    forward, optimizer, batches: _Batches, config: TrainConfig, started: float, seconds: float
):
    """One shuffled pass (or until the budget ends); mean loss, accuracy and faces seen."""
    import torch

    n = len(batches.y)
    order = torch.randperm(n, device=batches.y.device, generator=batches.generator)
    loss_sum = torch.zeros((), device=batches.y.device)
    correct = torch.zeros((), device=batches.y.device)
    seen = 0
    for step in range(n // config.batch_size):
        progress = (time.monotonic() - started) / seconds
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(progress, config)
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        faces, target = batches.get(index)
        with _autocast(faces.device, config):
            probs = forward(faces, True).float()
        loss = -(target * torch.log(probs.clamp_min(1e-7))).sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        correct += (probs.argmax(dim=1) == batches.y[index]).sum()
        seen += len(index)
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1), seen


def _autocast(device, config: TrainConfig):
    """bfloat16 convolutions and products where ``config.bf16`` asks (statistics stay float32)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)


def _targets(labels, faces, teachers, config: TrainConfig):
    """Smoothed one-hot labels, mixed with the teachers' mean probabilities on ``faces``."""
    import torch

    smooth = config.label_smoothing
    target = torch.full((len(labels), NUM_CLASSES), smooth / NUM_CLASSES, device=faces.device)
    target.scatter_(1, labels[:, None], 1.0 - smooth + smooth / NUM_CLASSES)
    if not teachers:
        return target
    with torch.no_grad(), _autocast(faces.device, config):
        soft = _Ensemble(teachers)(faces, training=False).float()
    return (1.0 - config.distill_weight) * target + config.distill_weight * soft


class _Ensemble:
    """Mean probabilities of several forward functions, callable like one."""

    def __init__(self, forwards) -> None:
        self.forwards = forwards

    def __call__(self, faces, training: bool = False):
        import torch

        return torch.stack([f(faces, training) for f in self.forwards]).mean(dim=0)


def _evaluate(forward, faces, labels, batch_size: int = 1024) -> tuple[float, float]:
    """Validation loss (plain cross-entropy) and accuracy, in inference mode."""
    import torch

    loss, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            batch = faces[start : start + batch_size, :, :, None].float()
            probs = forward(batch, False)
            truth = labels[start : start + batch_size]
            picked = probs.gather(1, truth[:, None]).clamp_min(1e-7)
            loss += float(-torch.log(picked).sum())
            correct += int((probs.argmax(dim=1) == truth).sum())
    return loss / len(labels), correct / len(labels)


def _write_run_config(
    out: Path, config: TrainConfig, device: str, ensemble_acc: float | None
) -> None:
    import keras
    import torch

    from training.data import file_sha256

    record = {
        "command": shlex.join(["fer-model", *sys.argv[1:]]),  # argv: [cli.py, "gpu", "fit", ...]
        "config": config.to_json(),
        "data": {"train": file_sha256(config.data), "val": file_sha256(config.val)},
        "teacher_ensemble_val_accuracy": ensemble_acc,
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "numpy": np.__version__,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "config.json").write_text(json.dumps(record, indent=2) + "\n")


def parse_layout(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``"64,128,256,512/2,2,2,2"`` → widths and convolutions per stage."""
    widths, _, convs = text.partition("/")
    parsed = (
        tuple(int(w) for w in widths.split(",")),
        tuple(int(c) for c in (convs or "2").split(",")),
    )
    if len(parsed[1]) == 1:
        parsed = (parsed[0], parsed[1] * len(parsed[0]))
    if len(parsed[0]) != len(parsed[1]):
        raise typer.BadParameter(f"{text!r}: one convolution count per width")
    return parsed


KeepOption = Annotated[
    Path | None,
    typer.Option(help="Also copy results here as they arrive: few files, none over 16 MB."),
]


@app.command("fit")
def fit_command(
    config_json: Annotated[str, typer.Option(help="A TrainConfig as JSON (its to_json).")],
    data: Annotated[
        str | None, typer.Option(help="Replaces the config's (an older worker's has none).")
    ] = None,
    val: Annotated[str | None, typer.Option(help="Replaces the config's.")] = None,
    out: Annotated[Path | None, typer.Option(help="Replaces the config's.")] = None,
    copy_best_to: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Train one model (the worker that ``run`` starts per model)."""
    paths = {"data": data, "val": val, "out": None if out is None else str(out)}
    given = {key: value for key, value in paths.items() if value is not None}
    fit(TrainConfig.from_json(json.loads(config_json), **given), copy_best_to)


@app.command("run")
def run_command(
    data: Annotated[str, typer.Option(help="Training faces (.npz, fer2013.csv or folders).")],
    val: Annotated[str, typer.Option(help="Validation faces, for choosing each best epoch.")],
    out: Annotated[Path, typer.Option(help="Run directory; one folder per model.")],
    teacher: Annotated[
        list[str], typer.Option(help="A teacher layout, WIDTHS/CONVS; repeat for an ensemble.")
    ] = ["64,128,256,512/2,2,2,2"],  # noqa: B006 (typer reads the default)
    student: Annotated[
        list[str], typer.Option(help="A student layout, WIDTHS/CONVS; repeat to train several.")
    ] = ["32,48,96,192/1,2,2,2"],  # noqa: B006
    teacher_seconds: Annotated[
        float, typer.Option(help="Wall-clock budget of each teacher.")
    ] = 300,
    student_seconds: Annotated[
        float, typer.Option(help="Wall-clock budget of each student.")
    ] = 200,
    teacher_lr: Annotated[float, typer.Option()] = 1e-3,
    student_lr: Annotated[float, typer.Option()] = 2e-3,
    teacher_batch: Annotated[int, typer.Option(help="Larger: fewer Python-bound steps.")] = 128,
    student_batch: Annotated[int, typer.Option()] = 256,
    teacher_erase: Annotated[float, typer.Option(help="Random-erasing share for teachers.")] = 0.5,
    distill_weight: Annotated[float, typer.Option()] = 0.8,
    bf16: Annotated[
        bool, typer.Option(help="bfloat16 autocast for every forward pass (bench/gpu_step.py).")
    ] = False,
    teacher_init: Annotated[
        list[str], typer.Option(help="Start teacher K from this .keras or kept .npz ('-': none).")
    ] = [],  # noqa: B006
    student_init: Annotated[
        list[str], typer.Option(help="Start student K from this .keras or kept .npz ('-': none).")
    ] = [],  # noqa: B006
    seed: Annotated[int, typer.Option()] = 1,
    keep: KeepOption = None,
) -> None:
    """Train the teachers in parallel, then the students distilled from their ensemble."""
    teacher_inits = _inits(teacher_init, len(teacher), "teacher")
    student_inits = _inits(student_init, len(student), "student")
    teachers = [
        TrainConfig(
            data=data,
            val=val,
            out=str(out / f"teacher-{k}"),
            widths=widths,
            convs_per_stage=convs,
            time_budget_seconds=teacher_seconds,
            batch_size=teacher_batch,
            learning_rate=teacher_lr,
            seed=seed + k,
            init_weights=init,
            bf16=bf16,
            augment=AugmentConfig(erase_prob=teacher_erase),
        )
        for k, ((widths, convs), init) in enumerate(
            zip(map(parse_layout, teacher), teacher_inits, strict=True), start=1
        )
    ]
    students = [  # every option checked before the first (long) phase starts
        TrainConfig(
            data=data,
            val=val,
            out=str(out / f"student-{k}"),
            widths=widths,
            convs_per_stage=convs,
            time_budget_seconds=student_seconds,
            batch_size=student_batch,
            learning_rate=student_lr,
            label_smoothing=0.05,
            seed=seed + 100 + k,
            bf16=bf16,
            distill_weight=distill_weight,
            init_weights=init,
        )
        for k, ((widths, convs), init) in enumerate(
            zip(map(parse_layout, student), student_inits, strict=True), start=1
        )
    ]
    out.mkdir(parents=True, exist_ok=True)
    run_workers(teachers)  # a failed teacher ends the run: no students
    teacher_paths = tuple(
        str(path) for t in teachers if (path := Path(t.out) / "best.keras").exists()
    )
    if keep:
        _keep_teachers(teacher_paths, keep)
    students = [replace(config, teachers=teacher_paths) for config in students]
    run_workers(students, keep)
    _summarise(out, [*teachers, *students])
    if keep:
        _keep_records(out, keep)


@app.command("students")
def students_command(
    data: Annotated[str, typer.Option(help="Training faces, as for run.")],
    val: Annotated[str, typer.Option(help="Validation faces, as for run.")],
    out: Annotated[Path, typer.Option(help="The run directory of an earlier run.")],
    start: Annotated[
        str, typer.Option(help="The student in OUT whose best weights and teachers to reuse.")
    ],
    learning_rate: Annotated[
        list[float], typer.Option(help="Peak learning rate; one new student per value.")
    ],
    seconds: Annotated[float, typer.Option(help="Wall-clock budget of each new student.")],
    first: Annotated[int, typer.Option(help="Number of the first new student's folder.")],
    keep: KeepOption = None,
) -> None:
    """More students from an earlier student's best weights, with its teachers, side by side.

    On a warm machine the teachers trained by ``run`` are still in OUT, so a
    further cycle costs only the students' time.
    """
    students = follow_up_students(data, val, out, start, learning_rate, seconds, first)
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    run_workers(students, keep)
    _summarise(out, students)
    if keep:
        _keep_records(out, keep)


def follow_up_students(
    data: str, val: str, out: Path, start: str, rates: list[float], seconds: float, first: int
) -> list[TrainConfig]:
    """``start``'s config, restarted from its best weights once per learning rate.

    The new students train on ``data`` and ``val`` (the start's record may
    name other copies of them, or none: an older worker's holds no paths).

    Student ``first + i`` gets seed ``start``'s seed + ``first + i``: unlike
    its start and its siblings (gpu-s2's third call chose seeds so). Folder
    names already taken are refused; seeds are not checked across starts.
    """
    record, best = out / start / "config.json", out / start / "best.keras"
    if not record.exists() or not best.exists():
        raise typer.BadParameter(f"no config.json and best.keras of a student in {out / start}")
    saved = json.loads(record.read_text())["config"]
    base = TrainConfig.from_json(saved, data=data, val=val, out=str(out / start))
    if not base.teachers:
        raise typer.BadParameter(f"{start} had no teachers to reuse")
    taken = [n for i in range(len(rates)) if (out / (n := f"student-{first + i}")).exists()]
    if taken:
        raise typer.BadParameter(f"{', '.join(taken)} already in {out}")
    return [
        replace(
            base,
            out=str(out / f"student-{first + i}"),
            time_budget_seconds=seconds,
            learning_rate=rate,
            init_weights=str(best),
            seed=base.seed + first + i,
        )
        for i, rate in enumerate(rates)
    ]


def _inits(given: list[str], count: int, role: str) -> list[str | None]:
    """One starting point (or ``None``) per model from ``--{role}-init`` options."""
    if len(given) > count:
        raise typer.BadParameter(f"more --{role}-init than --{role}")
    padded = given + ["-"] * (count - len(given))
    return [None if init == "-" else init for init in padded]


def load_weights(path: str) -> list[np.ndarray]:
    """A model's weights from a ``.keras`` file or from an ``.npz`` of :func:`save_weights`."""
    if path.endswith(".npz"):
        with np.load(path) as arrays:
            return [arrays[key].astype(np.float32) for key in sorted(arrays.files)]
    import keras

    return keras.models.load_model(path, compile=False).get_weights()


def _keep_teachers(paths: tuple[str, ...], keep: Path) -> None:
    """Save each teacher's weights as float16 arrays (half the size; enough to distil from)."""
    import keras

    keep.mkdir(parents=True, exist_ok=True)
    for path in paths:
        weights = keras.models.load_model(path, compile=False).get_weights()
        save_weights(weights, keep / f"{Path(path).parent.name}.npz")


def save_weights(weights: list[np.ndarray], path: Path) -> None:
    """Save weights as float16 arrays in layer order: half a ``.keras`` file's size."""
    # Any: numpy's stub would check **arrays against savez(allow_pickle: bool).
    arrays: dict[str, Any] = {f"w{i:03d}": w.astype(np.float16) for i, w in enumerate(weights)}
    np.savez(path, **arrays)


def _keep_records(out: Path, keep: Path) -> None:
    """One tar of every model's records and the students' weights (not the teachers')."""
    import tarfile

    with tarfile.open(keep / "records.tar", "w") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and _worth_keeping(path):
                tar.add(path, arcname=str(path.relative_to(out)))


def _worth_keeping(path: Path) -> bool:
    """Records and students' best weights; teachers' weights travel as float16 instead."""
    if path.suffix != ".keras":
        return True
    return path.name == "best.keras" and not path.parent.name.startswith("teacher")


def run_workers(configs: list[TrainConfig], keep: Path | None = None) -> None:
    """Start one ``fit`` process per config and wait for all of them.

    A worker that fails (non-zero exit) fails the whole command: one ``error:``
    line naming the workers and their exit status, then exit status 1.
    """
    procs = []
    for config in configs:
        command = [*WORKER, "--config-json", json.dumps(config.to_json())]
        if keep and config.teachers:
            command += ["--copy-best-to", str(keep / f"{config.name}.keras")]
        env = {**os.environ, "OMP_NUM_THREADS": "2", "KERAS_BACKEND": "torch"}
        procs.append(subprocess.Popen(command, env=env))
    codes = [(c.name, p.wait()) for c, p in zip(configs, procs, strict=True)]
    if failed := [f"{name} (exit {code})" for name, code in codes if code != 0]:
        print(f"error: worker failed: {', '.join(failed)}", file=sys.stderr, flush=True)
        raise typer.Exit(1)


def _summarise(out: Path, configs: list[TrainConfig]) -> None:
    """Print and save each model's best validation accuracy and epochs."""
    rows = {}
    for config in configs:
        path = Path(config.out) / "history.csv"
        if not path.exists():
            continue
        with path.open(newline="") as handle:
            history = list(csv.DictReader(handle))
        best = max(history, key=lambda row: float(row["val_accuracy"]))
        rows[config.name] = {
            "layout": f"{config.widths}/{config.convs_per_stage}",
            "epochs": len(history),
            "best_epoch": int(best["epoch"]),
            "best_val_accuracy": float(best["val_accuracy"]),
            "last_val_accuracy": float(history[-1]["val_accuracy"]),
        }
    (out / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2), flush=True)
