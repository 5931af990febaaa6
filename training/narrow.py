"""Start a narrower net from a trained wider one: keep each layer's strongest channels.

Per-face latency grows with the square of the widths, so a net 25 % narrower
runs in about half the time. Training it from scratch on a 2-core CPU costs
dozens of epochs; copying the trained net's most useful channels and
fine-tuning costs a few. The criterion is network slimming's (Liu et al.,
2017): a channel whose batch-norm scale ``|gamma|`` is small contributes
little after the norm, so each convolution keeps the channels with the largest
``|gamma|``, in their original order, and the next layer keeps the matching
input channels.

Works on plain weight lists, as :func:`training.model.build_model` lays them
out, so it needs neither Keras nor TensorFlow and tests can call it directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Weights per conv block (conv kernel; BN gamma, beta, moving mean, moving variance).
_BLOCK = 5


class NarrowingError(ValueError):
    """The donor's layers cannot be narrowed into the target's."""


def narrow_weights(
    donor: Sequence[np.ndarray], target_shapes: Sequence[tuple[int, ...]]
) -> list[np.ndarray]:
    """Return ``donor``'s weights cut down to ``target_shapes`` by batch-norm scale.

    Both lists are ``build_model``'s layout: per conv block a bias-free kernel
    ``(3, 3, in, out)`` and its BN's gamma, beta, mean and variance, then the
    classifier's kernel ``(channels, classes)`` and bias. The target must have
    the same blocks, each no wider than the donor's.
    """
    donor = [np.asarray(w) for w in donor]
    target_shapes = [tuple(s) for s in target_shapes]
    blocks = (len(donor) - 2) // _BLOCK
    if len(donor) != len(target_shapes) or len(donor) != blocks * _BLOCK + 2 or blocks < 1:
        raise NarrowingError(
            f"cannot narrow {len(donor)} weight arrays into {len(target_shapes)}: "
            "the nets need the same number of convolutions"
        )
    narrowed: list[np.ndarray] = []
    keep_in = np.arange(donor[0].shape[2])
    for block in range(blocks):
        kernel, gamma, beta, mean, var = donor[block * _BLOCK : (block + 1) * _BLOCK]
        width = target_shapes[block * _BLOCK][3]
        keep_out = strongest_channels(gamma, width)
        narrowed.append(kernel[:, :, keep_in][..., keep_out])
        narrowed.extend(w[keep_out] for w in (gamma, beta, mean, var))
        keep_in = keep_out
    dense_kernel, dense_bias = donor[-2:]
    narrowed.extend([dense_kernel[keep_in], dense_bias])
    for got, want in zip(narrowed, target_shapes, strict=True):
        if got.shape != want:
            raise NarrowingError(
                f"cannot narrow a layer of shape {got.shape} into {want}: "
                "only channel counts may shrink"
            )
    return narrowed


def strongest_channels(gamma: np.ndarray, width: int) -> np.ndarray:
    """Indices of the ``width`` channels with the largest ``|gamma|``, in ascending order."""
    if not 0 < width <= len(gamma):
        raise NarrowingError(f"cannot keep {width} of {len(gamma)} channels")
    # A stable sort keeps the lower index among equal scales: the choice is deterministic.
    order = np.argsort(-np.abs(gamma), kind="stable")
    return np.sort(order[:width])
