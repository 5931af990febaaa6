"""Measure two cheap levers on the kept gpu-s3 weights: weight soups and output ensembles.

The shipped student and its two siblings were trained from one starting point
(gpu-s2 student 6), so their weights can be averaged ("model soup"); the two
teachers kept as float16 (``weights-fp16.npz``) are what an ensemble-distilled
student could learn from. Everything is read from git history (commit
``3838a6d``, where training/runs still held them), so it runs on any clone::

    .venv/bin/python bench/ensemble_levers.py [--val ../shared/data/fer2013/val.npz]

Prints, for each model, FER2013 PublicTest accuracy of the float Keras model,
plain and flip-averaged (:func:`fer_tui.classifier.classify_batch`), with the
difference against the shipped student in the same run. Takes several minutes
on two cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

KEPT_AT = "3838a6d"
RUN = "training/runs/gpu-s3"
STUDENT_LAYOUT = ((32, 48, 96, 192), (1, 2, 2, 2))
TEACHER_LAYOUT = ((64, 128, 256, 512), (2, 2, 2, 2))
SHIPPED = "student-2"


def _blob(path: str, into: Path) -> Path:
    """``path`` as it was at :data:`KEPT_AT`, written under ``into``."""
    out = into / path.replace("/", "_")
    out.write_bytes(
        subprocess.run(
            ["git", "show", f"{KEPT_AT}:{path}"], cwd=REPO, capture_output=True, check=True
        ).stdout
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--val", default=str(REPO.parent / "shared/data/fer2013/val.npz"))
    args = parser.parse_args()

    import keras

    from training.data import load_faces
    from training.model import build_model
    from training.predict import keras_predictor, predict_probs

    val = load_faces(Path(args.val), "val")

    def scores(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
        predict = keras_predictor(model)
        return predict_probs(predict, val.x), predict_probs(predict, val.x, flip=True)

    def accuracy(probs: np.ndarray) -> float:
        return float((probs.argmax(1) == val.y).mean())

    with tempfile.TemporaryDirectory() as tmp:
        students = {
            name: keras.models.load_model(
                _blob(f"{RUN}/{name}/best.keras", Path(tmp)), compile=False
            )
            for name in ("student-1", "student-2", "student-3")
        }
        teachers = {}
        for name in ("teacher-1", "teacher-2"):
            weights = np.load(_blob(f"{RUN}/{name}/weights-fp16.npz", Path(tmp)))
            teachers[name] = build_model(*TEACHER_LAYOUT)
            teachers[name].set_weights(
                [weights[f"w{i:03d}"].astype(np.float32) for i in range(len(weights.files))]
            )

    rows: list[tuple[str, float, float]] = []
    probs: dict[str, np.ndarray] = {}
    for name, model in {**students, **teachers}.items():
        plain, flipped = scores(model)
        probs[name] = flipped
        rows.append((name, accuracy(plain), accuracy(flipped)))
    for members in (("student-1", "student-2", "student-3"), ("student-1", "student-2"),
                    ("student-2", "student-3"), ("student-1", "student-3")):  # fmt: skip
        soup = build_model(*STUDENT_LAYOUT)
        layers = zip(*(students[m].get_weights() for m in members), strict=True)
        soup.set_weights([np.mean(group, axis=0) for group in layers])
        plain, flipped = scores(soup)
        rows.append((f"weight soup of {', '.join(members)}", accuracy(plain), accuracy(flipped)))
    ensembles = {
        "ensemble of the 3 students": ("student-1", "student-2", "student-3"),
        "ensemble of the 2 teachers": ("teacher-1", "teacher-2"),
        "ensemble of all 5": tuple(probs),
    }
    for label, members in ensembles.items():
        rows.append((label, float("nan"), accuracy(sum(probs[m] for m in members))))

    base = next(flip for name, _, flip in rows if name == SHIPPED)
    print(f"FER2013 PublicTest, {len(val)} faces, float Keras models; Δ against {SHIPPED}\n")
    print("| model | plain | flip-averaged | Δ flip (points) |")
    print("|---|---:|---:|---:|")
    for name, plain, flipped in rows:
        shown = "—" if np.isnan(plain) else f"{plain:.4f}"
        print(f"| {name} | {shown} | {flipped:.4f} | {100 * (flipped - base):+.2f} |")


if __name__ == "__main__":
    main()
