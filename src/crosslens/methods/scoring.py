"""Target scores from forward passes only (no gradients), for perturbation methods.

Perturbation methods evaluate many modified inputs and only need the target score of
each: the outputs come from :meth:`Backend.forward` (neuron and channel targets read
:meth:`Backend.activations`), scored by the one scoring path
(:func:`crosslens.core.scoring.score`), and returned as float64 numpy, where the methods
aggregate them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import TargetError
from ..core.scoring import scores_numpy
from ..core.targets import ChannelTarget, NeuronTarget, PredictedTarget, TargetSpec
from .base import Context


def forward_scores(ctx: Context, points: Any, target: TargetSpec) -> np.ndarray:
    """The target score of each row of ``points`` (native batch), as float64 numpy.

    ``target`` must be aligned with ``points`` (e.g. ``target.repeat(k)`` for ``k``
    stacked copies of the batch); a predicted target must have been fixed first.
    """
    backend, count = ctx.backend, ctx.ops.shape(points)[0]
    if isinstance(target, PredictedTarget):  # a method forgot ctx.fixed_target()
        raise TargetError("internal: perturbation scores need fixed classes")
    if isinstance(target, (NeuronTarget, ChannelTarget)):
        outputs, activations = None, backend.activations(points, [target.layer])
    else:
        outputs, activations = backend.forward(points), {}
    values = scores_numpy(ctx.ops, target, outputs, activations, backend.layer_layout)
    if values.shape != (count,):
        raise TargetError(f"the target must give one score per sample, shape ({count},); "
                          f"got {values.shape}")
    if not np.isfinite(values).all():
        backend.check_finite(ctx.ops.asarray(values), "scores", points)
    return values


def channel_axis(ctx: Context) -> int:
    """Channel axis of one sample's layer output, as the backends define it for targets.

    PyTorch layers are channels-first (axis 0); Keras layers follow the model's layout
    (last axis unless the model is channels-first).
    """
    return 0 if ctx.backend.layer_layout == "channels_first" else -1
