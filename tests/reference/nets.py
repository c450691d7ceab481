"""Framework-neutral tiny test networks (weights as plain numpy arrays).

Weights are stored under the PyTorch ``state_dict`` keys of the torch build
(:mod:`tests.reference.builders`), in PyTorch's canonical layout:

* conv kernels ``(out, in, kh, kw)``, conv bias ``(out,)``
* dense weight ``(out, in)``, dense bias ``(out,)``
* BatchNorm: ``weight`` (gamma), ``bias`` (beta), ``running_mean``, ``running_var``

Two architectures (``NetSpec.kind``):

``"small_cnn"``
    conv1 (3x3, pad 1, bias) -> relu1 -> pool (max 2x2/2) -> conv2 (3x3, pad 1, bias)
    -> relu2 -> gap (global avg pool) -> flatten -> fc (logits)

``"small_resnet"``
    stem (3x3, pad 1, no bias) -> bn -> relu ->
    block[conv1 -> bn1 -> relu1 -> conv2 -> bn2 -> (+ skip) -> relu_out]
    -> gap -> flatten -> fc (logits)

BatchNorm is always in inference mode, epsilon ``NetSpec.bn_eps`` (1e-5).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

BN_EPS = 1e-5

SMALL_CNN = "small_cnn"
SMALL_RESNET = "small_resnet"

# Layer names (torch-style, dotted for nested) in forward order. The numpy
# reference, the torch build and the keras build all use these names
# (keras writes nested names as "block/conv1").
LAYER_NAMES: Dict[str, Tuple[str, ...]] = {
    SMALL_CNN: ("conv1", "relu1", "pool", "conv2", "relu2", "gap", "flatten", "fc"),
    SMALL_RESNET: (
        "stem", "bn", "relu",
        "block.conv1", "block.bn1", "block.relu1", "block.conv2", "block.bn2",
        "block.add", "block.relu_out", "block",
        "gap", "flatten", "fc",
    ),
}

# ReLU layers per architecture (module-style, i.e. nn.ReLU / keras.layers.ReLU).
RELU_LAYERS: Dict[str, Tuple[str, ...]] = {
    SMALL_CNN: ("relu1", "relu2"),
    SMALL_RESNET: ("relu", "block.relu1", "block.relu_out"),
}


@dataclass
class NetSpec:
    """Architecture kind + weights (dict of numpy arrays, torch layout/keys)."""

    kind: str
    weights: Dict[str, np.ndarray]
    in_channels: int
    size: int
    n_classes: int
    bn_eps: float = BN_EPS
    meta: Dict[str, object] = field(default_factory=dict)

    @property
    def layer_names(self) -> Tuple[str, ...]:
        """Capturable layer names (torch-style) in forward order, without ``softmax``."""
        return LAYER_NAMES[self.kind]

    @property
    def relu_layers(self) -> Tuple[str, ...]:
        return RELU_LAYERS[self.kind]

    @property
    def input_shape_nchw(self) -> Tuple[int, int, int]:
        return (self.in_channels, self.size, self.size)

    @property
    def input_shape_nhwc(self) -> Tuple[int, int, int]:
        return (self.size, self.size, self.in_channels)

    def astype(self, dtype) -> "NetSpec":
        return NetSpec(self.kind, {k: np.asarray(v, dtype=dtype) for k, v in self.weights.items()},
                       self.in_channels, self.size, self.n_classes, self.bn_eps, dict(self.meta))

    def copy(self) -> "NetSpec":
        return NetSpec(self.kind, {k: v.copy() for k, v in self.weights.items()},
                       self.in_channels, self.size, self.n_classes, self.bn_eps, dict(self.meta))

    def random_input(self, seed: int, batch: int = 3, dtype=np.float64) -> np.ndarray:
        """Standard-normal NCHW input batch."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch,) + self.input_shape_nchw).astype(dtype)


def _he_conv(rng, out_c, in_c, k=3):
    std = np.sqrt(2.0 / (in_c * k * k))
    return rng.standard_normal((out_c, in_c, k, k)) * std


def _dense(rng, out_f, in_f):
    # scaled so the logits have O(1) spread
    return rng.standard_normal((out_f, in_f)) * np.sqrt(2.0 / in_f)


def _bn(rng, prefix, c):
    return {
        f"{prefix}.weight": rng.uniform(0.6, 1.5, c),
        f"{prefix}.bias": rng.normal(0.0, 0.2, c),
        f"{prefix}.running_mean": rng.normal(0.0, 0.3, c),
        f"{prefix}.running_var": rng.uniform(0.5, 2.0, c),
    }


def _calibrate_fc(spec: "NetSpec", rng, n_calib: int = 64) -> "NetSpec":
    """Data-dependent fc init: standardize the pooled features of a fixed batch of
    standard-normal inputs so logits are ~zero-mean with ~unit spread ACROSS inputs
    (otherwise global average pooling makes all inputs give nearly the same logits)."""
    from .numpy_nets import forward  # local import: numpy_nets imports this module

    x = rng.standard_normal((n_calib,) + spec.input_shape_nchw)
    _, acts = forward(spec, x, capture=("flatten",))
    feats = acts["flatten"]
    mu, sd = feats.mean(0), feats.std(0) + 1e-3
    c = feats.shape[1]
    wfc = rng.standard_normal((spec.n_classes, c)) / np.sqrt(c) / sd[None, :]
    spec.weights["fc.weight"] = wfc
    spec.weights["fc.bias"] = -wfc @ mu + rng.normal(0.0, 0.1, spec.n_classes)
    return spec


def make_small_cnn(seed: int, in_channels: int = 3, size: int = 16, n_classes: int = 5,
                   channels: Tuple[int, int] = (8, 16)) -> NetSpec:
    """conv1 -> relu1 -> pool -> conv2 -> relu2 -> gap -> flatten -> fc.

    He-normal convs, small random biases; fc calibrated (see ``_calibrate_fc``)."""
    if size % 2:
        raise ValueError("size must be even (2x2 max pool)")
    rng = np.random.default_rng(seed)
    c1, c2 = channels
    w = {
        "conv1.weight": _he_conv(rng, c1, in_channels),
        "conv1.bias": rng.normal(0.0, 0.1, c1),
        "conv2.weight": _he_conv(rng, c2, c1),
        "conv2.bias": rng.normal(0.0, 0.1, c2),
        "fc.weight": _dense(rng, n_classes, c2),
        "fc.bias": rng.normal(0.0, 0.1, n_classes),
    }
    w = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in w.items()}
    return _calibrate_fc(NetSpec(SMALL_CNN, w, in_channels, size, n_classes), rng)


def make_small_resnet(seed: int, in_channels: int = 3, size: int = 16, n_classes: int = 5,
                      width: int = 8) -> NetSpec:
    """stem -> bn -> relu -> block(conv1,bn1,relu1,conv2,bn2,+skip,relu_out) -> gap -> fc.

    Bias-free He-normal convs; BN with random gamma in [0.6,1.5], beta ~ N(0,.2),
    running_mean ~ N(0,.3), running_var in [0.5,2]; fc calibrated."""
    rng = np.random.default_rng(seed)
    w = {"stem.weight": _he_conv(rng, width, in_channels)}
    w.update(_bn(rng, "bn", width))
    w["block.conv1.weight"] = _he_conv(rng, width, width)
    w.update(_bn(rng, "block.bn1", width))
    w["block.conv2.weight"] = _he_conv(rng, width, width)
    w.update(_bn(rng, "block.bn2", width))
    w["fc.weight"] = _dense(rng, n_classes, width)
    w["fc.bias"] = rng.normal(0.0, 0.1, n_classes)
    w = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in w.items()}
    return _calibrate_fc(NetSpec(SMALL_RESNET, w, in_channels, size, n_classes), rng)


def make_net(kind: str, seed: int, **kw) -> NetSpec:
    if kind == SMALL_CNN:
        return make_small_cnn(seed, **kw)
    if kind == SMALL_RESNET:
        return make_small_resnet(seed, **kw)
    raise ValueError(f"unknown net kind {kind!r}")
