"""Build the SAME :class:`nets.NetSpec` network in PyTorch and in Keras 3.

Torch module names (``named_modules``)
    small_cnn:    conv1, relu1, pool, conv2, relu2, gap, flatten, fc [, softmax]
    small_resnet: stem, bn, relu, block, block.conv1, block.bn1, block.relu1,
                  block.conv2, block.bn2, block.relu_out, gap, flatten, fc [, softmax]
Keras layer names (channels-last input ``(size, size, C)``, named "input")
    small_cnn:    conv1, relu1, pool, conv2, relu2, gap, fc
                  (fused_relu=True: conv1/conv2 carry activation="relu", no relu1/relu2)
    small_resnet: stem, bn, relu, block (nested keras Model with conv1, bn1, relu1,
                  conv2, bn2, add, relu_out; address as "block/conv1"), gap, fc
    softmax=True: fc has activation="softmax" (torch: extra nn.Softmax(dim=1) "softmax").
Keras' ``gap`` is GlobalAveragePooling2D -> (N, C) (torch gap is (N, C, 1, 1)).
"""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np

from .nets import SMALL_CNN, SMALL_RESNET, NetSpec

# ============================================================================ torch
try:
    import torch
    from torch import nn
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None


def _torch_modules():
    class SmallCNN(nn.Module):
        def __init__(self, spec: NetSpec, softmax: bool = False):
            super().__init__()
            w = spec.weights
            c1, c2 = w["conv1.weight"].shape[0], w["conv2.weight"].shape[0]
            self.conv1 = nn.Conv2d(spec.in_channels, c1, 3, padding=1, bias=True)
            self.relu1 = nn.ReLU()
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=True)
            self.relu2 = nn.ReLU()
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(c2, spec.n_classes)
            if softmax:
                self.softmax = nn.Softmax(dim=1)

        def forward(self, x):
            x = self.pool(self.relu1(self.conv1(x)))
            x = self.relu2(self.conv2(x))
            x = self.fc(self.flatten(self.gap(x)))
            if hasattr(self, "softmax"):
                x = self.softmax(x)
            return x

    class SmallCNNFunctionalReLU(nn.Module):
        """Same net, ReLUs are F.relu(x) and F.relu(x, inplace=True): no ReLU modules."""

        def __init__(self, spec: NetSpec):
            super().__init__()
            w = spec.weights
            c1, c2 = w["conv1.weight"].shape[0], w["conv2.weight"].shape[0]
            self.conv1 = nn.Conv2d(spec.in_channels, c1, 3, padding=1, bias=True)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=True)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(c2, spec.n_classes)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = F.relu(self.conv2(x), inplace=True)
            return self.fc(self.flatten(self.gap(x)))

    class ResBlock(nn.Module):
        def __init__(self, c: int, eps: float):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c, eps=eps)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c, eps=eps)
            self.relu_out = nn.ReLU()

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.relu_out(y + x)

    class SmallResNet(nn.Module):
        def __init__(self, spec: NetSpec, softmax: bool = False):
            super().__init__()
            c = spec.weights["stem.weight"].shape[0]
            self.stem = nn.Conv2d(spec.in_channels, c, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(c, eps=spec.bn_eps)
            self.relu = nn.ReLU()
            self.block = ResBlock(c, spec.bn_eps)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(c, spec.n_classes)
            if softmax:
                self.softmax = nn.Softmax(dim=1)

        def forward(self, x):
            x = self.block(self.relu(self.bn(self.stem(x))))
            x = self.fc(self.flatten(self.gap(x)))
            if hasattr(self, "softmax"):
                x = self.softmax(x)
            return x

    return SmallCNN, SmallCNNFunctionalReLU, SmallResNet


def _load_torch(model, spec: NetSpec, dtype):
    model = model.to(dtype)
    sd = model.state_dict()
    new = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            new[k] = v
            continue
        if k not in spec.weights:
            raise KeyError(f"spec has no weight {k!r}")
        arr = np.asarray(spec.weights[k])
        if tuple(arr.shape) != tuple(v.shape):
            raise ValueError(f"{k}: spec shape {arr.shape} != module shape {tuple(v.shape)}")
        new[k] = torch.as_tensor(arr.copy(), dtype=dtype)
    extra = set(spec.weights) - set(new)
    if extra:
        raise KeyError(f"unused spec weights: {sorted(extra)}")
    model.load_state_dict(new, strict=True)
    return model.eval()


def build_torch(spec: NetSpec, dtype=None, softmax: bool = False):
    """``nn.Module`` in eval mode with the spec's weights (default dtype float64)."""
    dtype = torch.float64 if dtype is None else dtype
    SmallCNN, _, SmallResNet = _torch_modules()
    if spec.kind == SMALL_CNN:
        model = SmallCNN(spec, softmax=softmax)
    elif spec.kind == SMALL_RESNET:
        model = SmallResNet(spec, softmax=softmax)
    else:
        raise ValueError(f"unknown net kind {spec.kind!r}")
    return _load_torch(model, spec, dtype)


def build_torch_functional_relu(spec: NetSpec, dtype=None):
    """Small CNN whose ReLUs are ``F.relu(x)`` (after conv1) and ``F.relu(x, inplace=True)``
    (after conv2); modules: conv1, pool, conv2, gap, flatten, fc."""
    if spec.kind != SMALL_CNN:
        raise ValueError("functional-relu variant exists only for small_cnn")
    dtype = torch.float64 if dtype is None else dtype
    _, Functional, _ = _torch_modules()
    return _load_torch(Functional(spec), spec, dtype)


# ============================================================================ keras
def conv_kernel_to_keras(w: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) -> (kh, kw, in, out)."""
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def dense_kernel_to_keras(w: np.ndarray) -> np.ndarray:
    """(out, in) -> (in, out)."""
    return np.ascontiguousarray(w.T)


def build_keras(spec: NetSpec, dtype: str = "float64", fused_relu: bool = False, softmax: bool = False):
    """Keras 3 Functional model, input NHWC ``(size, size, C)``, same weights."""
    import keras
    from keras import layers

    w = {k: np.asarray(v, dtype=dtype) for k, v in spec.weights.items()}
    fc_act = "softmax" if softmax else None

    def conv(name, key, use_bias, activation=None):
        lay = layers.Conv2D(w[f"{key}.weight"].shape[0], 3, padding="same", use_bias=use_bias,
                            activation=activation, name=name, dtype=dtype)
        return lay

    def set_conv(lay, key, use_bias):
        vals = [conv_kernel_to_keras(w[f"{key}.weight"])]
        if use_bias:
            vals.append(w[f"{key}.bias"])
        lay.set_weights(vals)

    def bn(name):
        return layers.BatchNormalization(axis=-1, epsilon=spec.bn_eps, momentum=0.9, name=name, dtype=dtype)

    def set_bn(lay, key):
        lay.set_weights([w[f"{key}.weight"], w[f"{key}.bias"], w[f"{key}.running_mean"], w[f"{key}.running_var"]])

    inp = keras.Input(shape=spec.input_shape_nhwc, dtype=dtype, name="input")
    if spec.kind == SMALL_CNN:
        act = "relu" if fused_relu else None
        conv1 = conv("conv1", "conv1", True, act)
        conv2 = conv("conv2", "conv2", True, act)
        fc = layers.Dense(spec.n_classes, activation=fc_act, name="fc", dtype=dtype)
        x = conv1(inp)
        if not fused_relu:
            x = layers.ReLU(name="relu1", dtype=dtype)(x)
        x = layers.MaxPooling2D(2, 2, name="pool", dtype=dtype)(x)
        x = conv2(x)
        if not fused_relu:
            x = layers.ReLU(name="relu2", dtype=dtype)(x)
        x = layers.GlobalAveragePooling2D(name="gap", dtype=dtype)(x)
        out = fc(x)
        model = keras.Model(inp, out, name="small_cnn")
        set_conv(conv1, "conv1", True)
        set_conv(conv2, "conv2", True)
        fc.set_weights([dense_kernel_to_keras(w["fc.weight"]), w["fc.bias"]])
        return model
    if spec.kind == SMALL_RESNET:
        if fused_relu:
            raise ValueError("fused_relu is only meaningful for small_cnn (resnet has BN between conv and ReLU)")
        c = w["stem.weight"].shape[0]
        stem, bn0 = conv("stem", "stem", False), bn("bn")
        # nested block model
        b_in = keras.Input(shape=(spec.size, spec.size, c), dtype=dtype, name="block_input")
        b_conv1, b_bn1 = conv("conv1", "block.conv1", False), bn("bn1")
        b_conv2, b_bn2 = conv("conv2", "block.conv2", False), bn("bn2")
        y = b_bn1(b_conv1(b_in))
        y = layers.ReLU(name="relu1", dtype=dtype)(y)
        y = b_bn2(b_conv2(y))
        y = layers.Add(name="add", dtype=dtype)([y, b_in])
        y = layers.ReLU(name="relu_out", dtype=dtype)(y)
        block = keras.Model(b_in, y, name="block")
        fc = layers.Dense(spec.n_classes, activation=fc_act, name="fc", dtype=dtype)
        x = layers.ReLU(name="relu", dtype=dtype)(bn0(stem(inp)))
        x = block(x)
        x = layers.GlobalAveragePooling2D(name="gap", dtype=dtype)(x)
        out = fc(x)
        model = keras.Model(inp, out, name="small_resnet")
        set_conv(stem, "stem", False)
        set_bn(bn0, "bn")
        set_conv(b_conv1, "block.conv1", False)
        set_bn(b_bn1, "block.bn1")
        set_conv(b_conv2, "block.conv2", False)
        set_bn(b_bn2, "block.bn2")
        fc.set_weights([dense_kernel_to_keras(w["fc.weight"]), w["fc.bias"]])
        return model
    raise ValueError(f"unknown net kind {spec.kind!r}")


# ============================================================================ capture helpers
def torch_capture(model, x, names: Iterable[str]) -> Dict[str, "torch.Tensor"]:
    """Run ``model(x)`` and capture module outputs by dotted name via forward hooks."""
    mods = dict(model.named_modules())
    out, hooks = {}, []
    for name in names:
        def hook(_m, _i, o, name=name):
            out[name] = o.detach().clone()
        hooks.append(mods[name.replace("/", ".")].register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def keras_capture(model, x_nhwc, names: Iterable[str]) -> Dict[str, np.ndarray]:
    """Outputs (numpy, NHWC) of keras layers by name; nested as ``"block/conv1"``.

    Nested layers are evaluated by running the outer model up to the nested model's
    input, then a sub-model of the nested model.
    """
    import keras

    def outer_tensor(layer, which):
        # symbolic tensor of ``layer`` in the graph that CALLS it (for a nested
        # Functional, ``layer.output`` would be its own internal output instead)
        if not isinstance(layer, keras.Model):
            return layer.input if which == "in" else layer.output
        node = layer._inbound_nodes[0]
        ts = node.input_tensors if which == "in" else node.output_tensors
        return ts[0]

    res = {}
    for name in names:
        parts = name.replace(".", "/").split("/")
        if len(parts) == 1:
            sub = keras.Model(model.input, outer_tensor(model.get_layer(parts[0]), "out"))
            res[name] = np.asarray(sub(x_nhwc, training=False))
            continue
        if len(parts) != 2:
            raise ValueError(f"only one nesting level supported: {name!r}")
        outer = model.get_layer(parts[0])
        upto = keras.Model(model.input, outer_tensor(outer, "in"))
        inner = keras.Model(outer.input, outer.get_layer(parts[1]).output)
        res[name] = np.asarray(inner(upto(x_nhwc, training=False), training=False))
    return res
