"""The one scoring path: the score of a resolved target, from native outputs and layer
values, computed with a backend's :class:`~crosslens.core.backend.ArrayOps`.

Backends call :func:`score` inside their differentiation (so it also runs while a
compiled backend traces), perturbation methods call it on forward passes; nothing else
computes a target's score. The conventions (:mod:`crosslens.core.targets`):

- a class target picks ``outputs[i, c_i]``; a single output ``(N, 1)`` is a binary
  decision, class 1 the output and class 0 its negation;
- ``"predicted"`` picks each sample's top class (a binary decision is resolved by the
  backend first: it depends on whether the output is a logit or a probability);
- a neuron is ``activation[i][index]``, a channel the mean of ``activation[i, c]`` over
  the positions (channel axis of the layer's layout);
- a callable gets the native outputs, an objective ``(ops, activations, outputs)``; both
  must give one score per sample.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .checks import check_unit, multiple_outputs_message
from .errors import TargetError
from .targets import (ChannelTarget, NeuronTarget, ObjectiveTarget, PredictedTarget,
                      ScoreTarget, TargetSpec, call_score, check_class_range,
                      class_output_message)


def score(ops: Any, target: TargetSpec, outputs: Any, activations: dict[str, Any],
          layer_layout: str | None, index: Any = None) -> Any:
    """The target's score per sample, native ``(N,)``.

    Parameters
    ----------
    ops
        The backend's array operations.
    target
        A resolved target.
    outputs
        The model's native outputs for the batch.
    activations
        Native layer values by name (the target's layer, an objective's layers).
    layer_layout
        ``"channels_first"`` or ``"channels_last"``: where layer outputs put channels.
    index
        For a class target, its classes as a native integer array (a compiled backend
        passes them as an input of the trace, so one trace serves every class list);
        ``None`` converts ``target.indices``.
    """
    if isinstance(target, ScoreTarget):
        return per_sample(call_score(target.fn, outputs), "a callable target")
    if isinstance(target, ObjectiveTarget):
        values = {name: activations[name] for name in target.layers}
        return per_sample(target.fn(ops, values, outputs), "an objective")
    if isinstance(target, (NeuronTarget, ChannelTarget)):
        return unit_score(ops, activations[target.layer], target, layer_layout)
    logits = single_output(outputs, "class target")
    shape = tuple(logits.shape)  # the batch dimension may be None while a backend traces
    if len(shape) != 2:
        raise TargetError(class_output_message(tuple(shape)))
    if isinstance(target, PredictedTarget):
        if shape[1] == 1:
            raise TargetError("internal: a binary 'predicted' target must be resolved to "
                              "classes first (see core.targets.predicted_classes)")
        return ops.gather_rows(logits, ops.argmax(logits, axis=1))
    if index is None:
        check_class_range(target.indices, shape[1])
        index = ops.as_integer(target.indices)
    if shape[1] == 1:  # class 1: the output, class 0: its negation
        return ops.where(index == 0, -logits[:, 0], logits[:, 0])
    return ops.gather_rows(logits, index)


def single_output(outputs: Any, purpose: str) -> Any:
    """The model's one output tensor (a list or tuple of one is unwrapped); several are a
    :class:`TargetError` naming the callable-target fix."""
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    if isinstance(outputs, (list, tuple, dict)):
        raise TargetError(multiple_outputs_message(type(outputs).__name__, purpose))
    return outputs


def per_sample(value: Any, what: str) -> Any:
    """A score of shape ``(N,)`` (``(N, 1)`` is squeezed), else a clear error."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TargetError(f"{what} must return a tensor with one score per sample; got "
                          f"{type(value).__name__}")
    shape = tuple(value.shape)  # a dimension may be None while a backend traces
    if len(shape) == 2 and shape[1] == 1:
        value = value[:, 0]
        shape = shape[:1]
    if len(shape) != 1:
        raise TargetError(f"{what} must return one score per sample, shape (batch,); got "
                          f"{shape}")
    return value


def unit_score(ops: Any, activation: Any, target: NeuronTarget | ChannelTarget,
               layer_layout: str | None) -> Any:
    """A neuron's value or a channel's mean over positions, per sample."""
    shape = tuple(int(s) for s in activation.shape[1:])
    axis = 0 if layer_layout == "channels_first" or len(shape) == 1 else len(shape) - 1
    check_unit(target, shape, channel_axis=axis)
    if isinstance(target, ChannelTarget):
        picked = activation[(slice(None),) * (axis + 1) + (target.channel % shape[axis],)]
        rest = tuple(range(1, len(shape)))
        return ops.mean(picked, axis=rest) if rest else picked
    return activation[(slice(None),) + tuple(target.index)]


def scores_numpy(ops: Any, target: TargetSpec, outputs: Any, activations: dict[str, Any],
                 layer_layout: str | None) -> np.ndarray:
    """:func:`score` as float64 numpy (perturbation methods aggregate on the host)."""
    return np.asarray(ops.to_numpy(score(ops, target, outputs, activations, layer_layout)),
                      dtype=np.float64)
