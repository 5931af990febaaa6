"""Per-face int8 latency of candidate layouts, as ratios to the first, in one run.

Latency is a property of the architecture, not of the weights, so each layout
is built with ``training.model.build_model``, exported full-integer int8
exactly as ``fer-model export`` does (calibrated on random faces: the scales
do not change the op count), and timed through LiteRT on one thread. The
layouts are interleaved over ``--rounds`` so machine noise hits them alike;
the table gives each one's median over all rounds::

    .venv/bin/python bench/width_latency.py
    .venv/bin/python bench/width_latency.py --layout 32,64/1,2 --layout 24,48/1,2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_tui.classifier import EmotionClassifier

DEFAULT_LAYOUTS = (
    "32,64,128,256/1,2,2,2",
    "32,56,112,224/1,2,2,2",
    "32,48,96,192/1,2,2,2",
    "24,48,96,192/1,2,2,2",
    "32,64,128,256/1,1,2,2",
)


def parse_layout(text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    widths, convs = text.split("/")
    return tuple(map(int, widths.split(","))), tuple(map(int, convs.split(",")))


def int8_model(widths: tuple[int, ...], convs: tuple[int, ...]) -> tuple[bytes, int, int]:
    """The int8 .tflite bytes of a layout, its parameter count and multiply-accumulates."""
    from training.export import convert_int8
    from training.model import build_model

    model = build_model(widths, convs)
    calibration = np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8)
    return convert_int8(model, calibration), model.count_params(), conv_macs(model)


def conv_macs(model) -> int:
    """Multiply-accumulates of the model's convolutions and dense layer for one face."""
    total = 0
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kernel = weights[0]
        if kernel.ndim == 4:  # conv: every output pixel costs the whole kernel
            height, width = layer.output.shape[1:3]
            total += height * width * kernel.size
        elif kernel.ndim == 2:
            total += kernel.size
    return total


def time_predicts(classifier, calls: int) -> list[float]:
    """Seconds per single-face ``predict``: the client's own call, quantisation included."""
    face = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        classifier.predict(face)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", action="append", help="widths/convs, e.g. 32,64/1,2")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="single-face calls per round")
    args = parser.parse_args()
    layouts = args.layout or list(DEFAULT_LAYOUTS)
    built = {layout: int8_model(*parse_layout(layout)) for layout in layouts}
    classifiers = {}
    with tempfile.TemporaryDirectory() as folder:
        for i, (layout, (model, _, _)) in enumerate(built.items()):
            path = Path(folder) / f"layout{i}.tflite"
            path.write_bytes(model)
            classifiers[layout] = EmotionClassifier(path, num_threads=1)
            time_predicts(classifiers[layout], 50)  # warm-up
    times: dict[str, list[float]] = {layout: [] for layout in layouts}
    for _ in range(args.rounds):
        for layout, classifier in classifiers.items():
            times[layout] += time_predicts(classifier, args.calls)
    base = float(np.median(times[layouts[0]]))
    print(f"int8, one thread, {args.rounds} rounds × {args.calls} single-face calls, interleaved")
    print(
        "| widths / convs per stage | parameters | MMACs | int8 KiB "
        f"| median ms | vs {layouts[0]} |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for layout, (model, params, macs) in built.items():
        median = float(np.median(times[layout]))
        print(
            f"| {layout} | {params / 1e6:.2f} M | {macs / 1e6:.0f} | {len(model) / 1024:.0f} "
            f"| {median * 1e3:.2f} | {median / base:.2f}× |"
        )


if __name__ == "__main__":
    main()
