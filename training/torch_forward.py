"""Run a :func:`training.model.build_model` network as plain torch operations.

On the torch backend a Keras model is made of torch tensors, but each layer
call also passes through Keras's own machinery (argument checks, name scopes,
dtype policies), which costs far more Python time than the layer's GPU work at
48×48: ``bench/gpu_step.py`` times a training step both ways. A GPU that waits
on Python trains fewer epochs in a time-limited lease.

:func:`torch_forward` walks the model's layers once and returns a function of
``(faces, training)`` that applies the same operations with
``torch.nn.functional`` on **the model's own variables**: gradients reach the
Keras weights, batch-normalisation statistics update in place, and
``model.save`` writes what was trained. There is no second model definition;
layers or options this does not know raise :class:`UnsupportedLayer` rather
than run differently.

One difference is documented rather than hidden: torch updates a batch norm's
moving variance with the unbiased batch variance, Keras with the biased one, a
factor of ``n / (n - 1)`` where ``n`` is at least batch × 36 values (0.02 % at
batch 128).
"""

from __future__ import annotations

from collections.abc import Callable

Forward = Callable[..., object]  # (faces N×48×48×1 tensor, training: bool) -> N×7 probabilities


class UnsupportedLayer(ValueError):
    """The model has a layer, or a layer option, that :func:`torch_forward` does not lower."""


def torch_forward(model) -> Forward:
    """Return ``forward(faces, training)`` computing ``model(faces, training=training)``."""
    ops = [_lower(layer) for layer in model.layers if type(layer).__name__ != "InputLayer"]

    def forward(faces, training: bool = False):
        x = faces.permute(0, 3, 1, 2)  # NHWC → NCHW view; convolutions keep channels-last memory
        for op in ops:
            x = op(x, training)
        return x

    return forward


def _lower(layer) -> Callable:
    kind = type(layer).__name__
    lowering = _LOWERINGS.get(kind)
    if lowering is None:
        raise UnsupportedLayer(f"{layer.name}: no torch lowering for {kind}")
    return lowering(layer)


def _require(layer, condition: bool, what: str) -> None:
    if not condition:
        raise UnsupportedLayer(f"{layer.name}: {what}")


def _rescaling(layer) -> Callable:
    scale, offset = float(layer.scale), float(layer.offset)
    return lambda x, training: x * scale + offset


def _conv2d(layer) -> Callable:
    import torch.nn.functional as F

    _require(layer, layer.data_format == "channels_last", "only channels_last")
    _require(layer, tuple(layer.strides) == (1, 1), "only stride 1")
    _require(layer, tuple(layer.dilation_rate) == (1, 1), "only dilation 1")
    _require(layer, layer.groups == 1, "only groups=1")
    _require(layer, layer.activation.__name__ == "linear", "only a linear activation")
    padding = {"same": "same", "valid": 0}[layer.padding]
    kernel = layer.kernel.value  # H×W×in×out; torch wants out×in×H×W
    bias = layer.bias.value if layer.use_bias else None
    return lambda x, training: F.conv2d(x, kernel.permute(3, 2, 0, 1), bias, padding=padding)


def _batch_norm(layer) -> Callable:
    import torch.nn.functional as F

    _require(layer, layer.axis in (-1, 3, [-1], [3]), "only the channel axis")
    _require(layer, layer.center and layer.scale, "only with centre and scale")
    mean, variance = layer.moving_mean.value, layer.moving_variance.value
    gamma, beta = layer.gamma.value, layer.beta.value
    momentum, epsilon = 1.0 - float(layer.momentum), float(layer.epsilon)  # torch: new-value share

    def batch_norm(x, training: bool):
        return F.batch_norm(
            x, mean, variance, gamma, beta, training=training, momentum=momentum, eps=epsilon
        )

    return batch_norm


def _relu(layer) -> Callable:
    import torch.nn.functional as F

    _require(
        layer,
        layer.max_value is None and layer.negative_slope == 0 and layer.threshold == 0,
        "only a plain ReLU",
    )
    return lambda x, training: F.relu(x)


def _max_pooling(layer) -> Callable:
    import torch.nn.functional as F

    _require(layer, layer.padding == "valid", "only valid padding")
    size, strides = tuple(layer.pool_size), tuple(layer.strides)
    return lambda x, training: F.max_pool2d(x, size, strides)


def _global_average(layer) -> Callable:
    _require(layer, not layer.keepdims, "only without keepdims")
    return lambda x, training: x.mean(dim=(2, 3))


def _dropout(layer) -> Callable:
    import torch.nn.functional as F

    _require(layer, layer.noise_shape is None, "only without a noise shape")
    rate = float(layer.rate)
    return lambda x, training: F.dropout(x, rate, training)


def _dense(layer) -> Callable:
    activations = {"softmax": lambda z: z.softmax(dim=-1), "linear": lambda z: z}
    name = layer.activation.__name__
    _require(layer, name in activations, f"no lowering for activation {name}")
    activation = activations[name]
    kernel = layer.kernel.value
    bias = layer.bias.value if layer.use_bias else None

    def dense(x, training: bool):
        z = x @ kernel
        return activation(z if bias is None else z + bias)

    return dense


_LOWERINGS: dict[str, Callable] = {
    "Rescaling": _rescaling,
    "Conv2D": _conv2d,
    "BatchNormalization": _batch_norm,
    "ReLU": _relu,
    "MaxPooling2D": _max_pooling,
    "GlobalAveragePooling2D": _global_average,
    "Dropout": _dropout,
    "Dense": _dense,
}
