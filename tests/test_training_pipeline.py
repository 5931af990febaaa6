"""train → export → evaluate through the real ``fer-model`` commands, on a tiny model and data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from training_fixtures import TINY_WIDTHS, run_cli, tiny_faces, write_npz

pytest.importorskip("tensorflow")

from fer_tui.classifier import EmotionClassifier
from training.data import file_sha256

EPOCHS = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for a few dozen steps; returns (run dir, train npz, val npz)."""
    folder = tmp_path_factory.mktemp("training")
    train_npz = write_npz(folder / "train.npz", *tiny_faces(per_class=64, seed=0))
    val_npz = write_npz(folder / "val.npz", *tiny_faces(per_class=6, seed=1))
    run = folder / "run"
    result = run_cli(
        "train",
        "--data",
        train_npz,
        "--val",
        val_npz,
        "--out",
        run,
        "--epochs",
        EPOCHS,
        "--batch-size",
        32,
        "--widths",
        TINY_WIDTHS,
        "--convs-per-stage",
        1,
        "--learning-rate",
        1e-2,
        "--warmup-epochs",
        0,
        "--seed",
        7,
    )
    assert result.exit_code == 0, result.output
    return run, train_npz, val_npz


def read_history(run):
    with (run / "history.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_training_writes_a_complete_run(trained):
    run, train_npz, _ = trained
    for name in (
        "config.json",
        "last.keras",
        "best.keras",
        "history.csv",
        "curves.png",
        "labels.txt",
    ):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["seed"] == 7
    assert config["data"]["train"]["sha256"] == file_sha256(train_npz)
    assert (run / "labels.txt").read_text().split() == [
        "angry",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
        "neutral",
    ]


def test_loss_falls_and_the_model_learns(trained):
    history = read_history(trained[0])
    assert len(history) == EPOCHS
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert max(row["val_accuracy"] for row in history) > 2 / 7  # chance is 1/7


def test_resume_continues_from_the_last_epoch(trained, tmp_path):
    import shutil

    run, train_npz, val_npz = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = run_cli(
        "train",
        "--data",
        train_npz,
        "--val",
        val_npz,
        "--out",
        copy,
        "--epochs",
        EPOCHS + 1,
        "--batch-size",
        16,
        "--max-steps-per-epoch",
        2,
        "--widths",
        TINY_WIDTHS,
        "--convs-per-stage",
        1,
        "--resume",
    )
    assert result.exit_code == 0, result.output
    epochs = [int(row["epoch"]) for row in read_history(copy)]
    assert epochs == list(range(1, EPOCHS + 2))


def test_resume_takes_the_runs_own_options_unless_given(trained, tmp_path, monkeypatch):
    import shutil

    run, train_npz, val_npz = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = json.loads((copy / "config.json").read_text())
    old = record["config"]  # as written before one config served both backends:
    del old["teachers"], old["bf16"]  # one --teacher, no torch options,
    old["warmup_epochs"] = old.pop("warmup_fraction") * old["epochs"]  # epochs and
    old["time_budget_minutes"] = old.pop("time_budget_seconds")  # minutes
    old.update(teacher=str(run / "best.keras"), distill_weight=0.3)
    (copy / "config.json").write_text(json.dumps(record))
    seen = {}

    def fake_train(config, *args, **kwargs):
        seen["config"] = config
        return copy / "best.keras"

    monkeypatch.setattr("training.train.train", fake_train)
    result = run_cli(
        "train", "--data", train_npz, "--val", val_npz, "--out", copy, "--resume", "--epochs", 9
    )
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.epochs == 9  # given: wins
    assert (config.batch_size, config.seed, config.learning_rate) == (32, 7, 1e-2)
    assert (config.widths, config.convs_per_stage) == ((8, 16), (1, 1))
    assert (config.teachers, config.distill_weight) == ((str(run / "best.keras"),), 0.3)


def test_a_budget_stopped_run_resumes_with_no_options_repeated(tmp_path):
    train_npz = write_npz(tmp_path / "train.npz", *tiny_faces(per_class=8, seed=0))
    val_npz = write_npz(tmp_path / "val.npz", *tiny_faces(per_class=2, seed=1))
    run = tmp_path / "run"
    data = ("--data", train_npz, "--val", val_npz, "--out", run)
    first = run_cli(
        "train", *data, "--epochs", 3, "--time-budget", 0.001, "--batch-size", 16,
        "--max-steps-per-epoch", 2, "--widths", TINY_WIDTHS, "--convs-per-stage", 1,
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    assert len(read_history(run)) == 1  # a 60 ms budget stops it after one epoch
    resumed = run_cli("train", *data, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [int(row["epoch"]) for row in read_history(run)] == [1, 2, 3]  # not 30


def test_init_weights_starts_a_new_run_from_learnt_weights(trained, tmp_path):
    run, train_npz, val_npz = trained
    common = (
        "--data",
        train_npz,
        "--val",
        val_npz,
        "--epochs",
        1,
        "--batch-size",
        16,
        "--max-steps-per-epoch",
        1,
        "--learning-rate",
        1e-6,
        "--warmup-epochs",
        0,
        "--convs-per-stage",
        1,
    )
    warm = run_cli(
        "train",
        *common,
        "--out",
        tmp_path / "warm",
        "--widths",
        TINY_WIDTHS,
        "--init-weights",
        run / "best.keras",
    )
    assert warm.exit_code == 0, warm.output
    cold = run_cli("train", *common, "--out", tmp_path / "cold", "--widths", TINY_WIDTHS)
    assert cold.exit_code == 0, cold.output
    # One step at a tiny learning rate barely moves weights: only the warm start
    # keeps what the donor run learnt.
    assert read_history(tmp_path / "warm")[0]["val_accuracy"] > 0.6
    assert read_history(tmp_path / "cold")[0]["val_accuracy"] < 0.6
    widths = ",".join(str(2 * int(w)) for w in TINY_WIDTHS.split(","))
    wrong = run_cli(
        "train",
        *common,
        "--out",
        tmp_path / "wrong",
        "--widths",
        widths,
        "--init-weights",
        run / "best.keras",
    )
    assert wrong.exit_code == 2
    assert "do not fit" in wrong.output


def test_init_weights_narrows_a_wider_model_and_a_teacher_guides_it(trained, tmp_path):
    """A narrower run starts from the trained one's strongest channels and learns from it."""
    run, train_npz, val_npz = trained
    narrow = ",".join(str(int(w) * 3 // 4) for w in TINY_WIDTHS.split(","))
    result = run_cli(
        "train",
        "--data",
        train_npz,
        "--val",
        val_npz,
        "--out",
        tmp_path / "narrow",
        "--epochs",
        2,
        "--batch-size",
        32,
        "--widths",
        narrow,
        "--convs-per-stage",
        1,
        "--learning-rate",
        3e-3,
        "--warmup-epochs",
        0,
        "--init-weights",
        run / "best.keras",
        "--teacher",
        run / "best.keras",
        "--teacher",
        run / "last.keras",
        "--distill-weight",
        0.3,
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "narrow" / "config.json").read_text())["config"]
    assert config["widths"] == [int(w) for w in narrow.split(",")]
    assert config["teachers"] == [str(run / "best.keras"), str(run / "last.keras")]
    assert config["distill_weight"] == 0.3
    assert read_history(tmp_path / "narrow")[-1]["val_accuracy"] > 0.6


def test_teachers_are_averaged_into_the_targets(monkeypatch):
    """Two teachers' flip-averaged views are averaged, then mixed with the one-hot labels."""
    from training.config import TrainConfig
    from training.data import FaceSet
    from training.train import _targets

    faces = np.zeros((2, 48, 48), np.uint8)
    faces[:, :, :24] = 200  # not mirror-symmetric: a teacher sees two different views
    views = {"a": np.eye(7)[[0, 1]], "b": np.eye(7)[[2, 3]]}

    def load_predictor(path):
        def predict(batch):
            mirrored = batch[0, 0, -1] == 200
            return np.roll(views[path], 1, axis=1) if mirrored else views[path]

        return predict

    monkeypatch.setattr("training.predict.load_predictor", load_predictor)
    config = TrainConfig(data="", val="", out="", teachers=("a", "b"), distill_weight=0.4)
    targets = _targets(FaceSet(faces, np.array([6, 6]), "test"), config)
    mean_a = (views["a"] + np.roll(views["a"], 1, axis=1)) / 2
    mean_b = (views["b"] + np.roll(views["b"], 1, axis=1)) / 2
    expected = 0.6 * np.eye(7)[[6, 6]] + 0.4 * (mean_a + mean_b) / 2
    np.testing.assert_allclose(targets, expected, atol=1e-6)


def test_both_backends_follow_one_learning_rate_schedule():
    """Keras's schedule over steps is the torch worker's over its budget (learning_rate_at)."""
    from training.config import TrainConfig
    from training.gpu import learning_rate_at
    from training.train import _schedule

    config = TrainConfig("d", "v", "o", epochs=10, learning_rate=3e-3, warmup_fraction=0.1)
    schedule = _schedule(config, steps_per_epoch=20)  # 200 steps, 20 of them warming up
    for step in (0, 10, 20, 60, 150, 199):
        assert float(schedule(step)) == pytest.approx(learning_rate_at(step / 200, config))


@pytest.fixture(scope="module")
def exported(trained):
    run, train_npz, val_npz = trained
    out = run.parent / "model" / "emotion_int8.tflite"
    result = run_cli(
        "export", "--model", run / "best.keras", "--out", out, "--data", train_npz, "--val", val_npz
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_export_writes_an_int8_model_with_its_record(exported, trained):
    out, output = exported
    run, train_npz, val_npz = trained
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    (model_in,), (model_out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(model_in["shape"]) == (1, 48, 48, 1) and model_in["dtype"] == np.int8
    assert tuple(model_out["shape"]) == (1, 7) and model_out["dtype"] == np.int8
    record = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert record["labels"][3] == "happy" and record["emoji"]["happy"] == "😄"
    assert record["input"]["shape"] == [1, 48, 48, 1]
    assert record["data_sha256"] == {"train": file_sha256(train_npz), "val": file_sha256(val_npz)}
    assert record["file_bytes"] == out.stat().st_size
    train_command = json.loads((run / "config.json").read_text())["command"]
    assert record["training"]["command"] == train_command
    assert record["training"]["epochs_done"] == EPOCHS
    for kind in ("float", "int8"):
        assert set(record["validation"][kind]) >= {
            "accuracy",
            "macro_f1",
            "accuracy_flip",
            "macro_f1_flip",
        }
    # The side-by-side table shows the same figures the JSON holds.
    accuracy_line = next(line for line in output.splitlines() if line.startswith("accuracy "))
    assert accuracy_line.split()[-2:] == [
        f"{record['validation']['float']['accuracy']:.4f}",
        f"{record['validation']['int8']['accuracy']:.4f}",
    ]


def test_int8_predictions_agree_with_float(exported, trained):
    import keras

    out, _ = exported
    run, _, _ = trained
    x, _ = tiny_faces(per_class=10, seed=2)
    float_pred = (
        keras.models.load_model(run / "best.keras")
        .predict(x[..., None].astype(np.float32), verbose=0)
        .argmax(axis=1)
    )
    classifier = EmotionClassifier(out)
    int8_pred = np.array([classifier.predict(face).argmax() for face in x])
    assert (float_pred == int8_pred).mean() >= 0.9


@pytest.mark.parametrize("which", ["keras", "tflite"])
def test_evaluate_writes_table_matrix_and_metrics(which, exported, trained, tmp_path):
    run, _, val_npz = trained
    model = run / "best.keras" if which == "keras" else exported[0]
    out = tmp_path / "eval"
    result = run_cli("evaluate", "--model", model, "--data", val_npz, "--out", out, "--flip")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert np.array(metrics["plain"]["confusion"]).sum() == 42
    assert set(metrics) >= {"plain", "flip"}
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "metrics.md").read_text(encoding="utf-8")
    assert f"accuracy: **{metrics['flip']['accuracy']:.4f}**" in table
    # The exported record's figures come from the same data: evaluate must reproduce them.
    record = json.loads(exported[0].with_suffix(".json").read_text(encoding="utf-8"))
    expected = record["validation"]["float" if which == "keras" else "int8"]
    assert metrics["plain"]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-4)
    assert metrics["flip"]["accuracy"] == pytest.approx(expected["accuracy_flip"], abs=1e-4)


def test_calibrate_records_the_client_mode_and_evaluate_then_runs_it(exported, trained, tmp_path):
    _, _, val_npz = trained
    model = tmp_path / "m.tflite"
    model.write_bytes(exported[0].read_bytes())
    model.with_suffix(".json").write_bytes(exported[0].with_suffix(".json").read_bytes())
    result = run_cli("calibrate", "--model", model, "--data", val_npz)
    assert result.exit_code == 0, result.output
    assert "two-fold" in result.output
    record = json.loads(model.with_suffix(".json").read_text(encoding="utf-8"))
    inference = record["inference"]
    assert inference["flip_average"] is True
    assert 0.5 <= inference["temperature"] <= 3.0
    assert inference["fitted_on"]["images"] == 42
    assert inference["command"].startswith("fer-model ")  # sys.argv: pytest's, under CliRunner
    assert EmotionClassifier(model).inference.temperature == inference["temperature"]

    out = tmp_path / "eval"
    result = run_cli("evaluate", "--model", model, "--data", val_npz, "--out", out)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert "flip" in metrics  # from the JSON, not a flag
    if inference["temperature"] != 1.0:
        assert metrics["client"]["ece"] == pytest.approx(
            inference["fitted_on"]["ece_after"], abs=1e-4
        )
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_calibrate_refuses_a_model_without_its_json(tmp_path, trained):
    _, _, val_npz = trained
    model = tmp_path / "lone.tflite"
    model.write_bytes(b"not a model")
    result = run_cli("calibrate", "--model", model, "--data", val_npz)
    assert result.exit_code != 0
    assert "with its .json beside it" in result.output
