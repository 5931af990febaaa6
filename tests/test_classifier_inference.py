"""The one test-time step: flip averaging and temperature, as the model's JSON says."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from training_fixtures import BUNDLED_MODEL

from fer_tui.classifier import (
    EmotionClassifier,
    InferenceMode,
    ModelError,
    classify_batch,
    combine_views,
    tempered,
)
from fer_tui.preprocess import mirrored
from training.calibration import calibrate, fit_temperature


def test_mirrored_flips_left_to_right_one_face_or_a_batch() -> None:
    face = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    assert (mirrored(face)[:, 0] == face[:, -1]).all()
    batch = np.stack([face, face.T])
    assert (mirrored(batch)[1] == face.T[:, ::-1]).all()
    assert mirrored(batch).flags.c_contiguous
    with pytest.raises(ValueError, match="48×48"):
        mirrored(np.zeros((48, 48, 1), np.uint8))


def test_a_json_without_inference_means_one_view_and_no_temperature() -> None:
    assert InferenceMode.from_metadata({}) == InferenceMode(False, 1.0)
    mode = InferenceMode.from_metadata({"inference": {"flip_average": True, "temperature": 1.5}})
    assert mode == InferenceMode(True, 1.5)


@pytest.mark.parametrize(
    "inference",
    [[], {"flip_average": "yes"}, {"temperature": 0}, {"temperature": True}, {"temperature": "1"}],
)
def test_a_bad_inference_field_is_a_model_error(inference) -> None:
    with pytest.raises(ModelError, match="inference"):
        InferenceMode.from_metadata({"inference": inference})


def test_tempered_keeps_the_ranking_and_sums_to_one() -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=20).astype(np.float32)
    assert tempered(probs, 1.0) is probs
    for t in (0.5, 2.0):
        out = tempered(probs, t)
        assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
        assert (out.argmax(axis=1) == probs.argmax(axis=1)).all()
    # A higher temperature lowers the top confidence.
    assert (tempered(probs, 2.0).max(axis=1) < probs.max(axis=1)).all()


def test_classify_is_the_tempered_mean_of_the_face_and_its_mirror(tmp_path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(BUNDLED_MODEL, model)
    meta = json.loads(BUNDLED_MODEL.with_suffix(".json").read_text())
    meta["inference"] = {"flip_average": True, "temperature": 1.7}
    model.with_suffix(".json").write_text(json.dumps(meta))
    classifier = EmotionClassifier(model)
    face = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    expected = tempered(
        ((classifier.predict(face) + classifier.predict(face[:, ::-1])) / 2)[None], 1.7
    )
    assert np.allclose(classifier.classify(face), expected[0], atol=1e-6)
    batch = np.stack([face, face.T])
    assert np.allclose(
        classify_batch(classifier.predict_many, batch, classifier.inference)[0], expected[0]
    )
    assert np.allclose(combine_views(expected, None), expected)


def test_fitting_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, (4000, 7))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(7, p=p) for p in true])
    overconfident = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)
    assert fit_temperature(overconfident, y) == pytest.approx(2.0, abs=0.15)
    result = calibrate(overconfident, y)
    assert result.ece_after < result.ece_before
    assert result.ece_two_fold < result.ece_before
