"""One :class:`TrainConfig` for both backends: records old and new, and the CLI's mapping.

No TensorFlow or torch: the trainers are replaced where a command would start one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import pytest
from training_fixtures import REPO, assert_one_line_error, run_cli, tiny_faces, write_npz

from training.augment_config import AugmentConfig
from training.config import TrainConfig
from training.train import warmup_steps

SHIPPED = REPO / "training" / "runs" / "gpu-s3"


def test_a_config_comes_back_from_its_json():
    config = TrainConfig(
        "train.npz",
        "val.npz",
        "runs/student-1",
        widths=(32, 48, 96, 192),
        time_budget_seconds=5.0,
        teachers=("a.keras", "b.keras"),
        bf16=True,
        augment=AugmentConfig(erase_prob=0.5),
    )
    assert TrainConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert config.name == "student-1"


def test_the_shipped_models_record_loads():
    record = json.loads((SHIPPED / "student-2" / "config.json").read_text())
    config = TrainConfig.from_json(
        record["config"], data="train.npz", val="val.npz", out=str(SHIPPED / "student-2")
    )
    assert config.name == record["config"]["name"] == "student-2"
    assert config.time_budget_seconds == 220.0  # the worker's "seconds"
    assert (config.widths, config.convs_per_stage) == ((32, 48, 96, 192), (1, 2, 2, 2))
    assert (config.batch_size, config.learning_rate, config.warmup_fraction) == (256, 2e-3, 0.03)
    assert (config.label_smoothing, config.seed, config.distill_weight) == (0.05, 103, 0.8)
    assert len(config.teachers) == 3 and config.init_weights is not None
    assert config.augment == AugmentConfig()


@pytest.mark.parametrize("name", ["teacher-1", "teacher-2", "teacher-3"])
def test_the_shipped_models_teachers_records_load(name):
    raw = json.loads((SHIPPED / name / "config.json").read_text())["config"]
    config = TrainConfig.from_json(raw, data="t.npz", val="v.npz", out=str(SHIPPED / name))
    assert config.time_budget_seconds == raw["seconds"] and config.teachers == ()
    assert config.augment.erase_prob == raw["augment"]["erase_prob"]


def _cpu_record(**changes) -> dict:
    """``config`` of a ``fer-model train`` run's config.json before one config served both."""
    record = {
        "data": "train.npz",
        "val": "val.npz",
        "out": "runs/wide",
        "epochs": 11,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "weight_decay": 0.05,
        "warmup_epochs": 0.3,
        "label_smoothing": 0.1,
        "widths": [32, 64, 128, 256],
        "convs_per_stage": [1, 2, 2, 2],
        "dropout": 0.4,
        "seed": 1234,
        "time_budget_minutes": 118,
        "max_steps_per_epoch": None,
        "init_weights": None,
        "teachers": [],
        "distill_weight": 0.5,
        "augment": asdict(AugmentConfig()) | {"erase_area": [0.02, 0.2]},
    }
    return {**record, **changes}


def test_an_older_cpu_record_loads_in_todays_units():
    config = TrainConfig.from_json(_cpu_record())
    assert config.warmup_fraction == pytest.approx(0.3 / 11)
    assert config.time_budget_seconds == 118 * 60
    assert warmup_steps(config, 449) == int(0.3 * 449)  # the steps it warmed up for
    assert TrainConfig.from_json(_cpu_record(time_budget_minutes=None)).time_budget_seconds is None


def test_an_older_cpu_record_with_one_teacher_loads():
    raw = _cpu_record(teacher="wide.keras")
    del raw["teachers"]
    assert TrainConfig.from_json(raw).teachers == ("wide.keras",)
    raw["teacher"] = None  # a run without one
    assert TrainConfig.from_json(raw).teachers == ()


def test_an_unknown_field_is_refused():
    with pytest.raises(TypeError, match="momentum"):
        TrainConfig.from_json(_cpu_record(momentum=0.9))


@pytest.mark.parametrize("epochs", [1, 7, 11, 30, 90])
@pytest.mark.parametrize("steps", [1, 16, 113, 225, 449])
def test_warmup_epochs_give_the_steps_they_ask_for(epochs, steps):
    for hundredths in range(0, 100 * epochs + 1, 7):
        config = TrainConfig(
            "d", "v", "o", epochs=epochs, warmup_fraction=hundredths / 100 / epochs
        )
        assert warmup_steps(config, steps) == math.floor(Fraction(hundredths, 100) * steps)


@pytest.fixture
def npz(tmp_path):
    return write_npz(tmp_path / "faces.npz", *tiny_faces(per_class=2))


def _captured(monkeypatch, target: str) -> list:
    """Replace the trainer at ``target``; the configs it would have been given land in the list."""
    seen: list = []

    def capture(config, *args, **kwargs):
        seen.extend(config if isinstance(config, list) else [config])
        return Path("best.keras")

    monkeypatch.setattr(target, capture)
    return seen


def test_train_on_torch_sends_one_worker_the_same_config(tmp_path, npz, monkeypatch):
    seen = _captured(monkeypatch, "training.gpu.run_workers")
    out = tmp_path / "runs" / "one"
    args = ["train", "--backend", "torch", "--data", npz, "--val", npz, "--out", out]
    result = run_cli(
        *args, "--time-budget", 5, "--widths", "8,16", "--convs-per-stage", 1, "--bf16"
    )
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.out, config.name, config.data) == (str(out), "one", str(npz))
    assert config.time_budget_seconds == 300.0
    assert config.warmup_fraction == 0.5 / 30  # --warmup-epochs over --epochs, as before
    assert (config.widths, config.convs_per_stage, config.bf16) == ((8, 16), (1, 1), True)
    assert (config.learning_rate, config.seed, config.distill_weight) == (2e-3, 1234, 0.5)


def test_train_on_keras_gets_the_cli_defaults(tmp_path, npz, monkeypatch):
    seen = _captured(monkeypatch, "training.train.train")
    result = run_cli("train", "--data", npz, "--val", npz, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config == TrainConfig(
        str(npz), str(npz), str(tmp_path / "run"), warmup_fraction=0.5 / 30
    )
    assert warmup_steps(config, 225) == int(0.5 * 225)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--bf16",), "--bf16 is for --backend torch"),
        (("--epochs", 2, "--warmup-epochs", 3), "--warmup-epochs cannot exceed --epochs"),
        (
            ("--backend", "torch", "--time-budget", 1, "--teacher", "t.tflite"),
            "--backend torch distils from .keras models only",
        ),
    ],
)
def test_train_refuses_what_the_backend_ignores(tmp_path, npz, extra, message):
    result = run_cli("train", "--data", npz, "--val", npz, "--out", tmp_path / "run", *extra)
    assert_one_line_error(result, message)
    assert not (tmp_path / "run").exists()


def test_the_shipped_models_worker_command_still_parses(monkeypatch):
    import shlex

    from typer.testing import CliRunner

    from training.gpu import app

    record = json.loads((SHIPPED / "student-2" / "config.json").read_text())
    args = shlex.split(record["command"])
    seen = _captured(monkeypatch, "training.gpu.fit")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the gpu app would pick torch for us all
    result = CliRunner().invoke(app, args[args.index("fit") :])
    assert result.exit_code == 0, result.output
    paths = {"data": "/tmp/train.npz", "val": "/tmp/val.npz", "out": "/tmp/run/student-2"}
    assert seen == [TrainConfig.from_json(record["config"], **paths)]
