"""Batched training augmentation in torch, for training on a GPU (``training.gpu``).

The same transforms as :mod:`training.augment` (its TensorFlow twin, which
``fer-model train`` runs in ``tf.data``), driven by the same
:class:`~training.augment_config.AugmentConfig`: one random affine transform per
face (flip, rotation, scale, shift) in a single bilinear resampling with edge
pixels repeated, then brightness/contrast jitter and random erasing, all on
0–255 grey levels. Everything stays on the GPU, where it costs far less than a
training step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from training.augment_config import AugmentConfig, affine_coefficients


def augment_batch(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Return an augmented copy of a float batch of N×1×H×W faces in 0–255."""
    images = _random_affine(images, config, generator)
    images = _random_light(images, config, generator)
    if config.erase_prob > 0:
        images = _random_erase(images, config, generator)
    return images.clamp(0.0, 255.0)


def _uniform(shape, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device) * (high - low) + low


def _random_affine(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    n, size = images.shape[0], images.shape[-1]
    angle = _uniform(n, generator, -1.0, 1.0) * math.radians(config.max_rotation_deg)
    scale = 1.0 + _uniform(n, generator, -config.max_zoom, config.max_zoom)
    dx = _uniform(n, generator, -config.max_shift, config.max_shift) * size
    dy = _uniform(n, generator, -config.max_shift, config.max_shift) * size
    mirror = torch.ones(n, device=images.device)
    if config.flip:
        mirror = torch.where(_uniform(n, generator, 0.0, 1.0) < 0.5, -1.0, 1.0)
    # Output pixel p samples input pixel A·(p - c) + c - d, c the centre (as in augment.py).
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    centre = (size - 1) / 2.0
    a0, a1, a2, b0, b1, b2 = affine_coefficients(cos, sin, mirror, dx, dy, centre)
    coords = torch.arange(size, device=images.device, dtype=images.dtype)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")

    def along(a, b, c):  # per face: a·x + b·y + c over the output grid
        return a[:, None, None] * xs + b[:, None, None] * ys + c[:, None, None]

    source = torch.stack([along(a0, a1, a2), along(b0, b1, b2)], dim=-1)
    grid = source * (2.0 / (size - 1)) - 1.0  # pixel centres → [-1, 1] with align_corners
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _random_light(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    shape = (images.shape[0], 1, 1, 1)
    contrast = 1.0 + _uniform(shape, generator, -config.max_contrast, config.max_contrast)
    brightness = _uniform(shape, generator, -config.max_brightness, config.max_brightness)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * contrast + mean + brightness


def _random_erase(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Blank one random rectangle (random grey level) in a share of the faces."""
    n, size = images.shape[0], images.shape[-1]
    area = _uniform(n, generator, *config.erase_area) * size * size
    aspect = torch.exp(_uniform(n, generator, math.log(0.5), math.log(2.0)))
    h = torch.sqrt(area * aspect).clamp(max=size)
    w = torch.sqrt(area / aspect).clamp(max=size)
    y0 = _uniform(n, generator, 0.0, 1.0) * (size - h)
    x0 = _uniform(n, generator, 0.0, 1.0) * (size - w)
    apply = _uniform(n, generator, 0.0, 1.0) < config.erase_prob
    fill = _uniform((n, 1, 1, 1), generator, 0.0, 255.0)
    coords = torch.arange(size, device=images.device, dtype=images.dtype)
    rows = (coords[None, :] >= y0[:, None]) & (coords[None, :] < (y0 + h)[:, None])
    cols = (coords[None, :] >= x0[:, None]) & (coords[None, :] < (x0 + w)[:, None])
    mask = rows[:, :, None] & cols[:, None, :] & apply[:, None, None]
    return torch.where(mask[:, None], fill, images)
