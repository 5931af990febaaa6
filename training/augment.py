"""Batched training augmentation in TensorFlow ops, run inside ``tf.data``.

The random choices come from :func:`training.augment_config.draw` (numpy, the
one definition both backends share); this module only applies them: one
affine resampling per face (flip, rotation, scale, shift), then
brightness/contrast and random erasing, all on 0–255 grey levels, the range the
model takes at inference. ``training.augment_torch`` applies the same draw with torch.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from training.augment_config import AugmentConfig, Draw, draw


def augment_batch(images: tf.Tensor, config: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """Return an augmented copy of a float32 batch of N×H×W×1 faces in 0–255.

    ``seed`` is an int64 tensor of shape (2,) (run seed, step), so a run is
    reproducible; it seeds numpy's generator for :func:`draw`.
    """
    size = int(images.shape[1])

    def sample(n, seed_pair):
        return tuple(draw(int(n), size, config, np.random.default_rng(seed_pair.tolist())))

    arrays = tf.numpy_function(
        sample, [tf.shape(images)[0], seed], [tf.float32] * 3, stateful=False
    )
    for array, width in zip(arrays, (6, 2, 5), strict=True):
        array.set_shape([None, width])
    return apply(images, Draw(*arrays))


def apply(images: tf.Tensor, d: Draw) -> tf.Tensor:
    """Apply one :class:`Draw` (as tensors) to N×H×W×1 faces in 0–255."""
    zeros = tf.zeros_like(d.affine[:, :2])
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.concat([d.affine, zeros], axis=1),
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    contrast, brightness = d.light[:, 0, None, None, None], d.light[:, 1, None, None, None]
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean + brightness
    y0, x0, h, w = (d.erase[:, k, None] for k in range(4))
    coords = tf.range(tf.cast(tf.shape(images)[1], tf.float32))[None, :]
    rows = (coords >= y0) & (coords < y0 + h)
    cols = (coords >= x0) & (coords < x0 + w)
    mask = rows[:, :, None] & cols[:, None, :]
    images = tf.where(mask[..., None], d.erase[:, 4, None, None, None], images)
    return tf.clip_by_value(images, 0.0, 255.0)
