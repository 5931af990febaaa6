"""Training throughput of candidate architectures: images/s of a whole training step.

Measures ``training.model.build_model`` with the real augmentation on random
faces (throughput does not depend on the pixels), after a warm-up, so the
choice of convolutions per stage rests on a number rather than a guess::

    python bench/train_speed.py                      # 2,2,2,2 against 1,2,2,2
    python bench/train_speed.py --convs 1,2,2,2 --steps 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def images_per_second(
    convs: tuple[int, ...], widths: tuple[int, ...], batch: int, steps: int
) -> tuple[int, float]:
    import keras
    import tensorflow as tf

    from training.augment import AugmentConfig, augment_batch
    from training.model import build_model

    model = build_model(widths, convs)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * 8, 48, 48, 1)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 7, batch * 8), 7)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch).enumerate()
    ds = ds.map(
        lambda s, b: (
            augment_batch(b[0], AugmentConfig(), tf.stack([tf.constant(1, tf.int64), s])),
            b[1],
        )
    )
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
    started = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return model.count_params(), steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convs", nargs="+", default=["2,2,2,2", "1,2,2,2"])
    parser.add_argument("--widths", default="32,64,128,256")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    results = []
    for spec in args.convs:
        convs = tuple(int(c) for c in spec.split(","))
        results.append((spec, *images_per_second(convs, widths, args.batch, args.steps)))
    base = results[0][2]
    print(f"\nwidths {args.widths}, batch {args.batch}, {args.steps} steps after warm-up\n")
    print("| convs per stage | parameters | images/s | vs first |")
    print("|---|---:|---:|---:|")
    for spec, params, speed in results:
        print(f"| {spec} | {params / 1e6:.2f} M | {speed:.0f} | {speed / base:.2f}× |")


if __name__ == "__main__":
    main()
