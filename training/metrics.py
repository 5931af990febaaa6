"""Classification metrics in plain numpy: confusion matrix, per-class P/R/F1, macro-F1, ECE.

Conventions follow scikit-learn's: confusion-matrix rows are true classes and
columns predicted ones; a precision or recall with an empty denominator is 0;
macro-F1 averages over the classes that occur in the labels or the predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_tui.emotions import LABELS, NUM_CLASSES

#: Equal-width confidence bins for the expected calibration error.
ECE_BINS = 15


@dataclass(frozen=True)
class Metrics:
    """Everything ``fer-model evaluate`` reports about one set of predictions."""

    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    ece: float
    precision: np.ndarray  # per class
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # true faces per class
    confusion: np.ndarray  # rows true, columns predicted

    def summary(self) -> dict[str, float]:
        """The headline figures, rounded, for JSON files and tables."""
        return {
            "accuracy": round(self.accuracy, 4),
            "macro_f1": round(self.macro_f1, 4),
            "ece": round(self.ece, 4),
        }


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Return the ``num_classes``² count matrix, rows true class, columns predicted class."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return precision, recall and F1 per class from a confusion matrix."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def expected_calibration_error(
    probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Return the ECE: the share-weighted gap between confidence and accuracy per bin.

    Confidence is the top probability; bins split [0, 1] into ``bins`` equal
    intervals, closed on the right, so a confidence of exactly 1 falls in the last.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            ece += gap * in_bin.mean()
    return float(ece)


def compute_metrics(probs: np.ndarray, y_true: np.ndarray) -> Metrics:
    """Score N×C class probabilities against N true labels."""
    probs = np.asarray(probs, np.float64)
    y_true = np.asarray(y_true, np.int64)
    if probs.ndim != 2 or len(probs) != len(y_true) or len(y_true) == 0:
        raise ValueError(
            f"need N×C probabilities for N>0 labels, got {probs.shape} and {y_true.shape}"
        )
    y_pred = probs.argmax(axis=1)
    confusion = confusion_matrix(y_true, y_pred, probs.shape[1])
    precision, recall, f1 = per_class_scores(confusion)
    support = confusion.sum(axis=1)
    seen = (support > 0) | (confusion.sum(axis=0) > 0)
    return Metrics(
        accuracy=float((y_pred == y_true).mean()),
        macro_precision=float(precision[seen].mean()),
        macro_recall=float(recall[seen].mean()),
        macro_f1=float(f1[seen].mean()),
        ece=expected_calibration_error(probs, y_true),
        precision=precision,
        recall=recall,
        f1=f1,
        support=support,
        confusion=confusion,
    )


def markdown_table(metrics: Metrics, labels: tuple[str, ...] = LABELS) -> str:
    """Per-class precision/recall/F1/support plus the headline figures, as Markdown."""
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for i, label in enumerate(labels):
        lines.append(
            f"| {label} | {metrics.precision[i]:.3f} | {metrics.recall[i]:.3f} "
            f"| {metrics.f1[i]:.3f} | {int(metrics.support[i])} |"
        )
    total = int(metrics.support.sum())
    lines.append(
        f"| **macro** | {metrics.macro_precision:.3f} | {metrics.macro_recall:.3f} "
        f"| {metrics.macro_f1:.3f} | {total} |"
    )
    lines += [
        "",
        f"- accuracy: **{metrics.accuracy:.4f}**",
        f"- macro-F1: {metrics.macro_f1:.4f}",
        f"- expected calibration error ({ECE_BINS} bins): {metrics.ece:.4f}",
    ]
    return "\n".join(lines) + "\n"
