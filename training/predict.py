"""Class probabilities from a ``.keras`` or ``.tflite`` model, optionally flip-averaged.

``.tflite`` models run through the client's own wrapper,
:class:`fer_tui.classifier.EmotionClassifier`, so evaluation measures exactly
what the client ships. Every failure to use a model file raises
:class:`~fer_tui.classifier.ModelError` with a one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_tui.classifier import EmotionClassifier, InferenceMode, ModelError, classify_batch
from fer_tui.emotions import NUM_CLASSES
from fer_tui.preprocess import FACE_SIZE, as_model_input

#: Takes uint8 N×48×48 faces, returns float N×7 probabilities.
Predictor = Callable[[np.ndarray], np.ndarray]

MODEL_SUFFIXES = (".keras", ".tflite")


def load_keras_model(path: str | Path):
    """Load a ``.keras`` file and check it maps 48×48×1 faces to 7 scores."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise ModelError(f"{path}: expected a .keras file")
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; report any as one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable Keras model ({reason[:200]})") from None
    check_keras_shape(model, path)
    return model


def check_keras_shape(model, path: str | Path) -> None:
    """Raise :class:`ModelError` unless ``model`` takes N×48×48×1 and returns N×7."""
    expected_in = (FACE_SIZE, FACE_SIZE, 1)
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or tuple(inputs[0].shape[1:]) != expected_in:
        shapes = [tuple(t.shape) for t in inputs]
        raise ModelError(f"{path}: model input must be (None, 48, 48, 1), got {shapes}")
    if len(outputs) != 1 or tuple(outputs[0].shape[1:]) != (NUM_CLASSES,):
        shapes = [tuple(t.shape) for t in outputs]
        raise ModelError(f"{path}: model output must be (None, {NUM_CLASSES}), got {shapes}")


def keras_predictor(model, batch_size: int = 256) -> Predictor:
    """Wrap a Keras model as a :data:`Predictor`."""

    def predict(faces: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(as_model_input(faces), batch_size=batch_size, verbose=0))

    return predict


def tflite_predictor(path: str | Path, num_threads: int = 1) -> Predictor:
    """Wrap a ``.tflite`` file, through the client's classifier, as a :data:`Predictor`."""
    return EmotionClassifier(path, num_threads=num_threads).predict_many


def load_predictor(path: str | Path) -> Predictor:
    """Return a :data:`Predictor` for a ``.keras`` or ``.tflite`` file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix == ".keras":
        return keras_predictor(load_keras_model(path))
    if path.suffix == ".tflite":
        return tflite_predictor(path)
    raise ModelError(f"{path}: expected a .keras or .tflite model file")


def predict_probs(predict: Predictor, faces: np.ndarray, flip: bool = False) -> np.ndarray:
    """Class probabilities for ``faces``; with ``flip``, averaged with the mirrored faces."""
    return classify_batch(predict, faces, InferenceMode(flip_average=flip))


def model_inference(path: str | Path) -> InferenceMode:
    """The inference mode a ``.tflite`` model's JSON records (one view, T = 1 otherwise)."""
    meta_path = Path(path).with_suffix(".json")
    if Path(path).suffix != ".tflite" or not meta_path.is_file():
        return InferenceMode()
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{meta_path}: unreadable model JSON ({exc})") from None
    return InferenceMode.from_metadata(meta)
