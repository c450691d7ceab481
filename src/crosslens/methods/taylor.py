"""Simple Taylor decomposition at a root point (Montavon et al. 2017, section 3).

The first-order Taylor expansion of the target score ``f`` at a root point ``x~`` with
``f(x~) = 0`` attributes ``R_i = df/dx_i(x~) * (x_i - x~_i)``; for a function linear on
the segment the relevances sum to ``f(x)`` exactly. The root is searched on the segment
from ``baseline`` to ``x`` (``x~ = b + t (x - b)``) by bisection on the sign of the score,
from forward passes only; where the score has the same sign at both ends there is no root
on the segment and the baseline itself is the expansion point (``info["root_found"]``
says which samples had one, ``info["root_score"]`` gives ``f(x~)``). Deep Taylor
decomposition, which applies the expansion layer by layer, is the ``deep_taylor`` method
(:mod:`crosslens.methods.lrp`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.registry import register
from .base import Context, MethodResult
from .baselines import make_baseline
from .scoring import forward_scores


@register("taylor", needs=("grad", "forward"), family="gradient",
          aliases=("simple_taylor", "taylor_decomposition"),
          summary="Gradient at a root point on the segment to a baseline, times "
                  "(x - root point)",
          reference="Montavon et al. 2017")
def taylor(ctx: Context, *, baseline: Any = 0.0, iterations: int = 40,
           blur_sigma: float = 8.0) -> MethodResult:
    """Simple Taylor decomposition (see the module docstring).

    Parameters
    ----------
    baseline
        Where the segment searched for a root starts (as for integrated gradients).
    iterations
        Bisection steps (each halves the interval: 40 reach float64 resolution of ``t``).
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    """
    if iterations < 1:  # its type is checked by the registry (the annotation)
        raise OptionError(f"iterations must be an integer >= 1, got {iterations!r}")
    if ctx.layer is not None:
        raise OptionError("taylor attributes to the input; for a layer use gradient_x_input "
                          "with layer=")
    ops, n = ctx.ops, ctx.n
    rank = len(ops.shape(ctx.x))
    target = ctx.fixed_target()
    base = make_baseline(ctx, baseline, blur_sigma)

    def point(t: np.ndarray) -> Any:
        return base + ops.asarray(t.reshape((n,) + (1,) * (rank - 1))) * (ctx.x - base)

    f_x = forward_scores(ctx, ctx.x, target)
    f_base = forward_scores(ctx, base, target)
    found = np.sign(f_x) != np.sign(f_base)
    found |= f_base == 0
    low, high = np.zeros(n), np.ones(n)  # the sign changes between low and high
    f_low = f_base.copy()
    for _ in range(iterations):
        middle = (low + high) / 2
        f_mid = forward_scores(ctx, point(middle), target)
        same = np.sign(f_mid) == np.sign(f_low)
        low, f_low = np.where(same, middle, low), np.where(same, f_mid, f_low)
        high = np.where(same, high, middle)
    t = np.where(found, np.where(f_base == 0, 0.0, (low + high) / 2), 0.0)
    root = point(t)
    result = ctx.gradient(root, target)
    return MethodResult(result.grad * (ctx.x - root),
                        info={"root_found": found, "root_t": t,
                              "root_score": np.asarray(ops.to_numpy(result.scores),
                                                       dtype=np.float64)})
