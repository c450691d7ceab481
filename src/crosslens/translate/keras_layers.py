"""Small, serialisable Keras 3 layers used by :mod:`crosslens.translate.onnx_to_keras`.

They are plain ``keras.ops`` code (backend-agnostic), registered under the
``crosslens`` package so that a translated model saved as ``.keras`` reloads
with ``keras.models.load_model`` once this module is imported (no ``Lambda``
layers, hence no ``safe_mode`` problem).  Constants are stored as
non-trainable weights so they are saved with the model.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_PKG = "crosslens"


def _register(cls):
    return keras.saving.register_keras_serializable(package=_PKG)(cls)


_UNARY = {
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "exp": ops.exp,
    "log": ops.log,
    "sqrt": ops.sqrt,
    "abs": ops.abs,
    "neg": ops.negative,
    "erf": ops.erf,
    "reciprocal": lambda x: 1.0 / x,
    "softplus": ops.softplus,
    "softsign": ops.softsign,
    "elu": ops.elu,
    "selu": ops.selu,
    "floor": ops.floor,
    "ceil": ops.ceil,
    "sin": ops.sin,
    "cos": ops.cos,
    "identity": lambda x: x,
}

_BINARY = {
    "add": ops.add,
    "sub": ops.subtract,
    "mul": ops.multiply,
    "div": ops.divide,
    "pow": ops.power,
    "max": ops.maximum,
    "min": ops.minimum,
}


@_register
class Unary(keras.layers.Layer):
    """Elementwise function ``fn`` (a name from a fixed whitelist) with optional parameters."""

    def __init__(self, fn: str, alpha: float = 0.0, beta: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.fn = fn
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, x):
        if self.fn == "hard_sigmoid":
            return ops.clip(self.alpha * x + self.beta, 0.0, 1.0)
        if self.fn == "hard_swish":
            return x * ops.clip(x / 6.0 + 0.5, 0.0, 1.0)
        if self.fn == "leaky_relu":
            return ops.where(x >= 0, x, self.alpha * x)
        if self.fn == "gelu":
            return ops.gelu(x, approximate=False)
        if self.fn == "gelu_tanh":
            return ops.gelu(x, approximate=True)
        if self.fn == "silu":
            return x * ops.sigmoid(x)
        return _UNARY[self.fn](x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fn": self.fn, "alpha": self.alpha, "beta": self.beta}


@_register
class Clip(keras.layers.Layer):
    def __init__(self, min_value=None, max_value=None, **kwargs):
        super().__init__(**kwargs)
        self.min_value = None if min_value is None else float(min_value)
        self.max_value = None if max_value is None else float(max_value)

    def call(self, x):
        if self.min_value is not None:
            x = ops.maximum(x, self.min_value)
        if self.max_value is not None:
            x = ops.minimum(x, self.max_value)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "min_value": self.min_value, "max_value": self.max_value}


@_register
class ConstBinary(keras.layers.Layer):
    """``op(x, c)`` (or ``op(c, x)`` with ``const_first``) with a stored constant ``c``."""

    def __init__(self, op: str, const_shape, const_first: bool = False, value=None, **kwargs):
        super().__init__(**kwargs)
        self.op = op
        self.const_shape = tuple(int(d) for d in const_shape)
        self.const_first = bool(const_first)
        self.const = self.add_weight(
            name="const", shape=self.const_shape, initializer="zeros", trainable=False, dtype="float32"
        )
        if value is not None:
            self.const.assign(np.asarray(value, dtype="float32").reshape(self.const_shape))

    def call(self, x):
        c = ops.cast(self.const, x.dtype)
        fn = _BINARY[self.op]
        return fn(c, x) if self.const_first else fn(x, c)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        cs = self.const_shape
        if len(cs) > len(shape):
            shape = [1] * (len(cs) - len(shape)) + shape
        for i in range(1, len(cs) + 1):
            if shape[-i] == 1:
                shape[-i] = cs[-i]
        return tuple(shape)

    def get_config(self):
        return {
            **super().get_config(),
            "op": self.op,
            "const_shape": list(self.const_shape),
            "const_first": self.const_first,
        }


@_register
class Binary(keras.layers.Layer):
    """``op(a, b)`` for two tensors with numpy-style broadcasting."""

    def __init__(self, op: str, **kwargs):
        super().__init__(**kwargs)
        self.op = op

    def call(self, inputs):
        a, b = inputs
        return _BINARY[self.op](a, b)

    def get_config(self):
        return {**super().get_config(), "op": self.op}


@_register
class MatMul(keras.layers.Layer):
    def call(self, inputs):
        a, b = inputs
        return ops.matmul(a, b)


@_register
class Pad(keras.layers.Layer):
    """Pad with ``pads`` = ``[[before, after], ...]`` for every axis (batch included)."""

    def __init__(self, pads, mode: str = "constant", value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.pads = [[int(a), int(b)] for a, b in pads]
        self.mode = mode
        self.value = float(value)

    def call(self, x):
        if self.mode == "constant":
            return ops.pad(x, self.pads, mode="constant", constant_values=self.value)
        return ops.pad(x, self.pads, mode={"reflect": "reflect", "edge": "edge"}[self.mode])

    def compute_output_shape(self, input_shape):
        return tuple(None if d is None else d + a + b for d, (a, b) in zip(input_shape, self.pads))

    def get_config(self):
        return {**super().get_config(), "pads": self.pads, "mode": self.mode, "value": self.value}


@_register
class Reduce(keras.layers.Layer):
    def __init__(self, op: str, axes, keepdims: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.op = op
        self.axes = [int(a) for a in axes]
        self.keepdims = bool(keepdims)

    def call(self, x):
        fn = {"mean": ops.mean, "sum": ops.sum, "max": ops.max, "min": ops.min}[self.op]
        return fn(x, axis=tuple(self.axes), keepdims=self.keepdims)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return tuple(1 if i in self.axes else d for i, d in enumerate(input_shape))
        return tuple(d for i, d in enumerate(input_shape) if i not in self.axes)

    def get_config(self):
        return {**super().get_config(), "op": self.op, "axes": self.axes, "keepdims": self.keepdims}


@_register
class Slice(keras.layers.Layer):
    """Static strided slice; ``slices`` is ``[[start, stop, step], ...]`` per axis (None allowed)."""

    def __init__(self, slices, **kwargs):
        super().__init__(**kwargs)
        self.slices = [list(s) for s in slices]

    def call(self, x):
        return x[tuple(slice(*s) for s in self.slices)]

    def get_config(self):
        return {**super().get_config(), "slices": self.slices}


@_register
class Take(keras.layers.Layer):
    def __init__(self, indices, axis: int, **kwargs):
        super().__init__(**kwargs)
        self.indices = np.asarray(indices).tolist()
        self.axis = int(axis)

    def call(self, x):
        return ops.take(x, ops.convert_to_tensor(self.indices, dtype="int32"), axis=self.axis)

    def get_config(self):
        return {**super().get_config(), "indices": self.indices, "axis": self.axis}


@_register
class AvgPoolPadded(keras.layers.Layer):
    """ONNX AveragePool on NHWC with explicit pads; ``count_include_pad`` as in ONNX."""

    def __init__(self, pool_size, strides, pads, count_include_pad: bool, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = [int(p) for p in pool_size]
        self.strides = [int(s) for s in strides]
        self.pads = [[int(a), int(b)] for a, b in pads]  # spatial only
        self.count_include_pad = bool(count_include_pad)

    def call(self, x):
        full = [[0, 0]] + self.pads + [[0, 0]]
        xp = ops.pad(x, full)
        s = ops.average_pool(xp, self.pool_size, self.strides, padding="valid")
        if self.count_include_pad:
            return s
        ones = ops.pad(ops.ones_like(x[..., :1]), full)
        return s / ops.average_pool(ones, self.pool_size, self.strides, padding="valid")

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "pads": self.pads,
            "count_include_pad": self.count_include_pad,
        }


@_register
class Resize(keras.layers.Layer):
    """Nearest / bilinear resize of NHWC tensors to a static size."""

    def __init__(self, size, interpolation: str = "nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = [int(s) for s in size]
        self.interpolation = interpolation

    def call(self, x):
        if self.interpolation == "nearest_int":
            h, w = self.size
            fh, fw = h // x.shape[1], w // x.shape[2]
            x = ops.repeat(x, fh, axis=1)
            return ops.repeat(x, fw, axis=2)
        return ops.image.resize(x, self.size, interpolation=self.interpolation, data_format="channels_last")

    def get_config(self):
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}


CUSTOM_OBJECTS = {
    f"{_PKG}>{cls.__name__}": cls
    for cls in (Unary, Clip, ConstBinary, Binary, MatMul, Pad, Reduce, Slice, Take, AvgPoolPadded, Resize)
}
