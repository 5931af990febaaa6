"""Benchmark the bundled emotion model against the ``fer`` package's own model, in one run.

For each model, on the same FER2013 validation faces: file size, parameters,
accuracy and macro-F1 (float and int8 for ours when ``--keras`` gives the float
model), and per-face latency on one thread (median and 90th percentile over
``--repeats`` single-face calls, after a warm-up). The peer, ``fer``'s
mini-Xception, runs in ``.bench-venv-fer/`` (see ``bench/fer_peer.py``)::

    .venv/bin/python bench/model_bench.py [--keras runs/vgg-s1/best.keras] [--no-fer]

Ratios are ours ÷ theirs (scores: difference in points), all measured in the
same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from fer_peer import ensure_fer_venv  # noqa: E402

from fer_tui.classifier import BUNDLED_MODEL, EmotionClassifier, combine_views  # noqa: E402
from fer_tui.preprocess import mirrored  # noqa: E402
from training.data import SHARED_FER2013  # noqa: E402
from training.metrics import compute_metrics  # noqa: E402


def time_ours(path: Path, faces: np.ndarray, repeats: int, how: str) -> list[float]:
    """Seconds per single-face ``EmotionClassifier.<how>`` on one thread.

    ``predict``: one view; ``classify``: as the client runs the model (its JSON's
    inference mode: flip averaging and temperature).
    """
    classifier = EmotionClassifier(path, num_threads=1)
    call = getattr(classifier, how)
    for face in faces[:50]:
        call(face)
    times = []
    for i in range(repeats):
        face = faces[i % len(faces)]
        started = time.perf_counter()
        call(face)
        times.append(time.perf_counter() - started)
    return times


def time_pair_invoke(path: Path, faces: np.ndarray, repeats: int) -> list[float]:
    """Seconds per invoke of a face and its mirror as one batch of two (the alternative
    to classify's two single-face invokes), on one thread."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [2, 48, 48, 1])
    interpreter.allocate_tensors()
    scale, zero = detail["quantization"]
    times = []
    for i in range(repeats + 50):
        face = faces[i % len(faces)]
        pair = np.stack([face, mirrored(face)])[..., None] / scale + zero
        started = time.perf_counter()
        interpreter.set_tensor(detail["index"], pair.astype(detail["dtype"]))
        interpreter.invoke()
        if i >= 50:  # after a warm-up
            times.append(time.perf_counter() - started)
    return times


def score_views(predict, x: np.ndarray, y: np.ndarray) -> dict:
    """Metrics of one view and of flip averaging (same probabilities, one pass each)."""
    probs, flipped = predict(x), predict(mirrored(x))
    return {
        "plain": compute_metrics(probs, y),
        "flip": compute_metrics(combine_views(probs, flipped), y),
        "views": (probs, flipped),
    }


def score_ours(path: Path, x: np.ndarray, y: np.ndarray) -> dict:
    classifier = EmotionClassifier(path, num_threads=1)
    scores = score_views(classifier.predict_many, x, y)
    mode = classifier.inference
    probs, flipped = scores["views"]
    client = combine_views(probs, flipped if mode.flip_average else None, mode.temperature)
    return {**scores, "client": compute_metrics(client, y)}


def score_keras(path: Path, x: np.ndarray, y: np.ndarray) -> dict:
    from training.predict import keras_predictor, load_keras_model

    model = load_keras_model(path)
    return {**score_views(keras_predictor(model), x, y), "parameters": int(model.count_params())}


def run_fer(x: np.ndarray, repeats: int) -> dict:
    """Run ``fer``'s model in its own venv on ``x``; return its JSON report."""
    python = ensure_fer_venv()
    with tempfile.TemporaryDirectory() as folder:
        faces, out = Path(folder) / "faces.npz", Path(folder) / "fer.json"
        np.savez(faces, x=x)
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "OMP_NUM_THREADS": "1",
        }
        subprocess.run(
            [
                str(python),
                str(REPO / "bench" / "fer_peer.py"),
                "classify",
                str(faces),
                str(out),
                "--repeats",
                str(repeats),
            ],
            check=True,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        return json.loads(out.read_text())


def ms(times: list[float], q: float) -> float:
    return float(np.percentile(times, q)) * 1000.0


@dataclass
class Column:
    """One model's figures; ``None`` where a figure does not apply."""

    name: str
    kib: float
    parameters: int | None
    input: str
    accuracy: float
    macro_f1: float
    accuracy_flip: float | None
    latency_ms: float | None
    latency_p90_ms: float | None
    ece: float | None = None  # as the client runs it
    classify_ms: float | None = None
    classify_p90_ms: float | None = None


ROWS = (
    ("file size (KiB)", "kib", "{:.0f}"),
    ("parameters (k)", "parameters", "{:.0f}"),
    ("input", "input", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("accuracy, flip-averaged", "accuracy_flip", "{:.4f}"),
    ("macro-F1", "macro_f1", "{:.4f}"),
    ("latency/face median (ms)", "latency_ms", "{:.3f}"),
    ("latency/face p90 (ms)", "latency_p90_ms", "{:.3f}"),
    ("calibration error, as the client runs it", "ece", "{:.4f}"),
    ("classify/face as the client runs it, median (ms)", "classify_ms", "{:.3f}"),
    ("classify/face as the client runs it, p90 (ms)", "classify_p90_ms", "{:.3f}"),
)


SCORES = frozenset({"accuracy", "accuracy_flip", "macro_f1"})


def table(columns: list[Column]) -> str:
    """Markdown: one column per model, then ours against each other column.

    Sizes and latencies as ratios (ours ÷ theirs), scores as differences in points.
    """
    peers = columns[1:]
    head = ["measure", *(c.name for c in columns), *(f"ratio vs {p.name}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, field, fmt in ROWS:
        values = [getattr(c, field) for c in columns]
        if field == "parameters":
            values = [v / 1000 if v else None for v in values]
        cells = [fmt.format(v) if v is not None else "–" for v in values]
        ratios = []
        for peer_value in values[1:]:
            numeric = isinstance(values[0], float | int) and isinstance(peer_value, float | int)
            if not numeric or not peer_value:
                ratios.append("")
            elif field in SCORES:  # a difference in points reads better than a ratio here
                ratios.append(f"{100 * (values[0] - peer_value):+.1f} pt")
            else:
                ratios.append(f"{values[0] / peer_value:.2f}×")
        lines.append("| " + " | ".join([label, *cells, *ratios]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--keras", type=Path, help="the float model the .tflite came from")
    parser.add_argument("--data", type=Path, default=SHARED_FER2013 / "val.npz")
    parser.add_argument("--repeats", type=int, default=2000, help="single-face timing calls")
    parser.add_argument("--no-fer", action="store_true", help="skip the fer peer")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"error: no validation data at {args.data}")
    with np.load(args.data) as archive:
        x, y = archive["x"], archive["y"]
    meta_path = args.model.with_suffix(".json")
    record = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}

    ours = score_ours(args.model, x, y)
    times = time_ours(args.model, x, args.repeats, "predict")
    classify_times = time_ours(args.model, x, args.repeats, "classify")
    pair_times = time_pair_invoke(args.model, x, args.repeats)
    columns = [
        Column(
            "FER-TMS int8",
            args.model.stat().st_size / 1024,
            record.get("parameters"),
            "48² int8",
            ours["plain"].accuracy,
            ours["plain"].macro_f1,
            ours["flip"].accuracy,
            ms(times, 50),
            ms(times, 90),
            ours["client"].ece,
            ms(classify_times, 50),
            ms(classify_times, 90),
        )
    ]
    if args.keras:
        float_scores = score_keras(args.keras, x, y)
        columns.append(
            Column(
                "FER-TMS float (.keras)",
                args.keras.stat().st_size / 1024,
                float_scores["parameters"],
                "48² float32",
                float_scores["plain"].accuracy,
                float_scores["plain"].macro_f1,
                float_scores["flip"].accuracy,
                None,
                None,
            )
        )
    peer = None if args.no_fer else run_fer(x, args.repeats)
    if peer:
        side = peer["input_shape"][0]
        for key, name in (("tflite", "fer default (.tflite)"), ("hdf5", "fer mini-Xception")):
            model = peer["models"][key]
            metrics = compute_metrics(np.array(model["probs"]), y)
            columns.append(
                Column(
                    name,
                    model["model_bytes"] / 1024,
                    model["parameters"],
                    f"{side}² float32",
                    metrics.accuracy,
                    metrics.macro_f1,
                    None,
                    ms(model["latency_s"], 50),
                    ms(model["latency_s"], 90),
                )
            )

    print(
        f"\n{len(y)} validation faces from {args.data.name}; one thread; "
        f"{args.repeats} single-face calls per model for latency\n"
    )
    print(table(columns))
    mode = EmotionClassifier(args.model).inference
    print(
        f"\nas the client runs it ({mode.to_json()}): accuracy {ours['client'].accuracy:.4f}, "
        f"macro-F1 {ours['client'].macro_f1:.4f}, calibration error {ours['client'].ece:.4f}; "
        f"classify vs one predict, same run: {ms(classify_times, 50) / ms(times, 50):.2f}× "
        f"(median); a face and its mirror as one batch-2 invoke instead: "
        f"{ms(pair_times, 50):.3f} ms median "
        f"({ms(pair_times, 50) / ms(times, 50):.2f}× one predict)"
    )
    if peer:
        print(
            f"\npeer: fer {peer['versions']['fer']} on TensorFlow "
            f"{peer['versions']['tensorflow']} (.bench-venv-fer)"
        )


if __name__ == "__main__":
    main()
