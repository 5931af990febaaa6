"""One training run's options, for either backend; saved as the run's ``config.json``.

``fer-model train --backend keras`` (:mod:`training.train`: Keras/TensorFlow,
epochs, checkpoints, resume) and ``--backend torch`` (:mod:`training.gpu`: one
``fer-model gpu fit`` worker, Keras on torch, a wall-clock schedule) both take
a :class:`TrainConfig`; so does every model of ``fer-model gpu run``. A few
fields are read by one backend only (their comments say so); ``fer-model
train`` refuses them for the other.

:meth:`TrainConfig.from_json` also reads the records of older versions: the
CPU trainer's (``warmup_epochs``, ``time_budget_minutes``, one ``teacher``)
and the GPU worker's (``name``, ``seconds``), the shipped model's among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.augment_config import AugmentConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; a field serves both backends unless noted."""

    data: str  # training faces: .npz, fer2013.csv or image folder
    val: str  # validation faces, which choose the best epoch
    out: str  # the run directory
    widths: tuple[int, ...] = (32, 64, 128, 256)  # channels per stage
    convs_per_stage: tuple[int, ...] = (1, 2, 2, 2)
    dropout: float = 0.4
    epochs: int = 30  # keras only: its schedule spans them (torch's spans the time budget)
    # keras: optional; stop, resumably, before an epoch would end past it.
    # torch: required; the learning-rate schedule spans it.
    time_budget_seconds: float | None = None
    max_steps_per_epoch: int | None = None  # keras only: a cap for smoke tests
    batch_size: int = 128
    learning_rate: float = 2e-3  # the peak, reached after the warm-up
    weight_decay: float = 0.05  # AdamW's decoupled decay
    # Share of the schedule spent warming up linearly from a tenth of the peak;
    # then a cosine down to 1 % of it (keras: of its steps; torch: of the budget).
    warmup_fraction: float = 0.03
    # keras: smooths the whole target; torch: only the labels' share of it.
    label_smoothing: float = 0.1
    seed: int = 1234  # weights, shuffling and augmentation
    # Start from this model's weights. keras: a .keras model, narrowed when wider
    # (training.narrow); torch: a .keras model or kept .npz of the same layout.
    init_weights: str | None = None
    # Distil from the mean probabilities of these models. keras: .keras or
    # .tflite, flip-averaged once before the first epoch; torch: .keras, on
    # each augmented batch as it is drawn.
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.5  # the teachers' share of each target
    bf16: bool = False  # torch only: bfloat16 autocast of the forward passes
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def name(self) -> str:
        """The run directory's name: a model's name in ``fer-model gpu``'s runs."""
        return Path(self.out).name

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values (tuples become lists): ``config.json``'s ``config``."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], **given: Any) -> TrainConfig:
        """The config that :meth:`to_json` (or an older version) wrote, ``given`` replacing fields.

        A GPU worker's record holds no paths: ``given`` supplies ``data``,
        ``val`` and ``out``. Unknown fields raise ``TypeError``.
        """
        values = _current_fields(dict(raw))
        values.update(given)
        if isinstance(augment := values.get("augment", {}), Mapping):
            strengths: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in augment.items()
            }
            values["augment"] = AugmentConfig(**strengths)
        for key in ("widths", "convs_per_stage", "teachers"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def _current_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the fields of older records renamed into today's units."""
    if "teacher" in raw:  # the CPU trainer's, before --teacher could be repeated
        teacher = raw.pop("teacher")
        if teacher and "teachers" not in raw:
            raw["teachers"] = [teacher]
    if "warmup_epochs" in raw:  # the CPU trainer's
        raw["warmup_fraction"] = raw.pop("warmup_epochs") / raw.get("epochs", TrainConfig.epochs)
    if "time_budget_minutes" in raw:  # the CPU trainer's
        minutes = raw.pop("time_budget_minutes")
        raw["time_budget_seconds"] = None if minutes is None else 60.0 * minutes
    if "seconds" in raw:  # the GPU worker's
        raw["time_budget_seconds"] = raw.pop("seconds")
    raw.pop("name", None)  # the GPU worker's; now the run directory's name
    return raw
