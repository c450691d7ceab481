"""Target scores from forward passes only (no gradients), for perturbation methods.

Perturbation methods evaluate many modified inputs and only need the target score of
each: class scores come from :meth:`Backend.forward`, neuron and channel scores from
:meth:`Backend.activations`, callable targets are applied to the native outputs. The
scores are returned as float64 numpy, where the methods aggregate them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.checks import check_unit, class_output_message
from ..core.errors import TargetError
from ..core.targets import (ChannelTarget, ClassTarget, NeuronTarget, PredictedTarget,
                            ScoreTarget, TargetSpec, call_score, check_class_range,
                            class_scores)
from .base import Context


def forward_scores(ctx: Context, points: Any, target: TargetSpec) -> np.ndarray:
    """The target score of each row of ``points`` (native batch), as float64 numpy.

    ``target`` must be aligned with ``points`` (e.g. ``target.repeat(k)`` for ``k``
    stacked copies of the batch); a predicted target must have been fixed first.
    """
    ops, count = ctx.ops, ctx.ops.shape(points)[0]
    if isinstance(target, (NeuronTarget, ChannelTarget)):
        values = ops.to_numpy(ctx.backend.activations(points, [target.layer])[target.layer])
        return unit_scores(values, target, channel_axis(ctx)).astype(np.float64)
    outputs = ctx.backend.forward(points)
    if isinstance(target, ScoreTarget):
        value = call_score(target.fn, outputs)
        try:
            score = np.asarray(ops.to_numpy(value), dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TargetError("a callable target must return an array with one score per "
                              f"sample; got {type(value).__name__}") from error
        if score.ndim == 2 and score.shape[1] == 1:
            score = score[:, 0]
        if score.shape != (count,):
            raise TargetError(f"a callable target must return one score per sample, shape "
                              f"({count},); got {score.shape}")
        if not np.isfinite(score).all():
            ctx.backend.check_finite(ops.asarray(score), "scores", points)
        return score
    if isinstance(target, PredictedTarget):  # a method forgot ctx.fixed_target()
        raise TargetError("internal: perturbation scores need fixed classes")
    values = ops.to_numpy(outputs)
    if values.ndim != 2:
        raise TargetError(class_output_message(values.shape))
    assert isinstance(target, ClassTarget)
    check_class_range(target.indices, values.shape[1])
    return class_scores(values, target.indices).astype(np.float64)


def channel_axis(ctx: Context) -> int:
    """Channel axis of one sample's layer output, as the backends define it for targets.

    PyTorch layers are channels-first (axis 0); Keras layers follow the model's layout
    (last axis unless the model is channels-first).
    """
    return 0 if ctx.backend.layer_layout == "channels_first" else -1


def unit_scores(values: np.ndarray, target: NeuronTarget | ChannelTarget, axis: int
                ) -> np.ndarray:
    """Neuron value or channel mean per sample of a layer output batch ``values``."""
    shape = values.shape[1:]
    check_unit(target, shape, channel_axis=axis % len(shape))
    if isinstance(target, ChannelTarget):
        channel = np.take(values, target.channel, axis=(axis % len(shape)) + 1)
        return channel.reshape(len(values), -1).mean(axis=1)
    return values[(slice(None),) + tuple(target.index)]
