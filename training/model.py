"""The expression classifier: one readable model-building function.

A VGG-style stack of plain 3×3 convolutions with batch normalisation. Plain
convolutions, not depthwise-separable ones: on the 2-core CPUs this project
trains on, a separable net trained about 3× slower than a plain one twice its
size (docs/model.md; ``bench/train_speed.py`` compares stage layouts).
Normalisation (0–255 → -1..1) is the first layer, so the exported model takes
raw grey levels.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_tui.emotions import NUM_CLASSES
from fer_tui.preprocess import FACE_SIZE


def build_model(
    widths: tuple[int, ...] = (32, 64, 128, 256),
    convs_per_stage: int | tuple[int, ...] = 2,
    dropout: float = 0.4,
) -> keras.Model:
    """Return an uncompiled classifier of 48×48×1 grey faces (0–255) into 7 softmax scores.

    Each stage is ``convs_per_stage`` conv-BN-ReLU blocks (one count for all
    stages, or one per stage) followed by 2×2 max pooling, so four stages take
    48×48 down to 3×3 before global pooling. Weight decay is the optimiser's
    (AdamW, decoupled), so the layers carry no regularisers.
    """
    if isinstance(convs_per_stage, int):
        convs_per_stage = (convs_per_stage,) * len(widths)
    if len(convs_per_stage) != len(widths):
        raise ValueError(f"convs_per_stage {convs_per_stage} needs one count per width {widths}")
    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="face")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(inputs)
    for stage, (width, convs) in enumerate(zip(widths, convs_per_stage, strict=True), start=1):
        for block in range(1, convs + 1):
            name = f"stage{stage}_conv{block}"
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=name)(x)
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(name=f"stage{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="fer_vgg")
