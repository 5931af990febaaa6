"""Helpers for the training tests: tiny learnable faces in every format, the CLI, shared data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from fer_tui.emotions import LABELS, NUM_CLASSES

REPO = Path(__file__).resolve().parents[1]
FER2013 = REPO.parent / "shared" / "data" / "fer2013"
FER_TRAIN, FER_VAL = FER2013 / "train.npz", FER2013 / "val.npz"
BUNDLED_MODEL = REPO / "fer_tui" / "models" / "emotion_int8.tflite"

#: A model with 7 classes this tiny trains in a few dozen steps on :func:`tiny_faces`.
TINY_WIDTHS = "8,16"


def tiny_faces(per_class: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 48×48 faces whose class is their overall grey level (20, 56, … 236).

    A global property, so a tiny net with global pooling learns it in a few dozen
    steps even through the training augmentation (brightness jitter is ±30).
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(NUM_CLASSES), per_class)
    noise = rng.integers(-15, 16, (len(y), 48, 48))
    x = np.clip(20 + 36 * y[:, None, None] + noise, 0, 255).astype(np.uint8)
    order = rng.permutation(len(y))
    return x[order], y[order]


def write_npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, x=x, y=y)
    return path


def write_csv(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write fer2013.csv rows (emotion, pixels, Usage) for each ``Usage`` split."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, (x, y) in splits.items():
            for face, label in zip(x, y, strict=True):
                writer.writerow([int(label), " ".join(map(str, face.reshape(-1))), usage])
    return path


def write_image_folder(root: Path, x: np.ndarray, y: np.ndarray, suffix: str = ".png") -> Path:
    """Write ``root/<class>/<i><suffix>``, Kaggle's per-split layout."""
    import cv2

    for i, (face, label) in enumerate(zip(x, y, strict=True)):
        folder = root / LABELS[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(folder / f"{i:04d}{suffix}"), face)
    return root


def run_cli(*args: str | Path):
    """Run ``fer-model ARGS`` in-process; return typer's result (output includes stderr)."""
    from training.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_one_line_error(result, fragment: str) -> None:
    """The command failed with status 2, printing just one ``error:`` line naming ``fragment``."""
    text = result.output
    assert result.exit_code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert fragment in lines[0], text
