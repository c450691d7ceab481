"""Explicit post-processing options, applied natively with the backend's ops.

The same names are used everywhere (``cl.explain``, the CLI, reports):

- ``abs``: absolute value of the attributions;
- ``reduce_channels``: ``"sum"``, ``"mean"``, ``"abs_sum"``, ``"l2"`` or ``"max_abs"``
  over the channel axis (the axis is the layout's: 1 channels-first, -1 channels-last);
- ``normalize``: ``"max_abs"`` (divide by max |a| per sample, sign kept), ``"sum"``
  (divide by sum |a| per sample) or ``"minmax"`` (to [0, 1] per sample).
"""
from __future__ import annotations

from typing import Any

from ..core.errors import OptionError

REDUCTIONS = ("sum", "mean", "abs_sum", "l2", "max_abs")
NORMALIZATIONS = ("max_abs", "sum", "minmax")


def postprocess(ops: Any, attr: Any, layout: str | None, *, abs: bool = False,
                reduce_channels: str | None = None, normalize: str | None = None) -> Any:
    """Apply the explicit options in a fixed order: abs, channel reduction, normalization."""
    if abs:
        attr = ops.abs(attr)
    if reduce_channels is not None:
        attr = _reduce(ops, attr, layout, reduce_channels)
    if normalize is not None:
        attr = _normalize(ops, attr, normalize)
    return attr


def _reduce(ops: Any, attr: Any, layout: str | None, how: str) -> Any:
    if how not in REDUCTIONS:
        raise OptionError(f"unknown reduce_channels {how!r}; choose one of {REDUCTIONS}")
    shape = ops.shape(attr)
    rank = len(shape)
    if rank < 3:
        raise OptionError(f"reduce_channels needs attributions with a channel axis; these "
                          f"have shape {tuple(shape)} (one value per feature). Drop "
                          "reduce_channels")
    if layout not in ("channels_first", "channels_last"):
        raise OptionError(
            f"reduce_channels: which axis of the attributions {tuple(shape)} holds channels "
            "cannot be known for this model's input (e.g. (N, T, F) for a recurrent model "
            "vs (N, C, L) for a convolution), and crosslens does not guess. Reduce the axis "
            "you mean yourself, e.g. exp.numpy().sum(axis=-1)")
    axis = 1 if layout == "channels_first" else rank - 1
    if how == "sum":
        return ops.sum(attr, axis=axis)
    if how == "mean":
        return ops.mean(attr, axis=axis)
    if how == "abs_sum":
        return ops.sum(ops.abs(attr), axis=axis)
    if how == "l2":
        return ops.sqrt(ops.sum(attr * attr, axis=axis))
    # max_abs: the channel value of largest magnitude, with its sign
    high, low = ops.max(attr, axis=axis), ops.min(attr, axis=axis)
    return ops.where(ops.abs(high) >= ops.abs(low), high, low)


def _normalize(ops: Any, attr: Any, how: str) -> Any:
    if how not in NORMALIZATIONS:
        raise OptionError(f"unknown normalize {how!r}; choose one of {NORMALIZATIONS}")
    shape = ops.shape(attr)
    flat = ops.reshape(attr, (shape[0], -1))
    keep = (shape[0],) + (1,) * (len(shape) - 1)
    if how == "max_abs":
        scale = ops.max(ops.abs(flat), axis=1)
        return attr / ops.reshape(ops.maximum(scale, 1e-30), keep)
    if how == "sum":
        scale = ops.sum(ops.abs(flat), axis=1)
        return attr / ops.reshape(ops.maximum(scale, 1e-30), keep)
    low = ops.reshape(ops.min(flat, axis=1), keep)
    high = ops.reshape(ops.max(flat, axis=1), keep)
    return (attr - low) / ops.maximum(high - low, 1e-30)
