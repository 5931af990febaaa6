"""Shared helpers for the client's tests: real data paths, a real TFLite model, a real hub."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FACES_DIR = REPO.parent / "shared" / "data" / "faces"
FER_VAL = REPO.parent / "shared" / "data" / "fer2013" / "val.npz"
BUNDLED_MODEL = REPO / "fer_tui" / "models" / "emotion_int8.tflite"


def face_counts() -> dict[str, int]:
    """Faces per photo, read from the faces folder's README table (skip without it)."""
    readme = FACES_DIR / "README.md"
    if not readme.is_file():
        pytest.skip(f"real face photos not found at {FACES_DIR}")
    counts = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*`([^`]+\.(?:jpg|png))`\s*\|[^|]*\|[^|]*\|\s*(\d+)", line)
        if match:
            counts[match.group(1)] = int(match.group(2))
    if not counts:
        pytest.fail("could not read face counts from the README")
    return counts


def build_tiny_model(path: Path) -> Path:
    """Write a small untrained int8 TFLite model with the bundled model's contract.

    Needs TensorFlow (the train extra); used only when no bundled model exists yet.
    """
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    import numpy as np

    inputs = keras.Input((48, 48, 1))
    hidden = keras.layers.Rescaling(1 / 255.0)(inputs)
    hidden = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(7, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(20):
            yield [rng.integers(0, 256, (1, 48, 48, 1)).astype("float32")]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def model_path(tmp_factory: pytest.TempPathFactory) -> Path:
    """The bundled model if present, else a tiny one built for this test session."""
    if BUNDLED_MODEL.is_file():
        return BUNDLED_MODEL
    target = tmp_factory.getbasetemp() / "tiny_emotion_int8.tflite"
    if target.is_file():
        return target
    return build_tiny_model(target)


#: Upper bound for any single wait in the client tests, in seconds.
WAIT = 15.0


async def wait_until(predicate, timeout: float = WAIT, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms; fail the test after ``timeout`` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def face_frames(names: tuple[str, ...] = ("neutral_woman.jpg", "obama_320x240.jpg")) -> list:
    """BGR frames of real faces, or [] when ../shared is missing."""
    import cv2

    frames = []
    for name in names:
        path = FACES_DIR / name
        if path.is_file():
            frames.append(cv2.imread(str(path)))
    return frames
