"""``fer-model``: train, evaluate and export the expression model.

Errors a user can make (a missing path, a wrong layout, a model of the wrong
shape) are printed as one line and exit with status 2, never as a traceback.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from training.data import DataError, load_faces

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train, evaluate and export the FER-TMS expression model.")
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Train, evaluate and export the FER-TMS expression model."""


def fail(message: str) -> None:
    """Print one clear error line and exit with status 2."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Training data: .npz, fer2013.csv or image folder.")],
    val: Annotated[Path, typer.Option(help="Validation data, same formats (csv: PublicTest).")],
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints, history, curves.")],
    epochs: Annotated[int, typer.Option(min=1, help="Epochs; the LR schedule spans them.")] = 30,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 2e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="AdamW decoupled decay.")] = 0.05,
    warmup_epochs: Annotated[float, typer.Option(min=0.0)] = 0.5,
    label_smoothing: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.1,
    widths: Annotated[str, typer.Option(help="Channels per stage, comma-separated.")]
    = "32,64,128,256",
    convs_per_stage: Annotated[str, typer.Option(
        help="Convolutions per stage: one number, or one per stage comma-separated.")] = "1,2,2,2",
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.4,
    seed: Annotated[int, typer.Option(help="Seed for weights, shuffling and augmentation.")]
    = 1234,
    time_budget: Annotated[float | None, typer.Option(
        min=0.0, help="Stop (resumably) before an epoch would end past this many minutes.")]
    = None,
    max_steps_per_epoch: Annotated[int | None, typer.Option(
        min=1, help="Cap steps per epoch (smoke tests).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from last.keras.")]
    = False,
) -> None:
    """Train the classifier on FER2013 and keep the epoch with the best validation accuracy."""
    from training.train import TrainConfig
    from training.train import train as run_training

    width_tuple = _int_tuple(widths, "--widths")
    convs = _int_tuple(convs_per_stage, "--convs-per-stage")
    if len(convs) == 1:
        convs = convs * len(width_tuple)
    if len(convs) != len(width_tuple):
        fail("--convs-per-stage needs one number, or one per stage of --widths")
    try:
        train_set = load_faces(data, "train")
        val_set = load_faces(val, "val")
    except DataError as exc:
        fail(str(exc))
    if resume and not (out / "last.keras").exists():
        fail(f"--resume: no checkpoint at {out / 'last.keras'}")
    config = TrainConfig(
        data=str(data), val=str(val), out=str(out), epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, weight_decay=weight_decay,
        label_smoothing=label_smoothing, widths=width_tuple, convs_per_stage=convs,
        warmup_epochs=warmup_epochs,
        dropout=dropout, seed=seed, time_budget_minutes=time_budget,
        max_steps_per_epoch=max_steps_per_epoch,
    )
    err.print(f"train: {len(train_set)} faces from {train_set.source}; "
              f"val: {len(val_set)} from {val_set.source}")
    best = run_training(config, train_set, val_set, resume=resume,
                        command=shlex.join(["fer-model", *sys.argv[1:]]))
    err.print(f"best model: {best}")


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
