"""Batched training augmentation in torch, for training on a GPU (``fer-model gpu``).

The random choices come from :func:`training.augment_config.draw` (numpy, the
one definition both backends share; a batch's draw is a few floats per face);
this module applies them as :mod:`training.augment` does in TensorFlow: one
bilinear affine resampling per face with edge pixels repeated, then
brightness/contrast and random erasing, all on 0–255 grey levels, on the GPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.augment_config import AugmentConfig, Draw, draw


def augment_batch(
    images: torch.Tensor, config: AugmentConfig, rng: np.random.Generator
) -> torch.Tensor:
    """Return an augmented copy of a float batch of N×1×H×W faces in 0–255."""
    d = draw(images.shape[0], images.shape[-1], config, rng)
    return apply(images, Draw(*(torch.as_tensor(a, device=images.device) for a in d)))


def apply(images: torch.Tensor, d: Draw) -> torch.Tensor:
    """Apply one :class:`Draw` (as tensors) to N×1×H×W faces in 0–255."""
    size = images.shape[-1]
    coords = torch.arange(size, device=images.device, dtype=images.dtype)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    a = d.affine[:, :, None, None]
    source = torch.stack(
        [a[:, 0] * xs + a[:, 1] * ys + a[:, 2], a[:, 3] * xs + a[:, 4] * ys + a[:, 5]], dim=-1
    )
    grid = source * (2.0 / (size - 1)) - 1.0  # pixel centres → [-1, 1] with align_corners
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    contrast, brightness = d.light[:, 0, None, None, None], d.light[:, 1, None, None, None]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * contrast + mean + brightness
    y0, x0, h, w = (d.erase[:, k, None] for k in range(4))
    rows = (coords[None, :] >= y0) & (coords[None, :] < y0 + h)
    cols = (coords[None, :] >= x0) & (coords[None, :] < x0 + w)
    mask = rows[:, :, None] & cols[:, None, :]
    images = torch.where(mask[:, None], d.erase[:, 4, None, None, None], images)
    return images.clamp(0.0, 255.0)
