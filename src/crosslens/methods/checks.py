"""Checks around every method call: integer inputs, non-finite and disconnected results.

- :func:`at_embedding`: integer inputs (token ids) have no gradient, so gradient methods
  attribute at the output of the model's embedding layer, saying so in the result;
  methods that perturb the input continuously (noise) refuse with the alternative.
- :func:`check_result`: a result holding NaN / infinity is an error, never an answer;
  an all-zero result is checked for a score that does not depend on the input at all
  (e.g. ``0 * f(x) + b``), which is a :class:`DisconnectedError` rather than a map of
  zeros. The check costs one forward pass and runs only for all-zero results.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import CrosslensError, DisconnectedError, NonFiniteError, OptionError
from ..core.registry import MethodSpec
from .base import Context, MethodResult
from .scoring import forward_scores

#: Families whose methods differentiate the score w.r.t. the input (or ``layer=``).
GRADIENT_FAMILIES = ("gradient", "influence")


def at_embedding(ctx: Context, spec: MethodSpec, options: dict[str, Any]) -> str | None:
    """Point a gradient method on integer inputs at the embedding's output.

    Returns the note recorded in the result's ``info``, or ``None`` when nothing changed.
    """
    if spec.family == "noise":
        raise OptionError(
            f"{spec.name} adds Gaussian noise to the input, but the input holds integer ids "
            "(tokens), which cannot be noised. For SmoothGrad in embedding space use "
            "method='internal_influence' with cut=<embedding layer>, doi='gaussian', "
            "multiply=False")
    if ctx.layer is not None or spec.family not in GRADIENT_FAMILIES \
            or options.get("cut") is not None:
        return None
    layer = first_embedding(ctx)
    ctx.layer = layer
    return (f"the input holds integer ids, which have no gradient: attributions are at the "
            f"output of embedding layer {layer!r}; sum them over the last axis for one "
            "score per token")


def first_embedding(ctx: Context) -> str:
    """The embedding layer that runs first on ``ctx.x`` (a clear error when none)."""
    backend = ctx.backend
    embeddings = set(backend.embedding_layers())
    order = [name for name, _, _ in backend.layer_calls(ctx.x) if name in embeddings]
    if not order:
        raise OptionError(
            "the input holds integer ids, which cannot be differentiated, and this model has "
            "no embedding layer crosslens recognises; pass layer= naming the layer whose "
            "output first turns the ids into floating-point values")
    counts = backend.call_counts(ctx.x)
    first = order[0]
    return first if counts[first] == 1 else f"{first}#0"


def check_result(ctx: Context, spec: MethodSpec, result: MethodResult) -> None:
    """Raise on non-finite results, and on all-zero results of a score that does not
    depend on the input (see the module docstring)."""
    ops = ctx.ops
    values = result.attributions
    if not ops.all_finite(values):
        array = ops.to_numpy(values)
        bad = np.flatnonzero(~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1))
        raise NonFiniteError(
            f"the {spec.name} result holds NaN or infinite values for samples "
            f"{bad.tolist()[:8]} although the model's outputs, scores and gradients were "
            "finite: they arise in the method's own arithmetic (e.g. scores or baselines so "
            "large that their products overflow). Rescale the input or the target score")
    if spec.targetless or bool(ops.to_numpy(ops.max(ops.abs(values))) != 0):
        return
    if score_is_constant(ctx):
        raise DisconnectedError(
            "the explained score does not depend on the input: it is exactly the same for "
            "the input, for random inputs and for zeros, so every attribution is 0. Check "
            "the target (e.g. a callable such as 0 * out[:, 0] + b, or a unit whose value "
            "is constant)")


def score_is_constant(ctx: Context) -> bool:
    """Whether the target score is bitwise the same for ``x``, for random inputs of its
    scale and for zeros (one forward pass; ``False`` when the probe itself fails)."""
    ops, n = ctx.ops, ctx.n
    x = ops.to_numpy(ctx.x)
    rng = np.random.default_rng(0)
    try:
        target = ctx.fixed_target()
        if ops.is_integer(ctx.x):
            high = int(x.max()) + 1 if x.size else 1
            probes = [x, rng.integers(0, high, size=x.shape), np.zeros_like(x)]
            points = ops.as_integer(np.concatenate(probes))
        else:
            scale = float(np.abs(x).max()) or 1.0
            probes = [x, x + scale * rng.standard_normal(x.shape),
                      scale * rng.standard_normal(x.shape), np.zeros_like(x)]
            points = ops.asarray(np.concatenate(probes))
        scores = forward_scores(ctx, points, target.repeat(len(probes)))
    except CrosslensError:
        return False
    scores = scores.reshape(len(probes), n)
    return bool((scores == scores[0]).all())
