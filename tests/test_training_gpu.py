"""The GPU trainer (``fer-model gpu``): schedule, layouts and records, without torch.

Its torch parts are tested in ``test_training_gpu_torch.py``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer

from training.config import TrainConfig
from training.gpu import learning_rate_at, parse_layout

REPO = Path(__file__).resolve().parents[1]


def test_importing_it_leaves_the_keras_backend_alone():
    # Only the entry point picks torch; an import (as here, beside TensorFlow tests) must not.
    code = "import os, training.gpu; print(os.environ.get('KERAS_BACKEND'))"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "None"


def test_schedule_warms_up_then_anneals_to_one_percent():
    config = TrainConfig("d", "v", "m", learning_rate=1e-3, warmup_fraction=0.1)
    assert learning_rate_at(0.0, config) == pytest.approx(1e-4)
    assert learning_rate_at(0.1, config) == pytest.approx(1e-3)
    assert learning_rate_at(1.0, config) == pytest.approx(1e-5)
    after_warmup = [learning_rate_at(p, config) for p in np.linspace(0.1, 1.0, 50)]
    assert all(a >= b for a, b in itertools.pairwise(after_warmup))
    assert learning_rate_at(1.5, config) == pytest.approx(1e-5)  # past the budget: stays low


def test_layouts_parse_and_bad_ones_are_refused():
    assert parse_layout("64,128,256,512/2") == ((64, 128, 256, 512), (2, 2, 2, 2))
    assert parse_layout("32,48/1,2") == ((32, 48), (1, 2))
    assert parse_layout("16,32") == ((16, 32), (2, 2))
    with pytest.raises(typer.BadParameter, match="one convolution count per width"):
        parse_layout("16,32,64/1,2")


def test_results_kept_leave_out_teachers_weights_and_last_checkpoints(tmp_path):
    from training.gpu import _worth_keeping

    kept = {
        "teacher-1/best.keras": False,
        "teacher-1/history.csv": True,
        "student-2/best.keras": True,
        "student-2/last.keras": False,
        "student-2/curves.png": True,
        "summary.json": True,
    }
    for name, expected in kept.items():
        assert _worth_keeping(tmp_path / name) is expected, name


@pytest.mark.parametrize(
    "options",
    [
        ("--student", "8,16/1,2,3"),
        ("--student", "8,16", "--student-init", "a.keras", "--student-init", "b.keras"),
        ("--teacher", "8,16", "--teacher-init", "a.npz", "--teacher-init", "b.npz"),
    ],
)
def test_bad_options_fail_before_any_teacher_trains(tmp_path, options):
    from typer.testing import CliRunner

    from training.gpu import app

    out = tmp_path / "run"
    args = ["run", "--data", "train.npz", "--val", "val.npz", "--out", str(out), *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert not out.exists()  # no teacher was started


def test_weights_kept_as_float16_arrays_load_back_in_layer_order(tmp_path):
    from training.gpu import load_weights, save_weights

    weights = [np.full((2, i + 1), i, dtype=np.float32) for i in range(12)]  # 10th after 9th
    save_weights(weights, tmp_path / "t.npz")
    loaded = load_weights(str(tmp_path / "t.npz"))
    assert [w.dtype for w in loaded] == [np.float32] * 12
    assert all(np.array_equal(a, b) for a, b in zip(loaded, weights, strict=True))


def _earlier_student(run: Path, name: str, teachers: tuple[str, ...]) -> TrainConfig:
    """A student folder as ``run`` leaves it: its config record and best weights."""
    config = TrainConfig(
        "elsewhere/train.npz",
        "elsewhere/val.npz",
        str(run / name),
        widths=(32, 48, 96, 192),
        time_budget_seconds=210,
        seed=103,
        teachers=teachers,
    )
    (run / name).mkdir(parents=True)
    record = {"command": "fer-model gpu fit ...", "config": config.to_json()}
    (run / name / "config.json").write_text(json.dumps(record))
    (run / name / "best.keras").write_bytes(b"weights")
    return config


def test_follow_up_students_restart_an_earlier_student_with_its_teachers(tmp_path):
    from training.gpu import follow_up_students

    earlier = _earlier_student(tmp_path, "student-2", ("t1.keras", "t2.keras"))
    students = follow_up_students(
        "train.npz", "val.npz", tmp_path, "student-2", [5e-4, 1e-3], seconds=130, first=5
    )
    assert [s.out for s in students] == [str(tmp_path / f"student-{k}") for k in (5, 6)]
    assert [s.learning_rate for s in students] == [5e-4, 1e-3]
    assert [s.seed for s in students] == [108, 109]  # gpu-s2's call 3
    for student in students:
        assert student.init_weights == str(tmp_path / "student-2" / "best.keras")
        assert student.time_budget_seconds == 130
        assert (student.data, student.val) == ("train.npz", "val.npz")  # this command's
        assert student.teachers == earlier.teachers
        assert (student.widths, student.augment) == (earlier.widths, earlier.augment)


@pytest.mark.parametrize(
    ("start", "first", "message"),
    [
        ("student-9", 5, "no config.json and best.keras"),
        ("teacher-1", 5, "had no teachers"),
        ("student-2", 2, "student-2 already in"),
    ],
)
def test_follow_up_students_refuse_what_would_go_wrong(tmp_path, start, first, message):
    from typer.testing import CliRunner

    from training.gpu import app

    _earlier_student(tmp_path, "student-2", ("t1.keras",))
    _earlier_student(tmp_path, "teacher-1", ())
    args = ["students", "--data", "train.npz", "--val", "val.npz", "--out", str(tmp_path)]
    args += ["--start", start, "--learning-rate", "1e-3", "--seconds", "5", "--first", str(first)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student-2", "teacher-1"]


def test_a_failed_teacher_fails_the_run_with_one_line_and_no_students(tmp_path):
    # The worker fails early (no such data file; without torch, at its import):
    # either way the run must stop there with a non-zero exit, not go on to students.
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.cli", "gpu", "run", "--out", str(out)]
    command += ["--data", str(tmp_path / "missing.npz"), "--val", str(tmp_path / "missing.npz")]
    command += ["--teacher", "8,16/1", "--student", "8,8/1"]
    command += ["--teacher-seconds", "1", "--student-seconds", "1"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    reason = result.stderr.strip().splitlines()[-1]
    assert reason.startswith("error: worker failed: teacher-1 (exit ")
    assert not (out / "student-1").exists()
    assert not (out / "summary.json").exists()


def test_the_gpu_trainer_is_a_fer_model_subcommand():
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(app, ["gpu", "--help"])
    assert result.exit_code == 0, result.output
    for command in ("run", "students", "fit"):
        assert command in result.output


def _tiny_npz(path: Path, n: int = 16) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), y=np.arange(n) % 7)
    return path


def _train_torch(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    data = _tiny_npz(tmp_path / "train.npz")
    command = [sys.executable, "-m", "training.cli", "train", "--backend", "torch"]
    command += ["--data", str(data), "--val", str(data), "--out", str(tmp_path / "run"), *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "give --time-budget"),
        (("--time-budget", "1", "--resume"), "--resume is for --backend keras"),
        (("--time-budget", "1", "--max-steps-per-epoch", "2"), "for --backend keras"),
    ],
)
def test_train_on_torch_refuses_what_it_cannot_do(tmp_path, extra, message):
    result = _train_torch(tmp_path, *extra)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_on_torch_fails_with_its_worker(tmp_path):
    # The worker fails early: without torch at its import, with torch on the missing teacher.
    result = _train_torch(tmp_path, "--time-budget", "1", "--teacher", str(tmp_path / "no.keras"))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: worker failed: run (exit ")
