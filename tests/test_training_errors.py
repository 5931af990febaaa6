"""Every mistake a user can make with ``fer-model`` gives one clear line and status 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from training_fixtures import REPO, assert_one_line_error, run_cli, tiny_faces, write_npz


@pytest.fixture
def good_npz(tmp_path):
    return write_npz(tmp_path / "good.npz", *tiny_faces(per_class=2))


def train_args(data, val, tmp_path, *extra):
    return ("train", "--data", data, "--val", val, "--out", tmp_path / "run", "--epochs", 1, *extra)


def test_train_missing_data(tmp_path, good_npz):
    result = run_cli(*train_args(tmp_path / "nope.npz", good_npz, tmp_path))
    assert_one_line_error(result, "no such file or folder")


def test_train_wrong_layout(tmp_path, good_npz):
    (tmp_path / "pictures" / "holiday").mkdir(parents=True)
    result = run_cli(*train_args(tmp_path / "pictures", good_npz, tmp_path))
    assert_one_line_error(result, "expected class folders")


def test_train_unknown_class_folder(tmp_path, good_npz):
    (tmp_path / "faces" / "train" / "smiling").mkdir(parents=True)
    result = run_cli(*train_args(tmp_path / "faces", good_npz, tmp_path))
    assert_one_line_error(result, "unknown class folder 'smiling'")


def test_train_corrupt_image(tmp_path, good_npz):
    (tmp_path / "faces" / "happy").mkdir(parents=True)
    (tmp_path / "faces" / "happy" / "0001.jpg").write_bytes(b"\xff\xd8\xff not an image")
    result = run_cli(*train_args(tmp_path / "faces", good_npz, tmp_path))
    assert_one_line_error(result, "0001.jpg: not a readable image")


def test_train_empty_split(tmp_path, good_npz):
    csv_path = tmp_path / "fer2013.csv"
    pixels = " ".join(["0"] * 2304)
    csv_path.write_text(f"emotion,pixels,Usage\n3,{pixels},Training\n")
    result = run_cli(*train_args(good_npz, csv_path, tmp_path))  # no PublicTest rows
    assert_one_line_error(result, "the 'val' split holds no images")


def test_train_resume_without_checkpoint(tmp_path, good_npz):
    result = run_cli(*train_args(good_npz, good_npz, tmp_path, "--resume"))
    assert_one_line_error(result, "no checkpoint")


def test_train_bad_stage_lists(tmp_path, good_npz):
    result = run_cli(*train_args(good_npz, good_npz, tmp_path, "--widths", "8,x"))
    assert_one_line_error(result, "--widths must be comma-separated integers")
    result = run_cli(
        *train_args(good_npz, good_npz, tmp_path, "--widths", "8,16", "--convs-per-stage", "1,2,3")
    )
    assert_one_line_error(result, "--convs-per-stage needs one number")


@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_missing_model(tmp_path, good_npz, command):
    out = tmp_path / ("m.tflite" if command == "export" else "eval")
    result = run_cli(
        command,
        "--model",
        tmp_path / "absent.keras",
        "--out",
        out,
        "--data",
        good_npz,
        *(("--val", good_npz) if command == "export" else ()),
    )
    assert_one_line_error(result, "model file not found")


def test_export_needs_a_tflite_name(tmp_path, good_npz):
    result = run_cli("export", "--model", good_npz, "--out", tmp_path / "model.bin")
    assert_one_line_error(result, "--out must name a .tflite file")


def test_export_default_data_missing(tmp_path, monkeypatch):
    monkeypatch.setattr("training.data.SHARED_FER2013", tmp_path / "no-shared")
    result = run_cli("export", "--model", tmp_path / "m.keras", "--out", tmp_path / "m.tflite")
    assert_one_line_error(result, "--data is required")


def test_evaluate_unknown_model_format(tmp_path, good_npz):
    model = tmp_path / "model.h5"
    model.write_bytes(b"HDF")
    result = run_cli("evaluate", "--model", model, "--data", good_npz, "--out", tmp_path / "e")
    assert_one_line_error(result, "expected a .keras or .tflite")


@pytest.mark.parametrize("suffix", [".keras", ".tflite"])
def test_corrupt_model_file(tmp_path, good_npz, suffix):
    if suffix == ".keras":
        pytest.importorskip("keras")
    model = tmp_path / f"model{suffix}"
    model.write_bytes(b"definitely not a model")
    result = run_cli("evaluate", "--model", model, "--data", good_npz, "--out", tmp_path / "e")
    assert_one_line_error(result, str(model))


def _keras_model(path, input_side: int, classes: int):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((input_side, input_side, 1))
    hidden = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(hidden))
    model.save(path)
    return model


@pytest.mark.parametrize(
    ("side", "classes", "message"),
    [(32, 7, "model input must be (None, 48, 48, 1)"), (48, 5, "model output must be (None, 7)")],
)
@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_keras_model_of_the_wrong_shape(tmp_path, good_npz, side, classes, message, command):
    model = tmp_path / "wrong.keras"
    _keras_model(model, side, classes)
    out = tmp_path / ("m.tflite" if command == "export" else "eval")
    extra = ("--val", good_npz) if command == "export" else ()
    result = run_cli(command, "--model", model, "--out", out, "--data", good_npz, *extra)
    assert_one_line_error(result, message)
    assert not out.exists()


def test_tflite_model_of_the_wrong_shape(tmp_path, good_npz):
    tf = pytest.importorskip("tensorflow")
    keras_model = _keras_model(tmp_path / "five.keras", 48, 5)
    model = tmp_path / "five.tflite"
    model.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())
    result = run_cli("evaluate", "--model", model, "--data", good_npz, "--out", tmp_path / "e")
    assert_one_line_error(result, "is not 7 classes")


def test_a_real_process_prints_one_line_on_stderr(tmp_path):
    """No traceback from the installed entry point either (python -m training)."""
    faces = write_npz(tmp_path / "empty.npz", np.zeros((0, 48, 48), np.uint8), np.zeros(0))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "evaluate",
            "--model",
            "absent.tflite",
            "--data",
            faces,
            "--out",
            tmp_path / "e",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    expected = f"error: {faces}: the 'val' split holds no images"
    assert result.stderr.strip().splitlines() == [expected]


def test_train_teacher_missing_or_of_the_wrong_shape(tmp_path, good_npz):
    result = run_cli(*train_args(good_npz, good_npz, tmp_path, "--teacher", tmp_path / "t.keras"))
    assert_one_line_error(result, "--teacher: no such model")
    teacher = tmp_path / "five.keras"
    _keras_model(teacher, 48, 5)
    result = run_cli(*train_args(good_npz, good_npz, tmp_path, "--teacher", teacher))
    assert_one_line_error(result, "model output must be (None, 7)")
    assert not (tmp_path / "run").exists()
