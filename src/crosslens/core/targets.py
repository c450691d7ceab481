"""Explanation targets: what score of the model an attribution explains.

A user writes a target as

- an ``int`` class index (the same class for every sample),
- a sequence of ints, one class per sample,
- ``"predicted"`` (the default): the top class of each sample,
- a callable ``score(outputs) -> (N,)`` on the model's native outputs (a torch tensor for a
  PyTorch model, a ``tf.Tensor`` for a Keras model) for models that are not classifiers,
- :class:`Neuron` or :class:`Channel`: a unit inside a named layer.

Single-output classifiers (outputs of shape ``(N, 1)``, a binary decision) follow one
convention everywhere: class ``1`` is the output itself and class ``0`` its negation
(the logit of class 0 under a sigmoid is ``-z``; for a probability output ``-p`` has the
gradient of ``1 - p``). ``"predicted"`` is class 1 where the output exceeds the
threshold: 0 for a logit, 0.5 for a probability. Which one the output is comes from the
model (a final sigmoid, or a final linear layer) or from the values (outside [0, 1]:
a logit); when neither tells, ``"predicted"`` raises instead of guessing.

:func:`resolve_target` turns any of these into one of the ``*Target`` records below, which
is what backends consume. Backends compute the per-sample score natively, so no
framework is imported here.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .errors import TargetError


@dataclass(frozen=True)
class Neuron:
    """One unit of a layer's output, as a target (or objective).

    Parameters
    ----------
    layer : str or layer object
        The layer, addressed as everywhere else (torch dotted path, Keras name,
        ``"outer/inner"`` for nested Keras models, or the layer object).
    index : int or tuple of int
        Index into one sample's layer output, in the model's native layout (``(C, H, W)``
        for a PyTorch conv layer, ``(H, W, C)`` for a Keras one). Negative indices count
        from the end, as in numpy.
    """

    layer: Any
    index: Union[int, tuple[int, ...]]


@dataclass(frozen=True)
class Channel:
    """The mean activation of one channel of a layer, as a target (or objective).

    The mean runs over every non-batch, non-channel axis (the spatial positions); the
    channel axis is the model's (1 for PyTorch, last for Keras).
    """

    layer: Any
    channel: int


# --- resolved targets, consumed by backends -------------------------------------------


@dataclass(frozen=True)
class ClassTarget:
    """Score = ``outputs[i, indices[i]]``."""

    indices: np.ndarray  # int64, shape (N,)

    def repeat(self, k: int) -> "ClassTarget":
        """Tile for a batch made of ``k`` stacked copies of the original batch."""
        return ClassTarget(np.tile(self.indices, k))

    def take(self, start: int, stop: int) -> "ClassTarget":
        return ClassTarget(self.indices[start:stop])


@dataclass(frozen=True)
class PredictedTarget:
    """Score = the largest output of each sample, chosen in the same forward pass.

    Only meaningful when the batch being differentiated is the user's input itself;
    methods that evaluate other points (paths, noise) first fix the classes with
    :meth:`crosslens.methods.base.Context.fixed_target`.
    """

    def repeat(self, k: int) -> "PredictedTarget":
        return self

    def take(self, start: int, stop: int) -> "PredictedTarget":
        return self


@dataclass(frozen=True)
class ScoreTarget:
    """Score = ``fn(outputs)``, a user callable returning one value per sample."""

    fn: Callable[[Any], Any]

    def repeat(self, k: int) -> "ScoreTarget":
        return self

    def take(self, start: int, stop: int) -> "ScoreTarget":
        return self


@dataclass(frozen=True)
class NeuronTarget:
    """Score = ``activation(layer)[i][index]`` (layer already resolved to its name)."""

    layer: str
    index: tuple[int, ...]

    def repeat(self, k: int) -> "NeuronTarget":
        return self

    def take(self, start: int, stop: int) -> "NeuronTarget":
        return self


@dataclass(frozen=True)
class ChannelTarget:
    """Score = mean over positions of ``activation(layer)[i, channel]``."""

    layer: str
    channel: int

    def repeat(self, k: int) -> "ChannelTarget":
        return self

    def take(self, start: int, stop: int) -> "ChannelTarget":
        return self


@dataclass(frozen=True)
class ObjectiveTarget:
    """Score = ``fn(ops, activations, outputs)``: any function of layers and outputs.

    ``fn`` is written with the backend's :class:`~crosslens.core.backend.ArrayOps` on
    native arrays (so it runs inside the framework's own differentiation, and at trace
    time for compiled backends) and returns one score per sample; ``activations`` maps
    each name in ``layers`` (canonical names) to that layer's output. ``key`` identifies
    the function (compiled backends cache their trace by it: equal keys must mean equal
    functions). ``slicer(start, stop)`` returns the target for a chunk of the batch when
    ``fn`` holds per-sample constants; ``None`` means ``fn`` is chunk-independent.
    ``couples_batch``: the score of a sample depends on the other samples (diversity), so
    the batch is split into passes only when memory forces it (and then ``slicer`` raises).
    Used by feature visualization (:mod:`crosslens.featurevis.objectives`).
    """

    layers: tuple[str, ...]
    fn: Callable[[Any, dict, Any], Any]
    key: Any
    slicer: Callable[[int, int], "ObjectiveTarget"] | None = None
    couples_batch: bool = False

    def repeat(self, k: int) -> "ObjectiveTarget":
        if k != 1 and self.slicer is not None:
            raise TargetError("this objective has per-sample terms and cannot be tiled")
        return self

    def take(self, start: int, stop: int) -> "ObjectiveTarget":
        return self if self.slicer is None else self.slicer(start, stop)


TargetSpec = Union[ClassTarget, PredictedTarget, ScoreTarget, NeuronTarget, ChannelTarget,
                   ObjectiveTarget]
UserTarget = Union[int, Sequence[int], str, Callable[[Any], Any], Neuron, Channel, None]


def resolve_target(target: UserTarget, n_samples: int,
                   resolve_layer: Callable[[Any], str]) -> TargetSpec:
    """Turn a user target into a backend-level target record.

    Parameters
    ----------
    target
        See the module docstring. ``None`` means ``"predicted"``.
    n_samples
        Batch size of the input, used to check per-sample class lists.
    resolve_layer
        The backend's layer resolver (name or object -> canonical name; raises on unknown).
    """
    if target is None or (isinstance(target, str) and target == "predicted"):
        return PredictedTarget()
    if isinstance(target, str):
        raise TargetError(
            f"unknown target {target!r}: use a class index, a list of class indices, "
            "'predicted', a callable on the model outputs, cl.Neuron(...) or cl.Channel(...)")
    if isinstance(target, Neuron):
        index = (target.index,) if isinstance(target.index, (int, np.integer)) else tuple(target.index)
        return NeuronTarget(resolve_layer(target.layer), tuple(int(i) for i in index))
    if isinstance(target, Channel):
        return ChannelTarget(resolve_layer(target.layer), int(target.channel))
    if callable(target):
        return ScoreTarget(target)
    if isinstance(target, (bool, np.bool_)):
        raise TargetError("target must be a class index, not a bool")
    if isinstance(target, (int, np.integer)):
        _check_nonnegative([int(target)])
        return ClassTarget(np.full(n_samples, int(target), dtype=np.int64))
    indices = _as_index_array(target)
    if indices.ndim != 1 or len(indices) != n_samples:
        raise TargetError(
            f"a per-sample target needs one class index per sample: got shape "
            f"{tuple(indices.shape)} for a batch of {n_samples}")
    _check_nonnegative(indices.tolist())
    return ClassTarget(indices)


def _as_index_array(target: Any) -> np.ndarray:
    if hasattr(target, "detach"):  # torch tensor, without importing torch
        target = target.detach().cpu().numpy()
    elif hasattr(target, "numpy") and not isinstance(target, np.ndarray):
        target = target.numpy()
    array = np.asarray(target)
    if array.dtype.kind not in "iu":
        raise TargetError(f"class indices must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_nonnegative(indices: Sequence[int]) -> None:
    bad = [i for i in indices if i < 0]
    if bad:
        raise TargetError(f"class indices must be >= 0, got {bad[0]}")


def check_class_range(indices: np.ndarray, n_outputs: int) -> None:
    """Raise :class:`TargetError` if a class index is not below ``n_outputs`` (a single
    output has the two classes 0 and 1, see the module docstring)."""
    n_outputs = 2 if n_outputs == 1 else n_outputs
    if len(indices) and int(indices.max()) >= n_outputs:
        raise TargetError(
            f"target class {int(indices.max())} is out of range: the model has "
            f"{n_outputs} outputs (valid classes 0..{n_outputs - 1})")


def describe(target: TargetSpec) -> Any:
    """A short, display-friendly form of a resolved target (for titles and reports)."""
    if isinstance(target, ClassTarget):
        values = np.unique(target.indices)
        return int(values[0]) if len(values) == 1 else target.indices.tolist()
    if isinstance(target, NeuronTarget):
        return f"neuron {target.layer}{list(target.index)}"
    if isinstance(target, ChannelTarget):
        return f"channel {target.layer}[{target.channel}]"
    if isinstance(target, ScoreTarget):
        return getattr(target.fn, "__name__", "score")
    if isinstance(target, ObjectiveTarget):
        return "objective"
    return "predicted"


def call_score(fn: Callable[[Any], Any], outputs: Any) -> Any:
    """``fn(outputs)`` for a callable target; an exception it raises is a TargetError."""
    from .errors import CrosslensError
    try:
        return fn(outputs)
    except CrosslensError:
        raise
    except Exception as error:
        raise TargetError(f"the target callable raised {type(error).__name__}: {error}. It "
                          "receives the model's outputs (a tensor of the model's framework) "
                          "and must return one score per sample") from error


def class_output_message(shape: tuple) -> str:
    """Message for class targets on outputs that are not (batch, classes)."""
    return (f"class targets need outputs of shape (batch, classes); this model returns "
            f"{tuple(shape)}. Pass target=callable(outputs) -> (batch,) instead")


# --- single-output (binary) classifiers ------------------------------------------------

def binary_kind(outputs: np.ndarray, final: str | None) -> str:
    """``"logit"`` or ``"probability"`` for single-output ``outputs`` (see the module
    docstring). ``final`` is what the backend knows of the model's last operation:
    ``"sigmoid"``, ``"linear"`` or ``None``."""
    if final == "sigmoid":
        return "probability"
    if final == "linear" or ((outputs < 0) | (outputs > 1)).any():
        return "logit"
    raise TargetError(
        "this model has a single output whose values are all in [0, 1], and crosslens "
        "cannot tell whether it is a probability (class 1 above 0.5) or a logit (class 1 "
        "above 0). Pass the classes explicitly: target=1 explains the output, target=0 "
        "its negation; e.g. target=(outputs[:, 0] > 0.5).astype(int) for a probability")


def predicted_classes(outputs: np.ndarray, final: str | None = None) -> np.ndarray:
    """The predicted class of each sample from ``(N, classes)`` outputs (int64)."""
    if outputs.ndim != 2:
        raise TargetError(class_output_message(outputs.shape))
    if outputs.shape[1] == 1:
        threshold = 0.5 if binary_kind(outputs, final) == "probability" else 0.0
        return (outputs[:, 0] > threshold).astype(np.int64)
    return outputs.argmax(axis=1).astype(np.int64)
