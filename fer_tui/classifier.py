"""The one LiteRT wrapper: a 48×48 grey face in, seven class probabilities out.

The runtime is found lazily, in the order the project prefers:
``ai_edge_litert`` → ``tflite_runtime`` → ``tensorflow.lite``. The client never
imports TensorFlow itself; the last fallback exists for machines that only have
the training extra installed.

Input and output quantisation come from the model's own tensor details, so the
same class serves int8, uint8 and float models::

    clf = EmotionClassifier("fer_tui/models/emotion_int8.tflite")
    probs = clf.predict(face48)          # shape (7,), sums to 1, LABELS order
    probs = clf.classify(face48)         # the same, as the model's JSON says to run it

:func:`classify_batch` is the one test-time step (flip averaging, then
temperature scaling): the client, ``fer-model evaluate``/``export`` and the
benches all go through it, so what is measured is what the client sends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_tui.emotions import LABELS, NUM_CLASSES
from fer_tui.preprocess import FACE_SIZE, as_model_input, mirrored

#: The model bundled with the client (the lead's training run puts it there).
BUNDLED_MODEL = Path(__file__).parent / "models" / "emotion_int8.tflite"


class ModelError(RuntimeError):
    """The model file is missing, unreadable or has the wrong shape."""


def _load_interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            try:
                import tensorflow as tf  # last resort: only with the train extra
            except ImportError:
                raise ModelError("no TFLite runtime found: install ai-edge-litert") from None
            Interpreter = tf.lite.Interpreter
    return Interpreter


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C++ logging) for the duration of the block."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _quantise(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.integer) and scale:
        info = np.iinfo(dtype)
        q = np.round(values / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _dequantise(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - zero_point) * scale
    return values.astype(np.float32)


def _as_probabilities(scores: np.ndarray) -> np.ndarray:
    """Return ``scores`` as probabilities; apply softmax only if they aren't already."""
    total = float(scores.sum())
    if scores.min() >= -1e-3 and abs(total - 1.0) < 0.05:
        clipped = np.clip(scores, 0.0, None)
        return clipped / clipped.sum()
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


@dataclass(frozen=True)
class InferenceMode:
    """How a model's probabilities are taken, as its JSON's ``inference`` records it.

    ``flip_average``: the mean of the face's and its mirror image's probabilities;
    ``temperature``: log-probabilities divided by it before the softmax (above 1
    softens overconfident scores). A JSON without the field means one view, T = 1.
    """

    flip_average: bool = False
    temperature: float = 1.0

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> InferenceMode:
        raw = meta.get("inference", {})
        if not isinstance(raw, Mapping):
            raise ModelError("model JSON: inference must be an object")
        flip = raw.get("flip_average", False)
        temperature = raw.get("temperature", 1.0)
        if not isinstance(flip, bool):
            raise ModelError("model JSON: inference.flip_average must be true or false")
        if (
            not isinstance(temperature, (int, float))
            or isinstance(temperature, bool)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ModelError("model JSON: inference.temperature must be a positive number")
        return cls(flip, float(temperature))

    def to_json(self) -> dict[str, Any]:
        return {"flip_average": self.flip_average, "temperature": round(self.temperature, 4)}


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Rows of ``probs`` rescaled by ``temperature``: softmax(log p / T)."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, 1e-7, 1.0)) / temperature
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def classify_batch(
    predict: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, mode: InferenceMode
) -> np.ndarray:
    """N×7 probabilities of uint8 N×48×48 ``faces`` under ``mode``.

    ``predict`` maps faces to probabilities (one view). Flip averaging first,
    then the temperature: the order calibration was fitted in.
    """
    flipped = predict(mirrored(faces)) if mode.flip_average else None
    return combine_views(predict(faces), flipped, mode.temperature)


def combine_views(
    probs: np.ndarray, flipped: np.ndarray | None, temperature: float = 1.0
) -> np.ndarray:
    """The probabilities of the face (and, if given, its mirror image), averaged and tempered."""
    if flipped is not None:
        probs = (probs + flipped) / 2.0
    return tempered(probs, temperature)


class EmotionClassifier:
    """Classify one 48×48 grey face with a TFLite model.

    Thread-safe: calls are serialised, since a TFLite interpreter is not
    re-entrant. ``num_threads`` is the interpreter's own thread count.
    """

    def __init__(self, path: str | Path = BUNDLED_MODEL, num_threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        interpreter_cls = _load_interpreter_class()
        try:
            with _quiet_stderr():  # the runtime prints INFO lines over the TUI
                self._interpreter = interpreter_cls(
                    model_path=str(self.path), num_threads=num_threads
                )
                self._interpreter.allocate_tensors()
                self._interpreter.invoke()  # creates the delegate now, not on first Enter
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {self.path}: {exc}") from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        expected_in = (1, FACE_SIZE, FACE_SIZE, 1)
        if tuple(self._input["shape"]) != expected_in:
            raise ModelError(f"model input shape {tuple(self._input['shape'])} != {expected_in}")
        if int(np.prod(self._output["shape"])) != NUM_CLASSES:
            raise ModelError(f"model output shape {tuple(self._output['shape'])} is not 7 classes")
        self._lock = threading.Lock()
        self.metadata = self._read_metadata()
        self.inference = InferenceMode.from_metadata(self.metadata)

    def _read_metadata(self) -> dict[str, Any]:
        meta_path = self.path.with_suffix(".json")
        if not meta_path.is_file():
            return {}
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        labels = meta.get("labels")
        if labels is not None and tuple(labels) != LABELS:
            raise ModelError(f"model labels {labels} differ from {LABELS}")
        return meta

    @property
    def name(self) -> str:
        """Short display name of the model (its file name)."""
        return self.path.name

    def predict(self, face48: np.ndarray) -> np.ndarray:
        """Return the 7 class probabilities (LABELS order) for one 48×48 grey face."""
        batch = as_model_input(face48)
        if batch.shape[0] != 1:
            raise ValueError(f"predict takes one face, got {batch.shape[0]}")
        tensor = _quantise(batch, self._input)
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output["index"]).copy()
        return _as_probabilities(_dequantise(raw, self._output).reshape(NUM_CLASSES))

    def predict_many(self, faces: np.ndarray) -> np.ndarray:
        """:meth:`predict` for each of N×48×48 ``faces``: N×7 probabilities, one view."""
        faces = np.asarray(faces)
        if faces.ndim == 2:
            faces = faces[None]
        out = np.empty((len(faces), NUM_CLASSES), np.float32)
        for i, face in enumerate(faces):
            out[i] = self.predict(face)
        return out

    def classify(self, face48: np.ndarray) -> np.ndarray:
        """The 7 probabilities of one face as the client uses them: :attr:`inference`."""
        return classify_batch(self.predict_many, np.asarray(face48)[None], self.inference)[0]
