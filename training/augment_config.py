"""How strong each training augmentation is: one definition for both implementations.

``training.augment`` applies it with TensorFlow ops inside ``tf.data`` (the CPU
loop of ``fer-model train``); ``training.augment_torch`` applies the same
transforms with torch on a GPU (``training.gpu``). Neither imports the other's
framework, so this dataclass lives on its own.
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
