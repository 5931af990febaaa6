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
