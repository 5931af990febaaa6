"""The GPU trainer's torch parts: augmentation on tensors, and a short run end to end.

They run where torch is installed (the lent GPU machines, or a developer's
``gpu`` extra, on CPU); CI's test environment has no torch and skips them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.augment_config import AugmentConfig

REPO = Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch", reason="torch is only on GPU machines (the gpu extra)")


def _faces(n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.integers(0, 256, (n, 1, 48, 48)), dtype=torch.float32)


def _augment(faces, **strengths):
    from training.augment_torch import augment_batch

    off = dict(
        max_rotation_deg=0.0,
        max_shift=0.0,
        max_zoom=0.0,
        flip=False,
        max_brightness=0.0,
        max_contrast=0.0,
        erase_prob=0.0,
    )
    config = AugmentConfig(**{**off, **strengths})
    return augment_batch(faces, config, torch.Generator().manual_seed(1))


def test_augmentation_with_every_strength_zero_is_the_identity():
    faces = _faces()
    assert torch.allclose(_augment(faces), faces, atol=0.01)


def test_flip_mirrors_some_faces_and_leaves_the_rest():
    faces = _faces(64)
    out = _augment(faces, flip=True)
    mirrored = [torch.allclose(o, f.flip(-1), atol=0.01) for o, f in zip(out, faces, strict=True)]
    same = [torch.allclose(o, f, atol=0.01) for o, f in zip(out, faces, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert 10 < sum(mirrored) < 54


def test_a_shift_moves_content_by_at_most_the_configured_share():
    # One bright column; shifts of up to 10 % of 48 pixels move it at most 5 columns.
    faces = torch.zeros(64, 1, 48, 48)
    faces[:, :, :, 20] = 255.0
    out = _augment(faces, max_shift=0.1)
    columns = out[:, 0, 24].argmax(dim=-1)
    assert (columns != 20).sum() > 32  # most moved, by at most 10 % of 48 pixels
    assert ((columns - 20).abs() <= 5).all()


def test_erasing_blanks_one_rectangle_of_one_grey_level():
    faces = _faces(8)
    out = _augment(faces, erase_prob=1.0)
    for before, after in zip(faces, out, strict=True):
        changed = ((before - after).abs() > 0.5)[0]  # resampling alone moves < 0.01
        rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
        box = after[0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert torch.allclose(box, box.flatten()[0].expand_as(box), atol=0.01)


def test_a_short_gpu_run_learns_and_writes_keras_files(tmp_path, fer2013_like):
    """Teacher then distilled student, on CPU torch, seconds each: records and loadable models."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    data, val = fer2013_like
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.gpu", "run", "--data", str(data)]
    command += ["--val", str(val), "--out", str(out), "--teacher", "8,16,16,32/1"]
    command += ["--student", "8,8,16,16/1", "--teacher-seconds", "8", "--student-seconds", "6"]
    subprocess.run(command, cwd=REPO, check=True, timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"teacher-1", "student-1"}
    student = out / "student-1"
    assert (student / "best.keras").is_file() and (student / "curves.png").is_file()
    record = json.loads((student / "config.json").read_text())
    assert record["config"]["teachers"] == [str(out / "teacher-1" / "best.keras")]
    assert record["teacher_ensemble_val_accuracy"] is not None


@pytest.fixture
def fer2013_like(tmp_path):
    """Two tiny learnable sets: class = which quadrant is bright."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 4, n)
        x = rng.integers(0, 60, (n, 48, 48)).astype(np.uint8)
        for i, label in enumerate(y):
            r, c = divmod(int(label), 2)
            x[i, r * 24 : (r + 1) * 24, c * 24 : (c + 1) * 24] += 150
        return x, y

    paths = []
    for name, n in (("train", 512), ("val", 128)):
        x, y = make(n)
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        paths.append(tmp_path / f"{name}.npz")
    return paths
