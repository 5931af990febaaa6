"""The loop behind ``fer-model train --backend keras``: checkpoints, resume, time budget.

A run directory holds everything a run needs to continue or be audited:

- ``config.json``: every option (:class:`~training.config.TrainConfig`), the command
  line, data sha256s, library versions;
- ``last.keras``: model and optimiser state after the latest finished epoch (``--resume``);
- ``best.keras``: the epoch with the best validation accuracy;
- ``history.csv``: loss/accuracy/learning rate per epoch; ``curves.png`` plots it;
- ``labels.txt``: the class names in output order.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from fer_tui.emotions import LABELS
from training.config import TrainConfig
from training.data import FaceSet, file_sha256

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class IncompatibleWeights(ValueError):
    """``--init-weights`` or ``--teacher`` names a model that cannot serve the run."""


def train(
    config: TrainConfig,
    train_set: FaceSet,
    val_set: FaceSet,
    *,
    resume: bool = False,
    command: str = "",
) -> Path:
    """Train (or resume) a run; return the path of the best model."""
    import keras
    import tensorflow as tf

    from training.model import build_model

    targets = _targets(train_set, config)  # first: a bad --teacher leaves no run behind
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)

    last_path, best_path = out / "last.keras", out / "best.keras"
    history = _read_history(out / "history.csv") if resume else []
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
        model = keras.models.load_model(last_path)
    else:
        model = build_model(config.widths, config.convs_per_stage, config.dropout)
        if config.init_weights:
            _warm_start(model, Path(config.init_weights))
        model.compile(
            optimizer=_optimizer(config, steps_per_epoch),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=["accuracy"],
        )
        _write_config(out, config, train_set, val_set, command)
        (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    start_epoch = len(history)
    best_val = max((row["val_accuracy"] for row in history), default=-1.0)

    train_ds = _train_dataset(train_set, targets, config, steps_per_epoch, start_epoch, tf)
    val_x = val_set.x[..., None].astype(np.float32)
    val_y = keras.utils.to_categorical(val_set.y, len(LABELS))
    budget = config.time_budget_seconds
    deadline = time.monotonic() + budget if budget else math.inf

    from training.progress import RichProgress

    with RichProgress(
        config.epochs, steps_per_epoch, start_epoch, batch_size=config.batch_size
    ) as progress:
        for epoch in range(start_epoch, config.epochs):
            started = time.monotonic()
            fit = model.fit(
                train_ds,
                epochs=epoch + 1,
                initial_epoch=epoch,
                steps_per_epoch=steps_per_epoch,
                verbose=0,
                shuffle=False,
                callbacks=[progress.callback()],
            )  # the dataset shuffles
            val_loss, val_acc = model.evaluate(val_x, val_y, batch_size=512, verbose=0)
            seconds = time.monotonic() - started
            row = {
                "epoch": epoch + 1,
                "loss": float(fit.history["loss"][-1]),
                "accuracy": float(fit.history["accuracy"][-1]),
                "val_loss": float(val_loss),
                "val_accuracy": float(val_acc),
                "lr": float(model.optimizer.learning_rate.numpy()),
                "seconds": round(seconds, 1),
            }
            history.append(row)
            model.save(last_path)
            if val_acc > best_val:
                best_val = val_acc
                model.save(best_path)
            write_history(out / "history.csv", history)
            progress.epoch_done(row, best_val)
            if time.monotonic() + seconds > deadline and epoch + 1 < config.epochs:
                progress.say(f"time budget reached after epoch {epoch + 1}; continue with --resume")
                break
    plot_curves(history, out / "curves.png")
    return best_path


def _warm_start(model, source: Path) -> None:
    """Copy another run's weights into ``model``: a new schedule on learnt features.

    Lets a later session continue an earlier one's model with a fresh cosine
    cycle (a warm restart) when the earlier schedule has already ended. A
    donor with the same layers but more channels is narrowed to ``model``'s
    widths (:mod:`training.narrow`), so a faster net starts from a trained one.
    """
    import keras

    from training.narrow import NarrowingError, narrow_weights

    donor = keras.models.load_model(source, compile=False).get_weights()
    shapes = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in donor] != shapes:
        try:
            donor = narrow_weights(donor, shapes)
        except NarrowingError as exc:
            raise IncompatibleWeights(
                f"{source}: its layers do not fit --widths/--convs-per-stage ({exc})"
            ) from None
    model.set_weights(donor)


def _targets(train_set: FaceSet, config: TrainConfig) -> np.ndarray:
    """Training targets: one-hot labels, mixed with the teachers' mean probabilities.

    Distillation from stronger (or wider) nets' soft labels tells the student
    which wrong classes are plausible for each face; several teachers are
    averaged (an ensemble labels better than any of its members), and each
    teacher's view is averaged over each face and its mirror image, since
    augmentation flips. The labels are computed once, before the first epoch.
    """
    targets = np.eye(len(LABELS), dtype=np.float32)[train_set.y]
    if not config.teachers:
        return targets
    from fer_tui.classifier import ModelError
    from training.predict import load_predictor, predict_probs

    soft = np.zeros_like(targets)
    for path in config.teachers:
        try:
            teacher = load_predictor(path)
        except ModelError as exc:
            raise IncompatibleWeights(f"--teacher {path}: {exc}") from None
        soft += predict_probs(teacher, train_set.x, flip=True).astype(np.float32)
    soft /= len(config.teachers)
    return (1.0 - config.distill_weight) * targets + config.distill_weight * soft


def _optimizer(config: TrainConfig, steps_per_epoch: int):
    import keras

    schedule = _schedule(config, steps_per_epoch)
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)


def _schedule(config: TrainConfig, steps_per_epoch: int):
    """Linear warm-up from a tenth of the peak, then a cosine to 1 % of it, over the steps.

    The torch worker's :func:`training.gpu.learning_rate_at` over its time budget.
    """
    import keras

    total = config.epochs * steps_per_epoch
    warmup = warmup_steps(config, steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate * 0.1,
        decay_steps=max(total - warmup, 1),
        alpha=0.01,
        warmup_target=config.learning_rate,
        warmup_steps=warmup,
    )


def warmup_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    """The steps of the learning-rate warm-up: its share of all the run's steps, rounded down."""
    # + 1e-6: --warmup-epochs W arrives as W / epochs, whose product with the
    # steps can fall an ulp short of the whole number of steps W asks for.
    return int(config.warmup_fraction * config.epochs * steps_per_epoch + 1e-6)


def _train_dataset(
    train_set: FaceSet,
    targets: np.ndarray,
    config: TrainConfig,
    steps_per_epoch: int,
    start_epoch: int,
    tf,
):
    """An endless shuffled, augmented stream of batches (the epoch count seeds the order)."""
    from training.augment import augment_batch

    x = train_set.x[..., None]
    y = targets
    seed = config.seed + 1000 * start_epoch  # a resumed run does not replay old batches
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(config.batch_size, drop_remainder=True)
    ds = ds.enumerate()

    def augment(step, batch):
        images, labels = batch
        images = tf.cast(images, tf.float32)
        images = augment_batch(images, config.augment, tf.stack([tf.cast(seed, tf.int64), step]))
        return images, labels

    return ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def _write_config(
    out: Path, config: TrainConfig, train_set: FaceSet, val_set: FaceSet, command: str
) -> None:
    import keras
    import tensorflow as tf

    record = {
        "command": command or " ".join(sys.argv),
        "config": config.to_json(),
        "data": {
            "train": {
                "source": train_set.source,
                "images": len(train_set),
                "sha256": _maybe_sha256(config.data),
            },
            "val": {
                "source": val_set.source,
                "images": len(val_set),
                "sha256": _maybe_sha256(config.val),
            },
        },
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "config.json").write_text(json.dumps(record, indent=2) + "\n")


def _maybe_sha256(path: str) -> str | None:
    return file_sha256(path) if Path(path).is_file() else None


def _read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def write_history(path: Path, history: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def plot_curves(history: list[dict], path: Path) -> None:
    """Save loss and accuracy per epoch, training against validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((ax_loss, "loss", "Loss"), (ax_acc, "accuracy", "Accuracy")):
        ax.plot(epochs, [row[key] for row in history], label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
