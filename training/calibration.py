"""Confidence calibration: temperature scaling fitted by NLL, checked by ECE.

A model is calibrated when, of the faces it labels with confidence ~p, a share
~p is right; the expected calibration error (:func:`training.metrics.compute_metrics`,
15 equal-width bins) measures the gap. One temperature T divides the
log-probabilities (:func:`fer_tui.classifier.tempered`); it is fitted by
minimising the negative log-likelihood over a grid, which is enough for one
parameter and needs no optimiser. The only labelled faces not used for training
are the report set (``val.npz``), so :func:`two_fold` fits on one half and
scores the other, and back: an estimate of the ECE on faces T never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_tui.classifier import tempered
from fer_tui.emotions import LABELS
from training.metrics import ECE_BINS, expected_calibration_error

#: Temperatures tried: 0.50 … 3.00 in steps of 0.01.
TEMPERATURES = np.round(np.arange(0.5, 3.0001, 0.01), 2)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = probs[np.arange(len(y)), y]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The grid temperature with the lowest NLL of ``probs`` on labels ``y``."""
    losses = [nll(tempered(probs, float(t)), y) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and the ECE it gives, on all faces and by two folds."""

    temperature: float
    ece_before: float
    ece_after: float
    ece_two_fold: float
    folds: tuple[float, float]

    def to_json(self) -> dict:
        return {  # the temperature itself goes in the inference mode beside this
            "ece_before": round(self.ece_before, 4),
            "ece_after": round(self.ece_after, 4),
            "ece_two_fold": round(self.ece_two_fold, 4),
            "fold_temperatures": list(self.folds),
            "bins": ECE_BINS,
            "objective": "NLL over T in 0.50..3.00 step 0.01",
        }


def two_fold(probs: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """ECE on each half with T fitted on the other half, weighted by size; the two Ts."""
    order = np.random.default_rng(seed).permutation(len(y))
    halves = (order[: len(y) // 2], order[len(y) // 2 :])
    errors, temps = [], []
    for fit, score in (halves, halves[::-1]):
        t = fit_temperature(probs[fit], y[fit])
        temps.append(t)
        errors.append(expected_calibration_error(tempered(probs[score], t), y[score]) * len(score))
    return float(sum(errors) / len(y)), (temps[0], temps[1])


def calibrate(probs: np.ndarray, y: np.ndarray, seed: int = 0) -> Calibration:
    """Fit T on all of ``probs`` and estimate its ECE on unseen faces by two folds."""
    temperature = fit_temperature(probs, y)
    ece_two_fold, folds = two_fold(probs, y, seed)
    return Calibration(
        temperature,
        expected_calibration_error(probs, y),
        expected_calibration_error(tempered(probs, temperature), y),
        ece_two_fold,
        folds,
    )


def plot_reliability(probs: np.ndarray, y: np.ndarray, path: Path, title: str) -> None:
    """Save a reliability diagram: accuracy against confidence in ECE_BINS bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, ECE_BINS - 1)
    counts = np.bincount(which, minlength=ECE_BINS)
    accuracy = np.bincount(which, weights=correct, minlength=ECE_BINS) / np.maximum(counts, 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    shown = counts > 0
    top.bar(
        centres[shown], accuracy[shown], width=1 / ECE_BINS, edgecolor="black", label="accuracy"
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylabel("accuracy in bin")
    top.set_ylim(0, 1)
    top.set_title(title)
    top.legend(loc="upper left")
    bottom.bar(centres, counts, width=1 / ECE_BINS, color="grey")
    bottom.set_xlabel(f"confidence ({ECE_BINS} equal-width bins; {len(LABELS)} classes)")
    bottom.set_ylabel("faces")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
