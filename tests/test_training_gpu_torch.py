"""The GPU trainer's torch parts: augmentation, the lowered forward pass, a short run.

They run where torch is installed (the lent GPU machines, or a developer's
``gpu`` extra, on CPU); CI's test environment has no torch and skips them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
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
    return augment_batch(faces, config, np.random.default_rng(1))


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


def _torch_keras(code: str) -> dict:
    """Run ``code`` with Keras on its torch backend; return the JSON it prints last.

    A subprocess, because a test session's Keras may already be bound to TensorFlow.
    """
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(REPO)}
    prelude = "import json, keras, numpy as np, torch\n"
    prelude += "from training.model import build_model\n"
    prelude += "from training.torch_forward import UnsupportedLayer, torch_forward\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_lowered_forward_computes_what_the_keras_model_computes():
    result = _torch_keras("""
        keras.utils.set_random_seed(0)
        model = build_model((8, 16), (1, 2), dropout=0.0)
        faces = torch.rand(6, 48, 48, 1) * 255
        forward = torch_forward(model)
        # Keras first: training mode moves the BN statistics, so compare from equal states.
        diffs = {}
        for training in (False, True):
            states = [w.copy() for w in model.get_weights()]
            ours = forward(faces, training)
            after_ours = model.get_weights()
            model.set_weights(states)
            theirs = model(faces, training=training)
            after_theirs = model.get_weights()
            diffs[str(training)] = float((ours - theirs).abs().max())
            moved = [float(np.abs(a - b).max()) for a, b in zip(after_ours, after_theirs)]
            diffs[f"stats-{training}"] = max(moved)
            diffs[f"moved-{training}"] = max(
                float(np.abs(a - b).max()) for a, b in zip(after_ours, states)
            )
        print(json.dumps(diffs))
    """)
    assert result["False"] < 1e-5 and result["True"] < 1e-5
    assert result["moved-False"] == 0.0  # inference leaves the statistics alone
    assert result["moved-True"] > 1e-4  # training updates them, in the model's own variables...
    assert result["stats-True"] < 1e-4  # ...as Keras does (up to n/(n-1) in the variance)


def test_gradients_of_the_lowered_forward_train_the_keras_weights():
    result = _torch_keras("""
        keras.utils.set_random_seed(0)
        model = build_model((8, 16), (1, 1), dropout=0.0)
        forward = torch_forward(model)
        params = [v.value for v in model.trainable_variables]
        optimizer = torch.optim.Adam(params, lr=0.01)
        faces = torch.rand(32, 48, 48, 1) * 255
        labels = torch.arange(32) % 7
        losses = []
        for _ in range(30):
            probs = forward(faces, True)
            loss = -torch.log(probs[torch.arange(32), labels]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        keras_loss = float(-torch.log(model(faces)[torch.arange(32), labels]).mean())
        eval_loss = float(-torch.log(forward(faces, False)[torch.arange(32), labels]).mean())
        print(json.dumps({"first": losses[0], "last": losses[-1],
                          "keras": keras_loss, "lowered": eval_loss}))
    """)
    assert result["last"] < 0.7 * result["first"]
    assert abs(result["keras"] - result["lowered"]) < 1e-4  # the Keras model holds the training


def test_a_layer_it_cannot_lower_is_refused_not_approximated():
    result = _torch_keras("""
        inputs = keras.Input((48, 48, 1))
        x = keras.layers.Conv2D(4, 3, strides=2)(inputs)
        model = keras.Model(inputs, keras.layers.Dense(7)(keras.layers.Flatten()(x)))
        try:
            torch_forward(model)
            print(json.dumps({"error": None}))
        except UnsupportedLayer as exc:
            print(json.dumps({"error": str(exc)}))
    """)
    assert "only stride 1" in result["error"]


def _short_run(out: Path, data: Path, val: Path, *extra: str) -> None:
    """``fer-model gpu run``: one small teacher, then one student, seconds each."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    command = [sys.executable, "-m", "training.cli", "gpu", "run", "--data", str(data)]
    command += ["--val", str(val), "--out", str(out), "--teacher", "8,16,16,32/1"]
    command += ["--student", "8,8,16,16/1", "--teacher-seconds", "8", "--student-seconds", "6"]
    subprocess.run([*command, *extra], cwd=REPO, check=True, timeout=300)


@pytest.mark.parametrize("precision", [[], ["--bf16"]], ids=["float32", "bf16"])
def test_a_short_gpu_run_writes_records_and_keras_files(tmp_path, fer2013_like, precision):
    """Teacher then distilled student, on CPU torch, seconds each: the plumbing end to end.

    Seconds of CPU are too few to learn the task; learning through the lowered
    forward pass is the gradients test's.
    """
    out = tmp_path / "run"
    _short_run(out, *fer2013_like, *precision)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"teacher-1", "student-1"}
    student = out / "student-1"
    assert (student / "best.keras").is_file() and (student / "curves.png").is_file()
    record = json.loads((student / "config.json").read_text())
    assert record["config"]["teachers"] == [str(out / "teacher-1" / "best.keras")]
    assert record["teacher_ensemble_val_accuracy"] is not None
    assert record["config"]["bf16"] is bool(precision)


def test_follow_up_students_start_from_a_student_with_its_teachers(tmp_path, fer2013_like):
    out, keep = tmp_path / "run", tmp_path / "keep"
    _short_run(out, *fer2013_like)
    data, val = fer2013_like
    command = [sys.executable, "-m", "training.cli", "gpu", "students", "--data", str(data)]
    command += ["--val", str(val), "--out", str(out), "--start", "student-1", "--first", "2"]
    command += ["--learning-rate", "1e-3", "--seconds", "4", "--keep", str(keep)]
    subprocess.run(command, cwd=REPO, check=True, timeout=300)
    record = json.loads((out / "student-2" / "config.json").read_text())
    assert record["config"]["init_weights"] == str(out / "student-1" / "best.keras")
    assert record["config"]["teachers"] == [str(out / "teacher-1" / "best.keras")]
    assert (out / "student-2" / "best.keras").is_file()
    assert sorted(p.name for p in keep.iterdir()) == ["records.tar", "student-2.keras"]


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
