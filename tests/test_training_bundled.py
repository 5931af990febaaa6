"""The model the client ships: far above chance on FER2013's validation split, as recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from training_fixtures import BUNDLED_MODEL, FER_VAL

from fer_tui.classifier import EmotionClassifier, classify_batch
from fer_tui.emotions import EMOJI, LABELS
from training.metrics import compute_metrics
from training.predict import tflite_predictor

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def scored():
    if not BUNDLED_MODEL.is_file():
        pytest.skip(f"no bundled model at {BUNDLED_MODEL}")
    if not FER_VAL.is_file():
        pytest.skip(f"FER2013 validation data not found at {FER_VAL}")
    with np.load(FER_VAL) as archive:
        x, y = archive["x"], archive["y"]
    probs = tflite_predictor(BUNDLED_MODEL)(x)
    return compute_metrics(probs, y), json.loads(BUNDLED_MODEL.with_suffix(".json").read_text())


def test_the_client_runs_it_as_recorded_and_calibrated() -> None:
    if not BUNDLED_MODEL.is_file() or not FER_VAL.is_file():
        pytest.skip(f"needs {BUNDLED_MODEL} and {FER_VAL}")
    classifier = EmotionClassifier(BUNDLED_MODEL)
    record = classifier.metadata
    assert classifier.inference.flip_average  # the client flip-averages, as evaluated
    with np.load(FER_VAL) as archive:
        x, y = archive["x"], archive["y"]
    client = compute_metrics(classify_batch(classifier.predict_many, x, classifier.inference), y)
    assert client.accuracy == pytest.approx(record["validation"]["int8"]["accuracy_flip"], abs=1e-4)
    fitted = record["inference"]["fitted_on"]
    assert client.ece == pytest.approx(fitted["ece_after"], abs=1e-4)
    assert fitted["ece_two_fold"] <= 0.03  # on faces each fold's temperature never saw


def test_far_above_chance(scored):
    metrics, _ = scored
    # Chance is 1/7 ≈ 14%; always answering "happy", the commonest class, scores ≈ 25%
    # with a macro-F1 of ≈ 0.06.
    assert metrics.accuracy > 0.40
    assert metrics.macro_f1 > 0.25


def test_recorded_figures_are_what_the_model_does(scored):
    metrics, record = scored
    assert record["validation"]["images"] == int(metrics.support.sum())
    assert record["validation"]["int8"]["accuracy"] == pytest.approx(metrics.accuracy, abs=1e-4)
    assert record["validation"]["int8"]["macro_f1"] == pytest.approx(metrics.macro_f1, abs=1e-4)


def test_record_describes_the_contract(scored):
    _, record = scored
    assert record["labels"] == list(LABELS)
    assert record["emoji"] == {label: EMOJI[label] for label in LABELS}
    assert record["input"]["shape"] == [1, 48, 48, 1]
    assert record["file_bytes"] == BUNDLED_MODEL.stat().st_size
    assert record["command"].startswith("fer-model export ")
    # The CPU loop, the GPU worker, or the GPU worker as it was invoked before `fer-model gpu`.
    trained_by = record["training"]["command"]
    assert trained_by.startswith(("fer-model train ", "fer-model gpu fit ")) or (
        " -m training.gpu fit " in trained_by
    )
