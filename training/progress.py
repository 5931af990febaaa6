"""A rich progress display for training: one bar for the run, one for the epoch.

When stderr is not a terminal (a background run logging to a file) the bars do
not render, so a plain line every ``log_every`` steps shows the run is alive.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """Context manager that renders training progress and prints a line per epoch."""

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int,
        start_epoch: int = 0,
        batch_size: int = 0,
        log_every: int = 50,
    ) -> None:
        self.console = Console(stderr=True)
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.log_every = log_every if not self.console.is_terminal else 0
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.run_task = self.progress.add_task("run", total=epochs, completed=start_epoch, stats="")
        self.epoch_task = self.progress.add_task("epoch", total=steps_per_epoch, stats="")

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def callback(self):
        """A Keras callback that advances the epoch bar with the running loss/accuracy."""
        import keras

        progress, task, owner = self.progress, self.epoch_task, self
        progress.reset(task, total=self.steps_per_epoch)

        class _Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.started = time.monotonic()

            def on_train_batch_end(self, batch, logs=None):
                logs = logs or {}
                stats = f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}"
                progress.update(task, completed=batch + 1, stats=stats)
                step = batch + 1
                if owner.log_every and step % owner.log_every == 0:
                    rate = step * owner.batch_size / max(time.monotonic() - self.started, 1e-9)
                    owner.say(
                        f"  step {step}/{owner.steps_per_epoch}: {rate:.0f} images/s  {stats}"
                    )

        return _Callback()

    def epoch_done(self, row: dict, best_val: float) -> None:
        self.progress.advance(self.run_task)
        self.say(
            f"epoch {int(row['epoch'])}: loss {row['loss']:.4f} acc {row['accuracy']:.4f}"
            f"  val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f}"
            f"  (best {best_val:.4f})  lr {row['lr']:.2e}  {row['seconds']:.0f}s"
        )

    def say(self, text: str) -> None:
        self.console.print(text)
