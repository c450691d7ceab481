"""Objectives: per-sample scores of a model that feature visualization maximizes.

An :class:`Objective` is a small expression tree over the model's layer activations and
outputs. Leaves are :func:`neuron`, :func:`channel`, :func:`layer` (DeepDream),
:func:`class_logit`, :func:`class_prob`, :func:`direction`, :func:`diversity` and
:func:`custom`; objectives compose with ``+ - * /`` and scalars, as in Lucid/Lucent::

    obj = channel("conv2", 3) - 0.5 * layer("conv1") + 10 * diversity("conv2")

Every objective returns one score per sample, and is *maximized*. It is evaluated inside
the backend's own differentiation (:class:`~crosslens.core.targets.ObjectiveTarget`),
written with :class:`~crosslens.core.backend.ArrayOps` on native arrays, so the same
objective runs on PyTorch and Keras models. Channel axes follow the model's layout (1 for
PyTorch, last for Keras); spatial positions are ``(y, x)`` in both.

Per-sample arguments (a list with one channel or class per sample) make one batch
visualize several units at once.
"""
from __future__ import annotations

import hashlib
import numbers
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core.errors import OptionError, TargetError
from ..core.scoring import unit_score
from ..core.targets import (Channel, ChannelTarget, Neuron, NeuronTarget,
                            ObjectiveTarget)

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


class _Env:
    """What a leaf sees while the backend evaluates the objective."""

    def __init__(self, ops, acts: dict, outputs: Any, names: dict, channels_first: bool,
                 rows: tuple[int, int] | None, batch: int) -> None:
        self.ops, self.acts, self.outputs = ops, acts, outputs
        self.names, self.channels_first, self.rows = names, channels_first, rows
        self.batch = batch  # the whole batch's size (static, also while tracing)

    def act(self, ref: Any) -> Any:
        return self.acts[self.names[_ref_key(ref)]]

    def channel_axis(self, array: Any) -> int:
        rank = len(array.shape)
        return 1 if (self.channels_first or rank == 2) else rank - 1

    @property
    def layout(self) -> str:
        return "channels_first" if self.channels_first else "channels_last"

    def rows_of(self, values: np.ndarray) -> np.ndarray:
        return values if self.rows is None else values[self.rows[0]:self.rows[1]]

    def single_output(self) -> Any:
        out = self.outputs
        if isinstance(out, (list, tuple)) and len(out) == 1:
            out = out[0]
        if isinstance(out, (list, tuple, dict)):
            raise TargetError("class objectives need a model with one output tensor; pass "
                              "layer='logits layer' to read the logits from a layer instead")
        return out


class Objective:
    """A per-sample score of the model, maximized by :func:`crosslens.visualize`.

    Build objectives with the module functions and combine them with ``+ - * /`` and
    numbers. ``str(objective)`` describes it.
    """

    #: whether the score of one sample depends on the other samples (diversity)
    couples_batch = False

    # --- to implement per node ---------------------------------------------------------
    def _refs(self) -> list:
        """The layer references (names or objects) the objective reads."""
        raise NotImplementedError

    def _key(self, names: dict) -> tuple:
        """A hashable description of the computation, with canonical layer names."""
        raise NotImplementedError

    def _eval(self, env: _Env) -> Any:
        raise NotImplementedError

    def _per_sample(self) -> list[np.ndarray]:
        """Per-sample constant arrays (to check their length against the batch)."""
        return []

    def _reads_outputs(self) -> bool:
        """Whether the objective reads the model's outputs."""
        return False

    # --- arithmetic ----------------------------------------------------------------------
    def _combine(self, other: Any, op: str, swap: bool = False) -> "Objective":
        if not isinstance(other, (Objective, numbers.Real)):
            return NotImplemented
        other = other if isinstance(other, Objective) else _Const(float(other))
        return _BinOp(op, other, self) if swap else _BinOp(op, self, other)

    def __add__(self, other): return self._combine(other, "+")
    def __radd__(self, other): return self._combine(other, "+", swap=True)
    def __sub__(self, other): return self._combine(other, "-")
    def __rsub__(self, other): return self._combine(other, "-", swap=True)
    def __mul__(self, other): return self._combine(other, "*")
    def __rmul__(self, other): return self._combine(other, "*", swap=True)
    def __truediv__(self, other): return self._combine(other, "/")
    def __rtruediv__(self, other): return self._combine(other, "/", swap=True)

    def __neg__(self) -> "Objective":
        return _BinOp("*", _Const(-1.0), self)

    def __repr__(self) -> str:
        return f"Objective({self})"


class _Const(Objective):
    def __init__(self, value: float) -> None:
        self.value = value

    def _refs(self): return []
    def _key(self, names): return ("const", self.value)
    def _eval(self, env): return self.value
    def __str__(self): return f"{self.value:g}"


class _BinOp(Objective):
    def __init__(self, op: str, a: Objective, b: Objective) -> None:
        self.op, self.a, self.b = op, a, b
        self.couples_batch = a.couples_batch or b.couples_batch

    def _refs(self): return self.a._refs() + self.b._refs()
    def _reads_outputs(self): return self.a._reads_outputs() or self.b._reads_outputs()
    def _key(self, names): return (self.op, self.a._key(names), self.b._key(names))
    def _per_sample(self): return self.a._per_sample() + self.b._per_sample()

    def _eval(self, env):
        result = _OPS[self.op](self.a._eval(env), self.b._eval(env))
        if isinstance(result, float):  # two constants: still one score per sample
            raise OptionError("an objective needs at least one model term, not only numbers")
        return result

    def __str__(self):
        a, b = str(self.a), str(self.b)
        if self.op in "*/":
            a = f"({a})" if isinstance(self.a, _BinOp) and self.a.op in "+-" else a
            b = f"({b})" if isinstance(self.b, _BinOp) else b
        elif self.op == "-" and isinstance(self.b, _BinOp) and self.b.op in "+-":
            b = f"({b})"
        return f"{a} {self.op} {b}"


class _Leaf(Objective):
    """A leaf reading one layer (``ref``) or the outputs (``ref is None``)."""

    kind = "leaf"

    def __init__(self, ref: Any, params: tuple, arrays: Sequence[np.ndarray] = ()) -> None:
        self.ref, self.params, self.arrays = ref, params, list(arrays)

    def _refs(self):
        return [] if self.ref is None else [self.ref]

    def _reads_outputs(self):
        return self.ref is None

    def _key(self, names):
        layer = None if self.ref is None else names[_ref_key(self.ref)]
        return (self.kind, layer, self.params, tuple(_array_key(a) for a in self.arrays))

    def source(self, env: _Env) -> Any:
        return env.single_output() if self.ref is None else env.act(self.ref)

    def _label(self) -> str:
        return "outputs" if self.ref is None else _ref_label(self.ref)


class _NeuronObjective(_Leaf):
    kind = "neuron"

    def __init__(self, ref, channel: int, x: int | None, y: int | None) -> None:
        super().__init__(ref, (int(channel), x, y))

    def _eval(self, env):
        a = self.source(env)
        channel, x, y = self.params
        rank, caxis = len(a.shape), env.channel_axis(a)
        spatial = [int(a.shape[i]) for i in range(1, rank) if i != caxis]
        if rank == 2:
            position: tuple[int, ...] = ()
        elif rank == 3:  # sequences: one position axis
            position = (spatial[0] // 2 if x is None else x,)
        elif rank == 4:
            (h, w) = spatial
            position = (h // 2 if y is None else y, w // 2 if x is None else x)
            if not (-h <= position[0] < h and -w <= position[1] < w):
                raise TargetError(f"position (y={position[0]}, x={position[1]}) is outside "
                                  f"the {h}x{w} map of layer {self._label()}")
        else:
            raise TargetError(f"neuron objectives need rank 2-4 activations, got rank {rank}")
        index = (channel,) + position if caxis == 1 else position + (channel,)
        return unit_score(env.ops, a, NeuronTarget(self._label(), index), env.layout)

    def __str__(self):
        channel, x, y = self.params
        where = "" if x is None and y is None else f", x={x}, y={y}"
        return f"neuron({self._label()}, {channel}{where})"


class _IndexObjective(_Leaf):
    """``cl.Neuron(layer, index)``: an index in the layer's native layout."""

    kind = "index"

    def _eval(self, env):
        return unit_score(env.ops, self.source(env), NeuronTarget(self._label(), self.params),
                          env.layout)

    def __str__(self):
        return f"neuron({self._label()}, {list(self.params)})"


def _select(env: _Env, a: Any, values: np.ndarray) -> Any:
    """``a[i, values[i]]`` of a ``(N, units)`` array: per-sample units, as class targets
    pick their scores (:func:`crosslens.core.scoring.score`)."""
    rows = env.rows_of(values)
    n_units = int(a.shape[1])
    if rows.max(initial=0) >= n_units or rows.min(initial=0) < -n_units:
        raise TargetError(f"unit {int(rows.max())} is out of range: the layer has {n_units}")
    return env.ops.gather_rows(a, env.ops.as_integer(rows % n_units))


class _ChannelObjective(_Leaf):
    kind = "channel"

    def __init__(self, ref, channel) -> None:
        if np.ndim(channel) == 0:
            super().__init__(ref, (int(channel),))
        else:
            super().__init__(ref, ("per-sample",), [np.asarray(channel, dtype=np.int64)])

    def _per_sample(self):
        return self.arrays

    def _eval(self, env):
        a = self.source(env)
        rank, caxis = len(a.shape), env.channel_axis(a)
        spatial = tuple(i for i in range(1, rank) if i != caxis)
        if self.arrays:
            means = env.ops.mean(a, axis=spatial) if spatial else a  # (N, C)
            return _select(env, means, self.arrays[0])
        return unit_score(env.ops, a, ChannelTarget(self._label(), self.params[0]), env.layout)

    def __str__(self):
        which = self.params[0] if not self.arrays else self.arrays[0].tolist()
        return f"channel({self._label()}, {which})"


class _LayerObjective(_Leaf):
    kind = "layer"

    def _eval(self, env):
        a = self.source(env)
        return env.ops.mean(a * a, axis=tuple(range(1, len(a.shape))))

    def __str__(self):
        return f"layer({self._label()})"


class _ClassObjective(_Leaf):
    kind = "class"

    def __init__(self, ref, classes, prob: bool, log: bool) -> None:
        arrays = [np.asarray(classes, dtype=np.int64)] if np.ndim(classes) else []
        params = (("per-sample",) if arrays else (int(classes),)) + (prob, log)
        super().__init__(ref, params, arrays)

    def _per_sample(self):
        return self.arrays

    def _eval(self, env):
        logits = self.source(env)
        if len(logits.shape) != 2:
            raise TargetError(f"class objectives need (N, classes) values; got shape "
                              f"{tuple(logits.shape)}: pass layer= to name the logits layer")
        prob, log = self.params[-2:]
        ops = env.ops
        if prob:  # log-softmax, shifted by the max for stability
            shifted = logits - ops.max(logits, axis=1, keepdims=True)
            logits = shifted - ops.log(ops.sum(ops.exp(shifted), axis=1, keepdims=True))
        if self.arrays:
            score = _select(env, logits, self.arrays[0])
        else:
            score = logits[:, self.params[0]]
        return ops.exp(score) if prob and not log else score

    def __str__(self):
        which = self.params[0] if not self.arrays else self.arrays[0].tolist()
        prob, log = self.params[-2:]
        name = ("class_logprob" if log else "class_prob") if prob else "class_logit"
        where = "" if self.ref is None else f", layer={self._label()}"
        return f"{name}({which}{where})"


class _DirectionObjective(_Leaf):
    kind = "direction"

    def __init__(self, ref, vector: np.ndarray) -> None:
        super().__init__(ref, (), [np.asarray(vector, dtype=np.float64).reshape(-1)])

    def _eval(self, env):
        a = self.source(env)
        rank, caxis = len(a.shape), env.channel_axis(a)
        vector = self.arrays[0]
        if int(a.shape[caxis]) != len(vector):
            raise TargetError(f"the direction has {len(vector)} entries; layer "
                              f"{self._label()} has {int(a.shape[caxis])} channels")
        shape = [1] * rank
        shape[caxis] = len(vector)
        dots = env.ops.sum(a * env.ops.asarray(vector.reshape(shape)), axis=caxis)
        return env.ops.mean(dots, axis=tuple(range(1, rank - 1))) if rank > 2 else dots

    def __str__(self):
        return f"direction({self._label()}, {len(self.arrays[0])}-vector)"


class _DiversityObjective(_Leaf):
    kind = "diversity"
    couples_batch = True

    def _eval(self, env):
        if env.rows is not None:
            raise TargetError("diversity compares the samples of one batch and cannot be "
                              "chunked: raise memory_budget or visualize fewer images")
        ops, a = env.ops, self.source(env)
        rank, caxis = len(a.shape), env.channel_axis(a)
        channels = int(a.shape[caxis])
        if rank == 2:
            feats = ops.reshape(a, (-1, 1, channels))
        elif caxis == 1:  # (N, C, ...) -> (N, P, C)
            feats = ops.transpose(ops.reshape(a, (-1, channels, _positions(a, caxis))),
                                  (0, 2, 1))
        else:
            feats = ops.reshape(a, (-1, _positions(a, caxis), channels))
        gram = ops.matmul(ops.transpose(feats, (0, 2, 1)), feats)  # (N, C, C)
        gram = ops.reshape(gram, (-1, channels * channels))
        gram = gram / (ops.sqrt(ops.sum(gram * gram, axis=1, keepdims=True)) + 1e-10)
        similarity = ops.matmul(gram, ops.transpose(gram, (1, 0)))  # (N, N), diagonal 1
        others = ops.sum(similarity, axis=1) - ops.sum(gram * gram, axis=1)
        return others * (-1.0 / env.batch)

    def __str__(self):
        return f"diversity({self._label()})"


def _positions(a: Any, caxis: int) -> int:
    count = 1
    for i, size in enumerate(a.shape):
        if i not in (0, caxis):
            count *= int(size)
    return count


class _CustomObjective(_Leaf):
    kind = "custom"

    def __init__(self, fn: Callable, refs: Sequence[Any], name: str | None) -> None:
        super().__init__(None, (id(fn),))
        self.fn, self.custom_refs, self.name = fn, list(refs), name

    def _refs(self):
        return list(self.custom_refs)

    def _reads_outputs(self):
        return True

    def _key(self, names):
        return ("custom", self.params, tuple(names[_ref_key(r)] for r in self.custom_refs))

    def _eval(self, env):
        acts = {}
        for ref in self.custom_refs:
            value = env.act(ref)
            acts[env.names[_ref_key(ref)]] = value
            if isinstance(ref, str):
                acts[ref] = value
        return self.fn(env.ops, acts, env.outputs)

    def __str__(self):
        return self.name or getattr(self.fn, "__name__", "custom")


# --- public constructors -------------------------------------------------------------------

def neuron(layer: Any, channel: int, x: int | None = None, y: int | None = None) -> Objective:
    """One unit: channel ``channel`` of ``layer`` at spatial position ``(y, x)``.

    The position defaults to the centre of the map (Lucid's ``neuron``); for a dense layer
    the unit is ``activation[:, channel]``.
    """
    return _NeuronObjective(layer, channel, x, y)


def channel(layer: Any, channel: int | Sequence[int]) -> Objective:
    """Mean activation of a channel over all positions; a list gives one channel per
    sample (e.g. one batch visualizing several filters)."""
    return _ChannelObjective(layer, channel)


def layer(layer: Any) -> Objective:
    """DeepDream's objective: the mean squared activation of the whole layer."""
    return _LayerObjective(layer, ())



def class_logit(cls: int | Sequence[int], layer: Any = None) -> Objective:
    """The logit of class ``cls`` (a list: one class per sample). ``layer`` reads the
    logits from a named layer (for a model whose output is already a softmax)."""
    return _ClassObjective(layer, cls, prob=False, log=False)


def class_prob(cls: int | Sequence[int], layer: Any = None, log: bool = False) -> Objective:
    """Softmax probability of class ``cls`` computed from the logits (outputs, or
    ``layer``); ``log=True`` gives the log-probability, a better-conditioned objective."""
    return _ClassObjective(layer, cls, prob=True, log=log)


def direction(layer: Any, vector: Any) -> Objective:
    """Mean over positions of the dot product of the activation vector with ``vector``
    (a direction in the layer's channel space, e.g. a concept activation vector)."""
    return _DirectionObjective(layer, np.asarray(vector))


def diversity(layer: Any) -> Objective:
    """Batch diversity (Olah et al. 2017): minus the mean cosine similarity of each
    sample's Gram matrix of ``layer`` to the other samples' Gram matrices.

    Higher is more diverse; add it to another objective with a weight, e.g.
    ``channel(l, 3) + 10 * diversity(l)``. It couples the batch, which is therefore
    evaluated in one pass.
    """
    return _DiversityObjective(layer, ())


def custom(fn: Callable[[Any, dict, Any], Any], layers: Sequence[Any] = (),
           name: str | None = None) -> Objective:
    """An objective from ``fn(ops, activations, outputs) -> (N,)`` on native arrays.

    ``activations`` maps each of ``layers`` (by the name given and by canonical name) to
    its output; ``ops`` is the backend's :class:`~crosslens.core.backend.ArrayOps`.
    The function must only use ``ops`` and the arithmetic operators to stay
    framework-neutral.
    """
    return _CustomObjective(fn, layers, name)


def as_objective(value: Any) -> Objective:
    """An :class:`Objective` from an objective, a class index (logit), a layer name
    (DeepDream), ``cl.Channel`` / ``cl.Neuron``, or a callable ``score(outputs)``."""
    if isinstance(value, Objective):
        return value
    if isinstance(value, (bool, np.bool_)):
        raise OptionError("an objective cannot be a bool")
    if isinstance(value, (int, np.integer)):
        return class_logit(int(value))
    if isinstance(value, str):
        return layer(value)
    if isinstance(value, Channel):
        return channel(value.layer, value.channel)
    if isinstance(value, Neuron):
        index = (value.index,) if np.ndim(value.index) == 0 else tuple(value.index)
        return _IndexObjective(value.layer, tuple(int(i) for i in index))
    if callable(value):
        return custom(lambda ops, acts, outputs: value(outputs),
                      name=getattr(value, "__name__", "score"))
    raise OptionError(
        f"cannot make an objective of {type(value).__name__}: use crosslens.featurevis "
        "objectives (channel, neuron, layer, class_logit, ...), a class index, a layer "
        "name, cl.Channel / cl.Neuron, or a callable on the outputs")


def build_target(objective: Objective, resolve: Callable[[Any], str], channels_first: bool,
                 batch: int) -> ObjectiveTarget:
    """The backend target evaluating ``objective`` (layers resolved by ``resolve``).

    Parameters
    ----------
    objective
        The objective.
    resolve
        The backend's layer resolver (name or object -> canonical name).
    channels_first
        Whether the model's activations put channels on axis 1.
    batch
        The number of images; per-sample arguments must have this length.
    """
    names = {_ref_key(ref): resolve(ref) for ref in objective._refs()}
    for values in objective._per_sample():
        if len(values) != batch:
            raise OptionError(f"a per-sample objective argument has {len(values)} entries "
                              f"for a batch of {batch}: give one per image")
    layers = tuple(sorted(set(names.values())))
    base_key = ("featurevis", objective._key(names), channels_first, batch)
    chunkable = not objective._per_sample() and not objective.couples_batch

    def make(rows: tuple[int, int] | None) -> ObjectiveTarget:
        def fn(ops, acts, outputs):
            env = _Env(ops, acts, outputs, names, channels_first, rows, batch)
            return objective._eval(env)

        def slicer(start: int, stop: int) -> ObjectiveTarget:
            if objective.couples_batch:  # raised here, before any tracing
                raise TargetError("diversity compares the samples of one batch and cannot "
                                  "be chunked: raise memory_budget or visualize fewer images")
            offset = 0 if rows is None else rows[0]
            return make((offset + start, offset + stop))

        return ObjectiveTarget(layers, fn, base_key + (rows,),
                               None if chunkable else slicer, objective.couples_batch)

    return make(None)


def _ref_key(ref: Any) -> Any:
    return ref if isinstance(ref, str) else ("object", id(ref))


def _ref_label(ref: Any) -> str:
    return ref if isinstance(ref, str) else type(ref).__name__


def _array_key(array: np.ndarray) -> tuple:
    return (array.shape, str(array.dtype), hashlib.sha1(np.ascontiguousarray(array)).hexdigest())
