"""Numpy (float64, NCHW) references of the crosslens gradient methods on the reference nets.

Built only on :mod:`numpy_nets` / :mod:`numpy_ops` (and scipy for the blur baseline and the
Gauss-Legendre nodes), never on crosslens, so the method tests compare two independent
implementations. Everything is channels-first; tests transpose Keras results before
comparing. Layer names are torch-style (``"block.conv1"``); ``"block/conv1"`` works too.

Targets are written as in crosslens: an int, one int per sample, ``"predicted"``, or an
explicit ``(N, n_classes)`` array = the gradient of the score w.r.t. the logits (a linear
score such as ``out[:, 1] - out[:, 0]``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import scipy.ndimage
import scipy.special

from . import numpy_ops as ops
from .nets import SMALL_CNN, NetSpec
from .numpy_nets import _run, canonical_name, forward, one_hot

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


# ----------------------------------------------------------------------------- targets
def logit_seed(spec: NetSpec, x: np.ndarray, target: Any) -> np.ndarray:
    """``(N, n_classes)`` gradient of the target score w.r.t. the logits."""
    n = x.shape[0]
    if isinstance(target, str):
        if target != "predicted":
            raise ValueError(target)
        target = predicted(spec, x)
    t = np.asarray(target)
    if t.ndim == 2:
        return t.astype(np.float64)
    return one_hot(t.astype(np.int64), spec.n_classes, batch=n)


def predicted(spec: NetSpec, x: np.ndarray) -> np.ndarray:
    """The top class of each sample."""
    return forward(spec, x).argmax(axis=1)


# ----------------------------------------------------------------------------- backward
class _Done(Exception):
    def __init__(self, g):
        self.g = g


def _lift(fn: Callable, g):
    return None if g is None else fn(g)


def _add(a, b):
    if a is None:
        return b
    return a if b is None else a + b


def backward(spec: NetSpec, x: np.ndarray, start: str, g_start: np.ndarray,
             wrt: str = "input", rule: str = "normal") -> np.ndarray:
    """Gradient of ``sum(g_start * activation[start])`` w.r.t. the output of ``wrt``.

    Unlike :func:`numpy_nets.input_gradient` (which starts at the logits), the backward
    pass starts at any layer (``"fc"`` = logits), so neuron / channel targets have a
    reference. ``rule`` applies to the ReLUs between ``start`` and ``wrt``.
    """
    a = _run(spec, x)
    start, wrt = canonical_name(start), canonical_name(wrt)
    w = spec.weights
    g_start = np.asarray(g_start, dtype=np.float64)

    def at(name, g):
        if name == start:
            if g_start.shape != a[name].shape:
                raise ValueError(f"seed for {name} must be {a[name].shape}, got {g_start.shape}")
            g = _add(g, g_start)
        if name == wrt:
            if g is None:
                raise ValueError(f"{wrt!r} comes after {start!r}: no gradient")
            raise _Done(g)
        return g

    def relu_back(name):
        return lambda g: ops.relu_backward(a[name], g, rule)

    def conv_back(key):
        return lambda g: ops.conv2d_backward_input(g, w[key], pad=1)

    def bn_back(prefix):
        return lambda g: ops.batchnorm_inference_backward(
            g, w[f"{prefix}.weight"], w[f"{prefix}.running_var"], spec.bn_eps)

    try:
        g = at("fc", None)
        g = at("flatten", _lift(lambda g: ops.dense_backward_input(g, w["fc.weight"]), g))
        g = at("gap", _lift(lambda g: g.reshape(a["gap"].shape), g))
        if spec.kind == SMALL_CNN:
            g = at("relu2", _lift(lambda g: ops.gap_backward(a["relu2"].shape, g), g))
            g = at("conv2", _lift(relu_back("conv2"), g))
            g = at("pool", _lift(conv_back("conv2.weight"), g))
            g = at("relu1", _lift(lambda g: ops.maxpool2x2_backward(a["_pool_idx"], g), g))
            g = at("conv1", _lift(relu_back("conv1"), g))
            g = at("input", _lift(conv_back("conv1.weight"), g))
        else:
            g = at("block", _lift(lambda g: ops.gap_backward(a["block"].shape, g), g))
            g = at("block.relu_out", g)
            g_add = at("block.add", _lift(relu_back("block.add"), g))
            g = at("block.bn2", g_add)
            g = at("block.conv2", _lift(bn_back("block.bn2"), g))
            g = at("block.relu1", _lift(conv_back("block.conv2.weight"), g))
            g = at("block.bn1", _lift(relu_back("block.bn1"), g))
            g = at("block.conv1", _lift(bn_back("block.bn1"), g))
            g_main = _lift(conv_back("block.conv1.weight"), g)
            g = at("relu", _add(g_main, g_add))  # the skip adds the add's gradient
            g = at("bn", _lift(relu_back("bn"), g))
            g = at("stem", _lift(bn_back("bn"), g))
            g = at("input", _lift(conv_back("stem.weight"), g))
    except _Done as done:
        return np.array(done.g, dtype=np.float64, copy=True)
    raise ValueError(f"unknown layer {wrt!r} or {start!r}")


def activation(spec: NetSpec, x: np.ndarray, layer: str) -> np.ndarray:
    """Output of ``layer`` (NCHW)."""
    return _run(spec, x)[canonical_name(layer)].copy()


def neuron_seed(spec: NetSpec, x: np.ndarray, layer: str, index: Sequence[int]) -> np.ndarray:
    """One-hot at ``index`` (channels-first, per sample) of ``layer``'s output, per sample."""
    seed = np.zeros_like(activation(spec, x, layer))
    seed[(slice(None),) + tuple(index)] = 1.0
    return seed


def channel_seed(spec: NetSpec, x: np.ndarray, layer: str, channel: int) -> np.ndarray:
    """Gradient of the mean of channel ``channel`` (axis 1) w.r.t. ``layer``'s output."""
    act = activation(spec, x, layer)
    seed = np.zeros_like(act)
    seed[:, channel] = 1.0 / np.prod(act.shape[2:])
    return seed


# ----------------------------------------------------------------------------- gradient methods
def gradient(spec: NetSpec, x: np.ndarray, target: Any, layer: str | None = None,
             rule: str = "normal") -> np.ndarray:
    """Gradient of the target w.r.t. the input (or ``layer``'s output) under a ReLU rule."""
    return backward(spec, x, "fc", logit_seed(spec, x, target), wrt=layer or "input", rule=rule)


def saliency(spec, x, target, layer=None):
    return gradient(spec, x, target, layer)


def gradient_x_input(spec, x, target, layer=None):
    values = x if layer is None else activation(spec, x, layer)
    return gradient(spec, x, target, layer) * values


def guided_backprop(spec, x, target, layer=None):
    return gradient(spec, x, target, layer, rule="guided")


def deconvnet(spec, x, target, layer=None):
    return gradient(spec, x, target, layer, rule="deconv")


# ----------------------------------------------------------------------------- integrated gradients
def integration_points(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Alphas and weights of Captum's integration rules (exact float64 points)."""
    n = steps
    if rule == "gausslegendre":
        nodes, weights = scipy.special.roots_legendre(n)
        return (nodes + 1.0) / 2.0, weights / 2.0
    k = np.arange(n, dtype=np.float64)
    weights = np.full(n, 1.0 / n)
    if rule == "riemann_left":
        return k / n, weights
    if rule == "riemann_right":
        return (k + 1.0) / n, weights
    if rule == "riemann_middle":
        return (k + 0.5) / n, weights
    if rule == "riemann_trapezoid":
        weights[[0, -1]] /= 2.0
        return k / (n - 1), weights
    raise ValueError(rule)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over H, W with scipy: taps out to ceil(3 sigma), reflection that
    repeats the edge pixel (scipy's default ``"reflect"``, numpy's
    ``np.pad(mode="symmetric")``)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    return scipy.ndimage.gaussian_filter(np.asarray(x, np.float64), (0, 0, sigma, sigma),
                                         mode="reflect", truncate=radius / sigma)


def baseline_array(x: np.ndarray, spec: Any, blur_sigma: float = 8.0) -> np.ndarray:
    """A baseline batch like ``x`` from a crosslens baseline spec (no random ones)."""
    if isinstance(spec, str):
        if spec == "zeros":
            return np.zeros_like(x)
        if spec == "blur":
            return blur(x, blur_sigma)
        raise ValueError(spec)
    if isinstance(spec, (int, float)):
        return np.full_like(x, float(spec))
    spec = np.asarray(spec, np.float64)
    return np.broadcast_to(spec, x.shape).copy()


def integrated_gradients(spec: NetSpec, x: np.ndarray, target: Any, baseline: Any = "zeros",
                         steps: int = 50, rule: str = "gausslegendre",
                         blur_sigma: float = 8.0) -> np.ndarray:
    """``(x - b) · Σ_k w_k ∇f(b + α_k (x - b))``, averaged over a list of baselines."""
    if isinstance(target, str):
        target = predicted(spec, x)
    seed = logit_seed(spec, x, target)
    specs = list(baseline) if isinstance(baseline, (list, tuple)) else [baseline]
    alphas, weights = integration_points(rule, steps)
    total = np.zeros_like(x)
    for b_spec in specs:
        base = baseline_array(x, b_spec, blur_sigma)
        integral = sum(wk * backward(spec, base + ak * (x - base), "fc", seed)
                       for ak, wk in zip(alphas, weights))
        total += (x - base) * integral
    return total / len(specs)


def ig_score_difference(spec: NetSpec, x: np.ndarray, target: Any, baseline: Any = "zeros"
                        ) -> np.ndarray:
    """``f(x) - f(b)`` per sample (what completeness compares ``sum(IG)`` against)."""
    seed = logit_seed(spec, x, target)
    base = baseline_array(x, baseline)
    return ((forward(spec, x) - forward(spec, base)) * seed).sum(axis=1)


# ----------------------------------------------------------------------------- noise methods
BASES = {"saliency": saliency, "gradient_x_input": gradient_x_input,
         "integrated_gradients": integrated_gradients, "guided_backprop": guided_backprop,
         "deconvnet": deconvnet}


def noise_tunnel(spec: NetSpec, x: np.ndarray, target: Any, noise: np.ndarray,
                 aggregate: str = "mean", base: str = "saliency", **base_options) -> np.ndarray:
    """Aggregate of ``base`` over ``x + noise[s]``; ``noise`` is ``(samples, *x.shape)``.

    The target is fixed on the clean input (``"predicted"`` -> the clean argmax).
    """
    if isinstance(target, str):
        target = predicted(spec, x)
    fn = BASES[base]
    attrs = np.stack([fn(spec, x + eps, target, **base_options) for eps in noise])
    mean, mean_sq = attrs.mean(axis=0), (attrs ** 2).mean(axis=0)
    return {"mean": mean, "square": mean_sq, "variance": mean_sq - mean ** 2}[aggregate]


def smoothgrad(spec, x, target, noise, **kw):
    return noise_tunnel(spec, x, target, noise, "mean", **kw)


def squaregrad(spec, x, target, noise, **kw):
    return noise_tunnel(spec, x, target, noise, "square", **kw)


def vargrad(spec, x, target, noise, **kw):
    return noise_tunnel(spec, x, target, noise, "variance", **kw)


def seeded_noise(x: np.ndarray, samples: int, seed: int, noise_level: float = 0.15
                 ) -> np.ndarray:
    """The documented crosslens draw: ``default_rng(seed)`` standard normals of shape
    ``(samples, N, C, H, W)`` (channels-first order) times ``noise_level·(max - min)``
    of each sample."""
    eps = np.random.default_rng(seed).standard_normal((samples,) + x.shape)
    flat = x.reshape(x.shape[0], -1)
    sigma = noise_level * (flat.max(axis=1) - flat.min(axis=1))
    return eps * sigma.reshape((1, -1) + (1,) * (x.ndim - 1))
