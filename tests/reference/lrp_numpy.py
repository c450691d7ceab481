"""LRP in plain numpy from the rules' formulas (Bach et al. 2015; Montavon et al. 2017,
2019), on the reference nets of :mod:`tests.reference.nets`.

Written independently of crosslens' gradient trick: each layer's relevance is computed
with explicit transposed linear maps,

    R_i = sum_g c_g sum_k s_k m_k(x)_i sum_j rho_k(w)_ji gate_gj R_j / stab(D_gj),

batch norms are merged into the convolution before them (``w * s``, ``(b - mu) s + beta``),
ReLUs pass relevance unchanged, max pooling routes it to the maximum, average pooling and
the residual addition use the sum rule. Relevance starts as the target logit.
"""
from __future__ import annotations

import numpy as np

from . import numpy_ops as ops
from .nets import SMALL_CNN, SMALL_RESNET, NetSpec
from .numpy_nets import _run


def stab(z: np.ndarray, eps: float) -> np.ndarray:
    return np.where(z >= 0, z + eps, z - eps)


def _pos(a):
    return np.maximum(a, 0)


def _neg(a):
    return np.minimum(a, 0)


# rule -> list of groups (coefficient, gate, [(input mod, param mod, keep bias, sign)])
def rule_table(name: str, gamma: float = 0.25, alpha: float = 2.0, beta: float = 1.0):
    x, p, n = (lambda a, lo, hi: a), (lambda a, lo, hi: _pos(a)), (lambda a, lo, hi: _neg(a))
    same, wp, wn = (lambda w: w), _pos, _neg
    if name == "epsilon":
        return [(1.0, None, [(x, same, True, 1.0)])]
    if name == "zplus":
        return [(1.0, None, [(p, wp, True, 1.0), (n, wn, False, 1.0)])]
    if name == "alpha_beta":
        return [(alpha, None, [(p, wp, True, 1.0), (n, wn, False, 1.0)]),
                (-beta, None, [(p, wn, True, 1.0), (n, wp, False, 1.0)])]
    if name == "gamma":
        gp, gn = (lambda w: w + gamma * _pos(w)), (lambda w: w + gamma * _neg(w))
        return [(1.0, "pos", [(p, gp, True, 1.0), (n, gn, False, 1.0)]),
                (1.0, "neg", [(p, gn, True, 1.0), (n, gp, False, 1.0)])]
    if name == "zbox":
        return [(1.0, None, [(x, same, True, 1.0), ((lambda a, lo, hi: lo + 0 * a), wp, True, -1.0),
                             ((lambda a, lo, hi: hi + 0 * a), wn, True, -1.0)])]
    if name == "flat":
        return [(1.0, None, [((lambda a, lo, hi: np.ones_like(a)), np.ones_like, False, 1.0)])]
    if name == "wsquare":
        return [(1.0, None, [((lambda a, lo, hi: np.ones_like(a)), np.square, True, 1.0)])]
    raise ValueError(name)


def linear_relevance(rule: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                     relevance: np.ndarray, forward, backward, eps: float = 1e-6,
                     low=None, high=None, **rule_options) -> np.ndarray:
    """Relevance at the input of a linear map ``forward(x, w, b)`` (with transpose
    ``backward(g, w)``)."""
    z = forward(x, w, b)
    out = np.zeros_like(x)
    for coefficient, gate, terms in rule_table(rule, **rule_options):
        evaluated = []
        denominator = 0.0
        for mod_in, mod_w, keep_bias, sign in terms:
            m = mod_in(x, low, high)
            wk = mod_w(w)
            bk = mod_w(b) if (b is not None and keep_bias) else None
            denominator = denominator + sign * forward(m, wk, bk)
            evaluated.append((m, wk, sign))
        share = relevance / stab(denominator, eps)
        if gate == "pos":
            share = share * (z > 0)
        elif gate == "neg":
            share = share * (z < 0)
        for m, wk, sign in evaluated:
            out = out + coefficient * sign * m * backward(share, wk)
    return out


def _conv(x, w, b):
    return ops.conv2d(x, w, b, pad=1)


def _conv_t(g, w):
    return ops.conv2d_backward_input(g, w, pad=1)


def _dense(x, w, b):
    return ops.dense(x, w, b)


def _dense_t(g, w):
    return ops.dense_backward_input(g, w)


def _merged(spec: NetSpec, conv: str, bn: str):
    wt = spec.weights
    s = wt[f"{bn}.weight"] / np.sqrt(wt[f"{bn}.running_var"] + spec.bn_eps)
    b = wt.get(f"{conv}.bias", np.zeros_like(s))
    return wt[f"{conv}.weight"] * s[:, None, None, None], (b - wt[f"{bn}.running_mean"]) * s \
        + wt[f"{bn}.bias"]


def _sum_rule(x: np.ndarray, z: np.ndarray, relevance: np.ndarray, eps: float) -> np.ndarray:
    return x * relevance / stab(z, eps)


COMPOSITES = {  # (first linear layer, other convolutions, dense layers)
    "epsilon_plus": (None, "zplus", "epsilon"),
    "epsilon_plus_flat": ("flat", "zplus", "epsilon"),
    "epsilon_alpha2_beta1": (None, "alpha_beta", "epsilon"),
    "epsilon_alpha2_beta1_flat": ("flat", "alpha_beta", "epsilon"),
    "epsilon_gamma_box": ("zbox", "gamma", "epsilon"),
    "excitation_backprop": (None, "zplus", "zplus"),
    "deep_taylor": ("zbox", "zplus", "zplus"),
}


def lrp(spec: NetSpec, x: np.ndarray, target: np.ndarray, composite: str = "epsilon_plus_flat",
        epsilon: float = 1e-6, stabilizer: float = 1e-6, gamma: float = 0.25,
        low=None, high=None, overrides: dict | None = None) -> dict[str, np.ndarray]:
    """Relevances (NCHW) at the input (``"input"``) and at every layer's output, of the
    logit of class ``target[i]`` for sample ``i``. ``low`` / ``high`` default to each
    sample's minimum / maximum; ``overrides`` maps layer names to rules."""
    a = _run(spec, x)
    w = spec.weights
    n = len(x)
    low = x.min(axis=(1, 2, 3), keepdims=True) if low is None else low
    high = x.max(axis=(1, 2, 3), keepdims=True) if high is None else high
    first, conv_rule, dense_rule = COMPOSITES[composite]
    overrides = dict(overrides or {})
    opts = dict(gamma=gamma)

    def conv_rel(name, inp, wk, bk, rel, is_first):
        rule = overrides.get(name, first if (is_first and first) else conv_rule)
        eps = epsilon if rule == "epsilon" else stabilizer
        return linear_relevance(rule, inp, wk, bk, rel, _conv, _conv_t, eps, low, high, **opts)

    rel: dict[str, np.ndarray] = {}
    r = np.zeros_like(a["fc"])
    r[np.arange(n), target] = a["fc"][np.arange(n), target]
    rel["fc"] = r
    dense = overrides.get("fc", dense_rule)
    r = linear_relevance(dense, a["flatten"], w["fc.weight"], w["fc.bias"], r, _dense, _dense_t,
                         epsilon if dense == "epsilon" else stabilizer, **opts)
    rel["flatten"] = rel["gap"] = r
    last = "relu2" if spec.kind == SMALL_CNN else "block"
    r = _sum_rule(a[last], ops.gap(a[last]), r[:, :, None, None]
                  / (a[last].shape[2] * a[last].shape[3]), stabilizer)
    rel[last] = r
    if spec.kind == SMALL_CNN:
        rel["conv2"] = r  # relu passes relevance
        r = conv_rel("conv2", a["pool"], w["conv2.weight"], w["conv2.bias"], r, False)
        rel["pool"] = r
        r = ops.maxpool2x2_backward(a["_pool_idx"], r)
        rel["relu1"] = rel["conv1"] = r
        r = conv_rel("conv1", a["input"], w["conv1.weight"], w["conv1.bias"], r, True)
    elif spec.kind == SMALL_RESNET:
        rel["block.add"] = r  # relu_out passes relevance
        z = a["block.add"]
        r_branch = _sum_rule(a["block.bn2"], z, r, stabilizer)
        r_skip = _sum_rule(a["relu"], z, r, stabilizer)
        wk, bk = _merged(spec, "block.conv2", "block.bn2")
        r_branch = conv_rel("block.conv2", a["block.relu1"], wk, bk, r_branch, False)
        wk, bk = _merged(spec, "block.conv1", "block.bn1")
        r_branch = conv_rel("block.conv1", a["relu"], wk, bk, r_branch, False)
        r = r_branch + r_skip
        rel["relu"] = r
        wk, bk = _merged(spec, "stem", "bn")
        r = conv_rel("stem", a["input"], wk, bk, r, True)
    else:
        raise ValueError(spec.kind)
    rel["input"] = r
    return rel


__all__ = ["lrp", "linear_relevance", "COMPOSITES", "SMALL_CNN", "SMALL_RESNET"]
