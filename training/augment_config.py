"""How strong each training augmentation is, and its geometry: one definition for both.

``training.augment`` applies it with TensorFlow ops inside ``tf.data`` (the CPU
loop of ``fer-model train``); ``training.augment_torch`` applies the same
transforms with torch on a GPU (``training.gpu``). Neither imports the other's
framework, so what they share lives here, framework-free.
"""

from __future__ import annotations

from dataclasses import dataclass


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
