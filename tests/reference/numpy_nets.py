"""Numpy (float64) reference forward/backward of the :mod:`nets` architectures.

Layer names are the torch module names (``"conv1"``, ``"block.conv1"``); the keras
spelling ``"block/conv1"`` is accepted everywhere too. ``"input"`` is the input.
Activations are NCHW; ``"gap"`` is ``(N, C, 1, 1)`` like ``nn.AdaptiveAvgPool2d(1)``
(keras' GlobalAveragePooling2D gives ``(N, C)`` = our ``"flatten"``), ``"fc"`` are the
logits, ``"softmax"`` the probabilities. ``"block"`` (resnet) is the block output
(== ``"block.relu_out"``); ``"block.add"`` is the residual sum before ``relu_out``.
"""
from __future__ import annotations

from typing import Dict, Iterable, Sequence, Union

import numpy as np

from . import numpy_ops as ops
from .nets import SMALL_CNN, SMALL_RESNET, NetSpec

OUTPUTS = ("logits", "softmax")


def canonical_name(name: str) -> str:
    return name.replace("/", ".")


def one_hot(targets: Union[int, Sequence[int], np.ndarray], n_classes: int, batch: int | None = None) -> np.ndarray:
    """One-hot float64 matrix (N, n_classes); an int target is broadcast to ``batch`` rows."""
    t = np.asarray(targets)
    if t.ndim == 0:
        if batch is None:
            raise ValueError("batch required for a scalar target")
        t = np.full(batch, int(t))
    out = np.zeros((t.shape[0], n_classes))
    out[np.arange(t.shape[0]), t] = 1.0
    return out


# ---------------------------------------------------------------------------- forward
def _bn(spec, prefix, x):
    w = spec.weights
    return ops.batchnorm_inference(x, w[f"{prefix}.weight"], w[f"{prefix}.bias"],
                                   w[f"{prefix}.running_mean"], w[f"{prefix}.running_var"], spec.bn_eps)


def _bn_back(spec, prefix, g):
    w = spec.weights
    return ops.batchnorm_inference_backward(g, w[f"{prefix}.weight"], w[f"{prefix}.running_var"], spec.bn_eps)


def _run(spec: NetSpec, x: np.ndarray) -> Dict[str, np.ndarray]:
    """All activations (layer outputs) + private caches (keys starting with '_')."""
    w = spec.weights
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4 or x.shape[1:] != spec.input_shape_nchw:
        raise ValueError(f"expected NCHW input (N,{spec.input_shape_nchw}), got {x.shape}")
    a: Dict[str, np.ndarray] = {"input": x}
    if spec.kind == SMALL_CNN:
        a["conv1"] = ops.conv2d(x, w["conv1.weight"], w["conv1.bias"], pad=1)
        a["relu1"] = ops.relu(a["conv1"])
        a["pool"], a["_pool_idx"] = ops.maxpool2x2(a["relu1"])
        a["conv2"] = ops.conv2d(a["pool"], w["conv2.weight"], w["conv2.bias"], pad=1)
        a["relu2"] = ops.relu(a["conv2"])
        last = a["relu2"]
    elif spec.kind == SMALL_RESNET:
        a["stem"] = ops.conv2d(x, w["stem.weight"], None, pad=1)
        a["bn"] = _bn(spec, "bn", a["stem"])
        a["relu"] = ops.relu(a["bn"])
        a["block.conv1"] = ops.conv2d(a["relu"], w["block.conv1.weight"], None, pad=1)
        a["block.bn1"] = _bn(spec, "block.bn1", a["block.conv1"])
        a["block.relu1"] = ops.relu(a["block.bn1"])
        a["block.conv2"] = ops.conv2d(a["block.relu1"], w["block.conv2.weight"], None, pad=1)
        a["block.bn2"] = _bn(spec, "block.bn2", a["block.conv2"])
        a["block.add"] = a["block.bn2"] + a["relu"]
        a["block.relu_out"] = ops.relu(a["block.add"])
        a["block"] = a["block.relu_out"]
        last = a["block"]
    else:
        raise ValueError(f"unknown net kind {spec.kind!r}")
    a["gap"] = ops.gap(last)
    a["flatten"] = a["gap"].reshape(a["gap"].shape[0], -1)
    a["fc"] = ops.dense(a["flatten"], w["fc.weight"], w["fc.bias"])
    a["softmax"] = ops.softmax(a["fc"], axis=1)
    return a


def forward(spec: NetSpec, x_nchw: np.ndarray, capture: Iterable[str] = (), output: str = "logits"):
    """Logits (N, n_classes) — or probabilities if ``output="softmax"``.

    With a non-empty ``capture`` returns ``(out, {name: activation})`` (keys as given).
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}")
    a = _run(spec, x_nchw)
    out = a["fc"] if output == "logits" else a["softmax"]
    capture = tuple(capture)
    if not capture:
        return out
    acts = {}
    for name in capture:
        key = canonical_name(name)
        if key.startswith("_") or key not in a:
            raise KeyError(f"unknown layer {name!r}; known: {sorted(k for k in a if not k.startswith('_'))}")
        acts[name] = a[key].copy()
    return out, acts


# ---------------------------------------------------------------------------- backward
class _Done(Exception):
    def __init__(self, g):
        self.g = g


def input_gradient(spec: NetSpec, x_nchw: np.ndarray, grad_of_logits, relu_rule: str = "normal",
                   wrt: str = "input", output: str = "logits") -> np.ndarray:
    """Backpropagate ``grad_of_logits`` (N, n_classes) to ``wrt`` ("input" or a layer name;
    the gradient is w.r.t. that layer's OUTPUT, shaped like its activation).

    ``grad_of_logits`` may also be integer class targets (shape (N,) or scalar) -> one-hot.
    With ``output="softmax"`` it is the gradient w.r.t. the probabilities.
    ``relu_rule`` applies to every ReLU between the output and ``wrt``:
    "normal" (autograd), "guided" (Captum GuidedBackprop), "deconv" (Captum Deconvolution).
    Max pool routes to the first argmax, BN is the inference-mode affine map.
    """
    if relu_rule not in ops.RELU_RULES:
        raise ValueError(f"relu_rule must be one of {ops.RELU_RULES}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}")
    a = _run(spec, x_nchw)
    n = a["input"].shape[0]
    g = np.asarray(grad_of_logits)
    if np.issubdtype(g.dtype, np.integer) and g.ndim <= 1:
        g = one_hot(g, spec.n_classes, batch=n)
    g = np.asarray(g, dtype=np.float64)
    if g.shape != (n, spec.n_classes):
        raise ValueError(f"grad_of_logits must be {(n, spec.n_classes)}, got {g.shape}")
    target = canonical_name(wrt)
    if target not in a or target.startswith("_"):
        raise KeyError(f"unknown layer {wrt!r}")
    w = spec.weights

    def at(name, grad):
        if name == target:
            raise _Done(grad)
        return grad

    rr = relu_rule
    try:
        if output == "softmax":
            g = at("softmax", g)
            g = ops.softmax_backward(a["softmax"], g, axis=1)
        g = at("fc", g)
        g = at("flatten", ops.dense_backward_input(g, w["fc.weight"]))
        g = at("gap", g.reshape(a["gap"].shape))
        if spec.kind == SMALL_CNN:
            g = at("relu2", ops.gap_backward(a["relu2"].shape, g))
            g = at("conv2", ops.relu_backward(a["conv2"], g, rr))
            g = at("pool", ops.conv2d_backward_input(g, w["conv2.weight"], pad=1))
            g = at("relu1", ops.maxpool2x2_backward(a["_pool_idx"], g))
            g = at("conv1", ops.relu_backward(a["conv1"], g, rr))
            g = at("input", ops.conv2d_backward_input(g, w["conv1.weight"], pad=1))
        else:
            g = ops.gap_backward(a["block"].shape, g)
            g = at("block", g)
            g = at("block.relu_out", g)
            g_add = at("block.add", ops.relu_backward(a["block.add"], g, rr))
            g = at("block.bn2", g_add)
            g = at("block.conv2", _bn_back(spec, "block.bn2", g))
            g = at("block.relu1", ops.conv2d_backward_input(g, w["block.conv2.weight"], pad=1))
            g = at("block.bn1", ops.relu_backward(a["block.bn1"], g, rr))
            g = at("block.conv1", _bn_back(spec, "block.bn1", g))
            g_main = ops.conv2d_backward_input(g, w["block.conv1.weight"], pad=1)
            g = at("relu", g_main + g_add)  # block input = relu output; skip adds g_add
            g = at("bn", ops.relu_backward(a["bn"], g, rr))
            g = at("stem", _bn_back(spec, "bn", g))
            g = at("input", ops.conv2d_backward_input(g, w["stem.weight"], pad=1))
    except _Done as d:
        return np.array(d.g, dtype=np.float64, copy=True)
    raise AssertionError("unreachable")  # pragma: no cover


def layer_gradient(spec: NetSpec, x_nchw: np.ndarray, grad_of_logits, layer: str,
                   relu_rule: str = "normal", output: str = "logits") -> np.ndarray:
    """Alias: gradient w.r.t. ``layer``'s output."""
    return input_gradient(spec, x_nchw, grad_of_logits, relu_rule=relu_rule, wrt=layer, output=output)
