"""The augmentation geometry both trainers share (``training.augment_config``), in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment_config import affine_coefficients

CENTRE = 23.5  # a 48-pixel side


def source_of(x, y, **kwargs):
    """The input pixel that output pixel (x, y) samples."""
    a0, a1, a2, b0, b1, b2 = affine_coefficients(**kwargs, centre=CENTRE)
    return a0 * x + a1 * y + a2, b0 * x + b1 * y + b2


def plain(**overrides):
    return {"cos": 1.0, "sin": 0.0, "mirror": 1.0, "dx": 0.0, "dy": 0.0} | overrides


def test_no_transform_samples_the_same_pixel():
    assert source_of(5.0, 40.0, **plain()) == pytest.approx((5.0, 40.0))


def test_mirror_reflects_columns_about_the_centre():
    assert source_of(5.0, 40.0, **plain(mirror=-1.0)) == pytest.approx((42.0, 40.0))


def test_a_shift_moves_content_by_d():
    # Output pixel p shows input p - d: content moves right and down by (dx, dy).
    assert source_of(10.0, 10.0, **plain(dx=3.0, dy=-2.0)) == pytest.approx((7.0, 12.0))


def test_rotation_keeps_the_centre_and_distances_at_scale_one():
    theta = np.radians(10.0)
    rotation = plain(cos=np.cos(theta), sin=np.sin(theta))
    assert source_of(CENTRE, CENTRE, **rotation) == pytest.approx((CENTRE, CENTRE))
    x, y = source_of(CENTRE + 10.0, CENTRE, **rotation)
    assert np.hypot(x - CENTRE, y - CENTRE) == pytest.approx(10.0)


def test_zoom_in_samples_closer_to_the_centre():
    x, _ = source_of(CENTRE + 10.0, CENTRE, **plain(cos=1 / 1.25))  # scale 1.25
    assert x == pytest.approx(CENTRE + 8.0)


def test_a_draw_depends_only_on_the_seed():
    from training.augment_config import AugmentConfig, draw

    config = AugmentConfig(erase_prob=0.5)
    first, again = (draw(32, 48, config, np.random.default_rng(7)) for _ in range(2))
    other = draw(32, 48, config, np.random.default_rng(8))
    for a, b, c in zip(first, again, other, strict=True):
        assert np.array_equal(a, b) and not np.array_equal(a, c)
    erased = first.erase[:, 2] > 0
    assert 0 < erased.sum() < 32  # about half the faces, and only those, get a rectangle


def test_both_backends_apply_the_same_draw_alike():
    # One definition (the numpy draw), two resamplers: same seed, same faces.
    tf = pytest.importorskip("tensorflow")
    torch = pytest.importorskip("torch", reason="torch is not installed (the GPU extra)")
    from training import augment, augment_torch
    from training.augment_config import AugmentConfig, Draw, draw

    faces = np.random.default_rng(0).integers(0, 256, (8, 48, 48)).astype(np.float32)
    d = draw(8, 48, AugmentConfig(erase_prob=0.5), np.random.default_rng(3))
    by_tf = augment.apply(tf.constant(faces[..., None]), Draw(*map(tf.constant, d))).numpy()
    by_torch = augment_torch.apply(torch.as_tensor(faces[:, None]), Draw(*map(torch.as_tensor, d)))
    assert np.allclose(by_tf[..., 0], by_torch[:, 0].numpy(), atol=0.05)


def test_the_tensorflow_batch_is_its_seeds_draw_applied():
    tf = pytest.importorskip("tensorflow")
    from training import augment
    from training.augment_config import AugmentConfig, Draw, draw

    config = AugmentConfig()
    faces = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)), tf.float32)
    seed = tf.constant([5, 2], tf.int64)
    out = augment.augment_batch(faces, config, seed).numpy()
    d = draw(4, 48, config, np.random.default_rng([5, 2]))
    expected = augment.apply(faces, Draw(*map(tf.constant, d))).numpy()
    assert np.array_equal(out, expected)
    assert np.array_equal(out, augment.augment_batch(faces, config, seed).numpy())
