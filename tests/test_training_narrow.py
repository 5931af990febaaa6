"""Narrowing a trained net (``training.narrow``) and the distillation targets of ``train``."""

from __future__ import annotations

import numpy as np
import pytest

from training.narrow import NarrowingError, narrow_weights, strongest_channels


def test_strongest_channels_rank_by_magnitude_and_keep_order():
    gamma = np.array([0.1, -0.9, 0.5, 0.0, 0.9, -0.2])
    # |-0.9| ties with 0.9: both kept; the indices come back ascending.
    assert strongest_channels(gamma, 3).tolist() == [1, 2, 4]
    assert strongest_channels(gamma, 6).tolist() == list(range(6))
    with pytest.raises(NarrowingError, match="cannot keep 7 of 6"):
        strongest_channels(gamma, 7)


def test_same_shapes_come_back_unchanged():
    rng = np.random.default_rng(0)
    shapes = [(3, 3, 1, 4), (4,), (4,), (4,), (4,), (3, 3, 4, 6), *[(6,)] * 4, (6, 7), (7,)]
    donor = [rng.normal(size=s) for s in shapes]
    for got, want in zip(narrow_weights(donor, shapes), donor, strict=True):
        np.testing.assert_array_equal(got, want)


def test_layout_mismatches_are_refused():
    rng = np.random.default_rng(0)
    shapes = [(3, 3, 1, 4), (4,), (4,), (4,), (4,), (4, 7), (7,)]
    donor = [rng.normal(size=s) for s in shapes]
    with pytest.raises(NarrowingError, match="same number of convolutions"):
        narrow_weights(donor, shapes[:5] + shapes[:5] + shapes[-2:])
    wider = [(3, 3, 1, 8), *[(8,)] * 4, (8, 7), (7,)]
    with pytest.raises(NarrowingError, match="cannot keep 8 of 4"):
        narrow_weights(donor, wider)
    with pytest.raises(NarrowingError, match="only channel counts may shrink"):
        narrow_weights(donor, [(5, 5, 1, 4), *shapes[1:]])


def test_dropping_silent_channels_keeps_the_function_exactly():
    """Channels with zero BN scale and shift output 0 after ReLU: removing them changes nothing."""
    pytest.importorskip("tensorflow")
    from training.model import build_model

    wide = build_model((8, 16), (1, 2))
    narrow = build_model((5, 10), (1, 2))
    rng = np.random.default_rng(1)
    weights = [rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in wide.get_weights()]
    for block, width in enumerate((8, 16, 16)):
        gamma, beta, var = (block * 5 + 1, block * 5 + 2, block * 5 + 4)
        weights[var] = np.abs(weights[var]) + 0.5
        silent = rng.choice(width, width - (5 if block == 0 else 10), replace=False)
        weights[gamma][silent] = 0.0
        weights[beta][silent] = 0.0
    wide.set_weights(weights)
    narrow.set_weights(narrow_weights(weights, [tuple(w.shape) for w in narrow.get_weights()]))
    faces = rng.integers(0, 256, (16, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(
        narrow.predict(faces, verbose=0), wide.predict(faces, verbose=0), rtol=1e-4, atol=1e-6
    )
