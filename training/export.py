"""``fer-model export``: a trained ``.keras`` model → the int8 ``.tflite`` the client ships.

Quantisation is calibrated on real training faces, stratified by class, so rare
expressions (disgust) shape the activation ranges too. Beside the ``.tflite`` a
JSON file records what a reader of the model needs: labels, emoji, input
contract, validation metrics of the float and the int8 model, the data files'
sha256 and the commands that made the model.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_tui.classifier import combine_views
from fer_tui.emotions import EMOJI, LABELS, NUM_CLASSES
from fer_tui.preprocess import FACE_SIZE, as_model_input, mirrored
from training.data import FaceSet, file_sha256
from training.metrics import Metrics, compute_metrics
from training.predict import keras_predictor, tflite_predictor

#: Calibration faces per class: 7 × 50 = 350, enough for stable int8 ranges.
CALIBRATION_PER_CLASS = 50


@dataclass(frozen=True)
class Scores:
    """A model's validation metrics without and with flip averaging."""

    plain: Metrics
    flip: Metrics

    def summary(self) -> dict[str, float]:
        return {
            "accuracy": round(self.plain.accuracy, 4),
            "macro_f1": round(self.plain.macro_f1, 4),
            "accuracy_flip": round(self.flip.accuracy, 4),
            "macro_f1_flip": round(self.flip.macro_f1, 4),
            "ece": round(self.plain.ece, 4),
        }


def calibration_faces(
    faces: FaceSet, per_class: int = CALIBRATION_PER_CLASS, seed: int = 0
) -> np.ndarray:
    """Pick up to ``per_class`` random faces of every class (all of a rarer class)."""
    rng = np.random.default_rng(seed)
    picks = []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(faces.y == label)
        picks.append(rng.choice(members, size=min(per_class, len(members)), replace=False))
    chosen = np.concatenate(picks)
    rng.shuffle(chosen)
    return faces.x[chosen]


def convert_int8(model, calibration: np.ndarray) -> bytes:
    """Convert a Keras model to a full-integer int8 TFLite flatbuffer of input (1, 48, 48, 1)."""
    import keras
    import tensorflow as tf

    # A fixed batch of one: the contract is exactly (1, 48, 48, 1), as the client feeds it.
    face = keras.Input(batch_shape=(1, FACE_SIZE, FACE_SIZE, 1), name="face")
    single = keras.Model(face, model(face, training=False))

    def representative():
        for one in as_model_input(calibration):
            yield [one[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(single)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its whole graph
        return converter.convert()


def score(predict, faces: FaceSet) -> Scores:
    """Validation metrics of ``predict`` on ``faces``, plain and flip-averaged."""
    plain, flipped = predict(faces.x), predict(mirrored(faces.x))
    both = combine_views(plain, flipped)
    return Scores(compute_metrics(plain, faces.y), compute_metrics(both, faces.y))


def training_run(model_path: Path) -> dict:
    """What the run directory beside ``model_path`` says about its training, if anything."""
    run: dict = {}
    config_path = model_path.parent / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except ValueError:
            config = {}
        run["command"] = config.get("command")
        run["config"] = config.get("config")
    history_path = model_path.parent / "history.csv"
    if history_path.is_file():
        with history_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows:
            best = max(rows, key=lambda row: float(row["val_accuracy"]))
            run["epochs_done"] = len(rows)
            run["best_epoch"] = int(float(best["epoch"]))
            run["minutes"] = round(sum(float(row["seconds"]) for row in rows) / 60, 1)
    return run


def export(
    model,
    model_path: Path,
    out: Path,
    train_set: FaceSet,
    val_set: FaceSet,
    data_paths: dict[str, Path],
    command: str,
    seed: int = 0,
) -> dict:
    """Write ``out`` (.tflite) and its ``.json``; return the JSON record.

    Both files appear only once everything is measured, each by an atomic rename,
    so a failed export never leaves a model beside a stale description.
    """
    tflite = convert_int8(model, calibration_faces(train_set, seed=seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial.tflite")
    partial.write_bytes(tflite)
    try:
        float_scores = score(keras_predictor(model), val_set)
        int8_scores = score(tflite_predictor(partial), val_set)
    except BaseException:
        partial.unlink()
        raise
    details = _quantization(tflite)
    record = {
        "labels": list(LABELS),
        "emoji": {label: EMOJI[label] for label in LABELS},
        "input": {
            "shape": [1, FACE_SIZE, FACE_SIZE, 1],
            "dtype": "int8",
            "quantization": details["input"],
            "pixels": "grey levels 0-255 (normalised inside the graph)",
        },
        "output": {
            "shape": [1, NUM_CLASSES],
            "dtype": "int8",
            "quantization": details["output"],
            "meaning": "softmax over labels",
        },
        "file_bytes": len(tflite),
        "parameters": int(model.count_params()),
        "validation": {
            "data": shown_path(data_paths["val"]),
            "images": len(val_set),
            "float": float_scores.summary(),
            "int8": int8_scores.summary(),
        },
        "calibration": {
            "data": shown_path(data_paths["train"]),
            "per_class": CALIBRATION_PER_CLASS,
            "seed": seed,
        },
        "data_sha256": {name: file_sha256(path) for name, path in data_paths.items()},
        "command": command,
        "source_model": shown_path(model_path),
        "training": training_run(model_path),
    }
    partial_json = partial.with_suffix(".json")
    partial_json.write_text(
        json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    os.replace(partial, out)
    os.replace(partial_json, out.with_suffix(".json"))
    return record


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it lies beside or in it (portable records)."""
    repo = Path(__file__).resolve().parents[1]
    absolute = Path(path).resolve()
    if absolute.is_relative_to(repo.parent):
        return os.path.relpath(absolute, repo)
    return str(path)


def _quantization(tflite: bytes) -> dict[str, list[float]]:
    """(scale, zero point) of the model's input and output tensors."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite)
    (detail_in,), (detail_out,) = interpreter.get_input_details(), interpreter.get_output_details()
    return {
        name: [float(d["quantization"][0]), int(d["quantization"][1])]
        for name, d in (("input", detail_in), ("output", detail_out))
    }


def comparison_table(record: dict) -> str:
    """Float against int8 validation figures, one metric per line."""
    val = record["validation"]
    rows = [
        ("accuracy", "accuracy"),
        ("accuracy, flip-averaged", "accuracy_flip"),
        ("macro-F1", "macro_f1"),
        ("macro-F1, flip-averaged", "macro_f1_flip"),
        ("calibration error", "ece"),
    ]
    lines = [f"{'validation (' + str(val['images']) + ' faces)':<28}{'float':>8}{'int8':>8}"]
    for name, key in rows:
        lines.append(f"{name:<28}{val['float'][key]:>8.4f}{val['int8'][key]:>8.4f}")
    return "\n".join(lines)
