"""The training augmentation, defined once: its strengths and its random draws.

:func:`draw` samples every random choice of a batch in numpy (an affine map,
contrast, brightness and an erased rectangle per face). The backends only
resample with those numbers: ``training.augment`` with TensorFlow ops inside
``tf.data`` (``fer-model train``), ``training.augment_torch`` with torch on a
GPU (``fer-model gpu``). So the same seed gives both the same transforms, and
neither imports the other's framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """How strong each augmentation is; zeros turn one off."""

    max_rotation_deg: float = 10.0
    max_shift: float = 0.1  # fraction of the side
    max_zoom: float = 0.12  # scale in [1 - z, 1 + z]
    flip: bool = True
    max_brightness: float = 25.0  # grey levels
    max_contrast: float = 0.25  # factor in [1 - c, 1 + c]
    erase_prob: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.2)


def affine_coefficients(cos, sin, mirror, dx, dy, centre: float):
    """Per-face coefficients of the map from output to input pixel, ``A·(p - c) + c - d``.

    ``cos``/``sin`` are cos θ / s and sin θ / s (rotation θ, scale s), ``mirror``
    is ±1, ``(dx, dy)`` the shift in pixels and ``centre`` the image centre.
    Plain arithmetic, so TensorFlow and torch tensors alike go through it.
    Returns ``(a0, a1, a2, b0, b1, b2)``: an output pixel (x, y) samples the
    input at ``(a0·x + a1·y + a2, b0·x + b1·y + b2)``.
    """
    a0, a1 = cos * mirror, -sin
    b0, b1 = sin * mirror, cos
    a2 = centre - a0 * centre - a1 * centre - dx
    b2 = centre - b0 * centre - b1 * centre - dy
    return a0, a1, a2, b0, b1, b2


class Draw(NamedTuple):
    """One batch's random choices, float32 arrays with one row per face."""

    affine: np.ndarray  # (n, 6): a0, a1, a2, b0, b1, b2 of affine_coefficients
    light: np.ndarray  # (n, 2): contrast factor, brightness offset
    erase: np.ndarray  # (n, 5): y0, x0, h, w, fill; h = w = 0 where nothing is erased


def draw(n: int, size: int, config: AugmentConfig, rng: np.random.Generator) -> Draw:
    """Sample the augmentation of ``n`` faces of ``size``×``size`` pixels."""

    def uniform(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, n)

    angle = uniform(-1.0, 1.0) * math.radians(config.max_rotation_deg)
    scale = 1.0 + uniform(-config.max_zoom, config.max_zoom)
    dx = uniform(-config.max_shift, config.max_shift) * size
    dy = uniform(-config.max_shift, config.max_shift) * size
    flips = uniform(0.0, 1.0) < 0.5
    mirror = np.where(flips & config.flip, -1.0, 1.0)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    affine = np.stack(affine_coefficients(cos, sin, mirror, dx, dy, (size - 1) / 2.0), axis=1)
    contrast = 1.0 + uniform(-config.max_contrast, config.max_contrast)
    brightness = uniform(-config.max_brightness, config.max_brightness)
    area = uniform(*config.erase_area) * size * size
    aspect = np.exp(uniform(math.log(0.5), math.log(2.0)))
    apply = uniform(0.0, 1.0) < config.erase_prob
    h = np.where(apply, np.minimum(np.sqrt(area * aspect), size), 0.0)
    w = np.where(apply, np.minimum(np.sqrt(area / aspect), size), 0.0)
    y0 = uniform(0.0, 1.0) * (size - h)
    x0 = uniform(0.0, 1.0) * (size - w)
    fill = uniform(0.0, 255.0)
    return Draw(
        affine.astype(np.float32),
        np.stack([contrast, brightness], axis=1).astype(np.float32),
        np.stack([y0, x0, h, w, fill], axis=1).astype(np.float32),
    )
