"""Batched training augmentation in TensorFlow ops, run inside ``tf.data``.

One random affine transform per face (flip, rotation, scale, shift) in a single
resampling, then brightness/contrast jitter and random erasing. All of it works
on 0–255 grey levels, the same range the model takes at inference.
``training.augment_torch`` is the same on a GPU without TensorFlow.
"""

from __future__ import annotations

import math

import tensorflow as tf

from training.augment_config import AugmentConfig, affine_coefficients


def augment_batch(images: tf.Tensor, config: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """Return an augmented copy of a float32 batch of N×H×W×1 faces in 0–255.

    ``seed`` is a stateless-RNG seed of shape (2,), so a run is reproducible.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    images = _random_affine(images, config, seeds[0])
    images = _random_light(images, config, seeds[1])
    if config.erase_prob > 0:
        images = _random_erase(images, config, seeds[2])
    return tf.clip_by_value(images, 0.0, 255.0)


def _uniform(shape, seed, low, high):
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


def _random_affine(images: tf.Tensor, config: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    n = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    s = tf.random.experimental.stateless_split(seed, num=5)
    angle = _uniform([n], s[0], -1.0, 1.0) * (config.max_rotation_deg * math.pi / 180.0)
    scale = 1.0 + _uniform([n], s[1], -config.max_zoom, config.max_zoom)
    dx = _uniform([n], s[2], -config.max_shift, config.max_shift) * size
    dy = _uniform([n], s[3], -config.max_shift, config.max_shift) * size
    mirror = tf.ones([n])
    if config.flip:
        mirror = tf.where(_uniform([n], s[4], 0.0, 1.0) < 0.5, -1.0, 1.0)
    # Output pixel p maps to input pixel A·(p - c) + c - d, c the centre.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    centre = (size - 1.0) / 2.0
    a0, a1, a2, b0, b1, b2 = affine_coefficients(cos, sin, mirror, dx, dy, centre)
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )


def _random_light(images: tf.Tensor, config: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    n = tf.shape(images)[0]
    s = tf.random.experimental.stateless_split(seed, num=2)
    contrast = 1.0 + _uniform([n, 1, 1, 1], s[0], -config.max_contrast, config.max_contrast)
    brightness = _uniform([n, 1, 1, 1], s[1], -config.max_brightness, config.max_brightness)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    return (images - mean) * contrast + mean + brightness


def _random_erase(images: tf.Tensor, config: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """Blank one random rectangle (random grey level) in a share of the faces."""
    n = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    s = tf.random.experimental.stateless_split(seed, num=6)
    area = _uniform([n], s[0], *config.erase_area) * size * size
    aspect = tf.exp(_uniform([n], s[1], math.log(0.5), math.log(2.0)))
    h = tf.minimum(tf.sqrt(area * aspect), size)
    w = tf.minimum(tf.sqrt(area / aspect), size)
    y0 = _uniform([n], s[2], 0.0, 1.0) * (size - h)
    x0 = _uniform([n], s[3], 0.0, 1.0) * (size - w)
    apply = _uniform([n], s[4], 0.0, 1.0) < config.erase_prob
    fill = _uniform([n, 1, 1, 1], s[5], 0.0, 255.0)
    coords = tf.range(size)
    rows = (coords[None, :] >= y0[:, None]) & (coords[None, :] < (y0 + h)[:, None])
    cols = (coords[None, :] >= x0[:, None]) & (coords[None, :] < (x0 + w)[:, None])
    mask = rows[:, :, None] & cols[:, None, :] & apply[:, None, None]
    return tf.where(mask[..., None], fill, images)
