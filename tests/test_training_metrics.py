"""Evaluation metrics on hand-made cases whose answers were worked out on paper."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    compute_metrics,
    confusion_matrix,
    expected_calibration_error,
    markdown_table,
)


def one_hot_probs(predicted: list[int], confidence: float = 0.9, classes: int = 7) -> np.ndarray:
    """Probabilities that put ``confidence`` on each predicted class, the rest spread evenly."""
    probs = np.full((len(predicted), classes), (1 - confidence) / (classes - 1))
    probs[np.arange(len(predicted)), predicted] = confidence
    return probs


# Ten faces over three classes (angry 0, disgust 1, fear 2); by hand:
#   confusion rows (true) × columns (predicted): [[3,1,0],[0,2,1],[1,0,2]]
#   precision: 3/4, 2/3, 2/3    recall: 3/4, 2/3, 2/3    F1: 3/4, 2/3, 2/3
#   accuracy 7/10; macro-F1 (3/4 + 2/3 + 2/3) / 3 = 25/36
TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PRED = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(np.array(TRUE), np.array(PRED), num_classes=3)
    assert matrix.tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]


def test_hand_made_case():
    metrics = compute_metrics(one_hot_probs(PRED), np.array(TRUE))
    assert metrics.accuracy == pytest.approx(0.7)
    np.testing.assert_allclose(metrics.precision[:3], [3 / 4, 2 / 3, 2 / 3])
    np.testing.assert_allclose(metrics.recall[:3], [3 / 4, 2 / 3, 2 / 3])
    np.testing.assert_allclose(metrics.f1[:3], [3 / 4, 2 / 3, 2 / 3])
    assert metrics.support.tolist() == [4, 3, 3, 0, 0, 0, 0]
    # Classes absent from labels and predictions do not drag the macro average down.
    assert metrics.macro_f1 == pytest.approx(25 / 36)
    # All confidences 0.9 in one bin, accuracy 0.7: ECE = |0.7 - 0.9| = 0.2.
    assert metrics.ece == pytest.approx(0.2)


def test_unequal_precision_and_recall():
    # true: 0 0 1 1, predicted: 0 0 0 1 → class 0 P 2/3 R 1, F1 0.8; class 1 P 1 R 1/2, F1 2/3.
    metrics = compute_metrics(one_hot_probs([0, 0, 0, 1]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(metrics.precision[:2], [2 / 3, 1.0])
    np.testing.assert_allclose(metrics.recall[:2], [1.0, 0.5])
    np.testing.assert_allclose(metrics.f1[:2], [0.8, 2 / 3])
    assert metrics.macro_f1 == pytest.approx((0.8 + 2 / 3) / 2)


def test_a_class_never_predicted_scores_zero_without_warnings():
    metrics = compute_metrics(one_hot_probs([0, 0]), np.array([0, 1]))
    assert metrics.precision[1] == 0.0 and metrics.recall[1] == 0.0 and metrics.f1[1] == 0.0
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.0) / 2)


def test_ece_weights_bins_by_their_share():
    # Bin of 0.95 confidence: 2 faces, both right → gap 0.05.
    # Bin of 0.55 confidence: 2 faces, one right → gap 0.05. ECE = 0.05.
    probs = np.array([[0.95, 0.05], [0.05, 0.95], [0.55, 0.45], [0.45, 0.55]])
    assert expected_calibration_error(probs, np.array([0, 1, 0, 0])) == pytest.approx(0.05)
    # All wrong at 0.95 confidence: ECE 0.95.
    assert expected_calibration_error(probs[:2], np.array([1, 0])) == pytest.approx(0.95)


def test_confidence_of_exactly_one_lands_in_the_last_bin():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.0)


def test_agrees_with_scikit_learn_on_random_predictions():
    metrics_sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(7), size=500)
    y = rng.integers(0, 7, 500)
    ours = compute_metrics(probs, y)
    pred = probs.argmax(axis=1)
    assert ours.accuracy == pytest.approx(metrics_sk.accuracy_score(y, pred))
    assert ours.macro_f1 == pytest.approx(metrics_sk.f1_score(y, pred, average="macro"))
    np.testing.assert_array_equal(ours.confusion, metrics_sk.confusion_matrix(y, pred))


def test_markdown_table_lists_every_class_and_the_totals():
    table = markdown_table(compute_metrics(one_hot_probs(PRED), np.array(TRUE)))
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 7 + 1  # header, classes, macro
    assert "| angry | 0.750 | 0.750 | 0.750 | 4 |" in table
    assert "accuracy: **0.7000**" in table


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="N×C"):
        compute_metrics(np.zeros((3, 7)), np.zeros(2, int))
