"""The backend interface: the few primitives every method is written against.

A backend wraps one user model and implements, natively in the model's framework:

- :meth:`Backend.prepare` / :meth:`Backend.restore`: user array <-> native tensor on the
  model's device (validating layout, rank, dtype and values on the way in); several
  inputs are flattened into one batch (:mod:`crosslens.core.structure`), integer ids are
  kept as they are;
- :meth:`Backend.forward`: model outputs, without gradients;
- :meth:`Backend.gradient`: gradient of a target score w.r.t. the input or a named layer,
  optionally under a ReLU rule (``"guided"``, ``"deconv"``), capturing named layers'
  activations in the same pass, or with a layer's output replaced by given values;
- :meth:`Backend.activations`: values at named layers;
- :attr:`Backend.ops`: an array-ops namespace so methods compute on the device.

Methods never see framework objects other than opaque native arrays that support the
arithmetic operators (``+ - * /`` with broadcasting) and the :class:`ArrayOps` functions.

Every primitive is chunked to the memory budget in :meth:`Backend.session` and, on a
CPU, to the smaller passes that run faster there (:meth:`Backend.pass_size`); the model
is left exactly as it was (mode, ``requires_grad``, hooks, patched attributes) when the
session ends, also when it ends with an error. A session holds the model's lock, so calls
on one model are serialized. Outputs, scores, gradients and activations are checked for
NaN / infinity in every pass (:meth:`Backend.check_finite`), naming the first layer that
produces them. Layers that run several times per pass are addressed per call,
``"name#k"`` (:meth:`Backend.resolve_layer`).
"""
from __future__ import annotations

import abc
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .arrays import to_numpy
from .chunking import CPU_PASS_BYTES, DEFAULT_BUDGET, chunk_size, chunks
from .checks import check_finite
from .errors import (InputError, LayerNotFoundError, ModelError, NonFiniteError,
                     UnsupportedError)
from .names import unknown_name_message
from .rules import Rule, get_rule
from .structure import InputStructure, structure_of
from .targets import TargetSpec

Native = Any  # a framework tensor (torch.Tensor, tf.Tensor, ...)


@dataclass
class GradientResult:
    """What one differentiation pass returns (all native arrays)."""

    grad: Native
    outputs: Native | None  # None when the model returns several tensors
    scores: Native  # the target score of each sample, shape (N,)
    activations: dict[str, Native] = field(default_factory=dict)


class ArrayOps(abc.ABC):
    """Array operations on native arrays, implemented per framework."""

    @abc.abstractmethod
    def asarray(self, array: np.ndarray) -> Native: ...
    @abc.abstractmethod
    def to_numpy(self, array: Native) -> np.ndarray: ...
    @abc.abstractmethod
    def concat(self, arrays: Sequence[Native], axis: int = 0) -> Native: ...
    @abc.abstractmethod
    def stack(self, arrays: Sequence[Native], axis: int = 0) -> Native: ...
    @abc.abstractmethod
    def sum(self, array: Native, axis: Any = None, keepdims: bool = False) -> Native: ...
    @abc.abstractmethod
    def mean(self, array: Native, axis: Any = None, keepdims: bool = False) -> Native: ...
    @abc.abstractmethod
    def reshape(self, array: Native, shape: Sequence[int]) -> Native: ...
    @abc.abstractmethod
    def zeros_like(self, array: Native) -> Native: ...
    @abc.abstractmethod
    def stop_gradient(self, array: Native) -> Native:
        """The same values, with no gradient flowing back through them."""
    @abc.abstractmethod
    def halves(self, array: Native) -> tuple[Native, Native]:
        """The first and second half of a batch (of even, possibly symbolic, size)."""
    @abc.abstractmethod
    def abs(self, array: Native) -> Native: ...
    @abc.abstractmethod
    def sqrt(self, array: Native) -> Native: ...
    @abc.abstractmethod
    def maximum(self, a: Native, b: Any) -> Native: ...
    @abc.abstractmethod
    def max(self, array: Native, axis: Any = None, keepdims: bool = False) -> Native: ...
    @abc.abstractmethod
    def min(self, array: Native, axis: Any = None, keepdims: bool = False) -> Native: ...
    @abc.abstractmethod
    def where(self, condition: Native, a: Native, b: Native) -> Native: ...
    @abc.abstractmethod
    def argmax(self, array: Native, axis: int) -> Native: ...
    @abc.abstractmethod
    def shape(self, array: Native) -> tuple[int, ...]: ...
    @abc.abstractmethod
    def transpose(self, array: Native, axes: Sequence[int]) -> Native: ...

    @abc.abstractmethod
    def resize_bilinear(self, array: Native, size: Sequence[int]) -> Native:
        """Resize ``(N, H, W)`` maps to ``(N, *size)``: bilinear, half-pixel centres
        (``align_corners=False``), no antialiasing; exactly
        :func:`crosslens.core.imageops.resize_bilinear` (and
        ``torch.nn.functional.interpolate``)."""

    def all_finite(self, array: Native) -> bool:
        """Whether every value of ``array`` is finite (no NaN, no infinity)."""
        return bool(np.isfinite(self.to_numpy(array)).all())

    def take_rows(self, array: Native, rows: np.ndarray) -> Native:
        """``array[rows]``: the batch rows of integer array ``rows`` (repeats allowed)."""
        raise UnsupportedError(f"{type(self).__name__} does not implement take_rows")

    def gather_rows(self, array: Native, index: Native) -> Native:
        """``array[i, index[i]]`` for a ``(N, K)`` array and ``N`` native integers."""
        raise UnsupportedError(f"{type(self).__name__} does not implement gather_rows")

    def as_integer(self, array: np.ndarray) -> Native:
        """An integer numpy array (token ids) as a native int64 array, never cast to float."""
        raise UnsupportedError(f"{type(self).__name__} does not implement as_integer")

    def is_integer(self, array: Native) -> bool:
        """Whether ``array`` holds integers (token ids, indices), which are never cast."""
        return self.to_numpy(array[:0]).dtype.kind in "iu"

    def repeat_batch(self, array: Native, k: int) -> Native:
        """``k`` copies of the batch stacked along axis 0 (copy-major order)."""
        return array if k == 1 else self.concat([array] * k, axis=0)

    def square(self, array: Native) -> Native:
        return array * array

    def relu(self, array: Native) -> Native:
        return self.maximum(array, 0.0)

    # Used by feature-visualization objectives (softmax, Gram matrices); not abstract, so
    # an ArrayOps without them still serves every attribution method.
    def exp(self, array: Native) -> Native:
        raise UnsupportedError(f"{type(self).__name__} does not implement exp")

    def log(self, array: Native) -> Native:
        raise UnsupportedError(f"{type(self).__name__} does not implement log")

    def matmul(self, a: Native, b: Native) -> Native:
        """Batched matrix product over the last two axes."""
        raise UnsupportedError(f"{type(self).__name__} does not implement matmul")


class Backend(abc.ABC):
    """Base class of the per-framework backends (see the module docstring)."""

    #: Framework name, as listed by ``cl.methods()``.
    name: ClassVar[str]

    #: How this backend applies each backward rule it supports, by rule name
    #: (:meth:`register_rule`, called in the backend's own file).
    _rule_appliers: ClassVar[dict[str, Callable[["Backend", Rule], Any]]] = {}

    @classmethod
    def register_rule(cls, rule: Rule, apply: Callable[["Backend", Rule], Any]) -> None:
        """Register how this backend applies ``rule``: ``apply(backend, rule)`` returns a
        context manager active for the differentiation pass (the forward and, through it,
        the backward of the score)."""
        cls._rule_appliers = {**cls._rule_appliers, rule.name: apply}

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """What this backend provides (:data:`crosslens.core.registry.CAPABILITIES`),
        derived from the class: the primitives every backend implements, plus the
        backward rules it registered (and, for LRP, the layer kinds it reports)."""
        have = {"grad", "layer_grad", "activations", "layer_override", "forward"}
        rules = set(cls._rule_appliers)
        if {"guided", "deconv"} <= rules:
            have.add("relu_override")
        if "rescale" in rules:
            have.add("rescale")
        if "lrp" in rules and cls._relevance_layers is not Backend._relevance_layers:
            have.add("relevance")
        return frozenset(have)

    @classmethod
    def rules(cls) -> list[str]:
        """Names of the backward rules this backend applies."""
        return list(cls._rule_appliers)

    def apply_rule(self, rule: Rule | str) -> Any:
        """The context manager applying ``rule`` to one pass (a clear error when this
        backend does not implement it)."""
        rule = get_rule(rule)
        apply = type(self)._rule_appliers.get(rule.name)
        if apply is None:
            raise UnsupportedError(f"the {self.name} backend does not apply the backward rule "
                                   f"{rule.name!r} ({rule.summary}); it applies: "
                                   f"{self.rules() or 'none'}")
        return apply(self, rule)

    def __init__(self, model: Any) -> None:
        # Weak: the backend is cached per model, and must not keep the model alive.
        self._model_ref = weakref.ref(model)
        self.budget = DEFAULT_BUDGET
        #: Cap on one pass's estimated memory (bytes); ``"auto"``: :data:`CPU_PASS_BYTES`
        #: when the model runs on the CPU, none on an accelerator; ``None``: no cap.
        self.pass_bytes: int | str | None = "auto"
        #: The model's lock (:func:`crosslens.backends.model_lock` sets the shared one).
        self.lock = threading.RLock()
        #: Structure of the current call's input (several inputs), ``None`` for one array.
        self.structure: InputStructure | None = None
        self._current: Native | None = None  # the current call's first sample
        self._depth = 0
        self._bytes_per_sample: dict[tuple, int] = {}
        self._calls: dict[tuple, list[tuple[str, int, tuple[int, ...] | None]]] = {}
        self._stamp: Any = None

    @property
    def model(self) -> Any:
        return self._model_ref()

    def runs_on_cpu(self) -> bool:
        """Whether the model runs on the host CPU (then passes are capped, see
        :meth:`pass_size`)."""
        return True

    # --- validity of cached state --------------------------------------------------
    def fingerprint(self) -> Any:
        """A cheap value that changes whenever state this backend caches would go stale
        (the model's layers, dtypes, devices, activations). Compared on every call."""
        return None

    def stamp(self) -> None:
        """Record the fingerprint this backend's cached state was built for."""
        self._stamp = self.fingerprint()

    def is_current(self) -> bool:
        """Whether the model is still the one this backend was built for."""
        return self.model is not None and self.fingerprint() == self._stamp

    # --- description -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def ops(self) -> ArrayOps: ...

    @property
    @abc.abstractmethod
    def layout(self) -> str | None:
        """The model's image layout: ``"channels_first"``, ``"channels_last"`` or ``None``
        when it has no image input (used by feature visualization and the CLI)."""

    def input_layout(self, shape: Sequence[int]) -> str | None:
        """Layout of an input batch of ``shape`` by its role in this model: which axis holds
        the channels, or ``None`` when that cannot be known (then options that need a
        channel axis refuse rather than guess)."""
        return self.layout if len(shape) >= 3 else None

    @property
    def layer_layout(self) -> str | None:
        """Where the channel axis of the model's layer outputs is (per framework)."""
        return self.layout

    def layer_output_layout(self, rank: int) -> str | None:
        """Layout of a layer output batch of ``rank`` (``None``: no known channel axis)."""
        return self.layer_layout if rank >= 4 else None

    @abc.abstractmethod
    def layer_names(self) -> list[str]:
        """Every addressable layer name, in model order."""

    @abc.abstractmethod
    def layer_object(self, name: str) -> Any:
        """The framework's layer object for a layer name."""

    @abc.abstractmethod
    def _find_layer_object(self, layer: Any) -> str | None:
        """Name of a layer given as an object, or ``None`` if it is not in the model."""

    def resolve_layer(self, layer: Any) -> str:
        """Canonical name of a layer given by name or object; unknown ones list close names.

        ``"name#k"`` addresses the ``k``-th call (from 0; negative counts from the end) of
        a layer that runs several times in one forward pass (a shared activation module);
        ``"name#0"`` of a layer that runs once is ``"name"``.
        """
        names = self.layer_names()
        if isinstance(layer, str):
            if layer in names:
                return layer
            base, sep, index = layer.rpartition("#")
            if sep and base in names:
                return self._resolve_call(base, index)
            raise LayerNotFoundError(unknown_name_message("layer", layer, names))
        found = self._find_layer_object(layer)
        if found is None:
            raise LayerNotFoundError(
                f"layer object {type(layer).__name__} is not part of this model; "
                f"address layers by name, e.g. one of {names[:8]}")
        return found

    def _resolve_call(self, base: str, index: str) -> str:
        try:
            k = int(index)
        except ValueError:
            raise LayerNotFoundError(f"{base}#{index}: the call index after '#' must be an "
                                     f"integer, e.g. {base!r}#0 for the first call") from None
        if self._current is None:
            if k < 0:
                raise LayerNotFoundError(f"{base}#{k}: a negative call index needs the input; "
                                         "use it inside cl.explain / cl.activations")
            return base if k == 0 else f"{base}#{k}"
        count = self.call_counts(self._current).get(base, 0)
        if count == 0:
            raise LayerNotFoundError(f"layer {base!r} does not run in the forward pass for "
                                     f"this input, so it has no call #{k}")
        if not -count <= k < count:
            raise LayerNotFoundError(f"layer {base!r} runs {count} time(s) in one forward "
                                     f"pass; valid calls are {base}#0 .. {base}#{count - 1} "
                                     "(or negative indices from the end)")
        k %= count
        return base if count == 1 else f"{base}#{k}"

    # --- session: scoped model state --------------------------------------------------
    @contextmanager
    def session(self, budget: int | None = None) -> Iterator["Backend"]:
        """Scope in which primitives may run; restores the model afterwards.

        Holds the model's lock (calls on one model are serialized, see
        :func:`crosslens.backends.model_lock`); sessions nest.
        """
        with self.lock:
            previous = (self.budget, self.structure, self._current)
            if budget is not None:
                self.budget = budget
            self._depth += 1
            try:
                with self._model_state():
                    yield self
            finally:
                self._depth -= 1
                self.budget, self.structure, self._current = previous
                if self._depth == 0:
                    self._end_call()

    @contextmanager
    def _model_state(self) -> Iterator[None]:
        yield

    def _end_call(self) -> None:
        """Drop state that must not outlive one outermost call (see the Keras backend)."""

    def output_activation(self) -> str | None:
        """What the model's last operation is, when the backend can tell: ``"sigmoid"``
        or ``"linear"`` (decides whether a single output is a probability or a logit)."""
        return None

    def embedding_sizes(self) -> dict[str, int]:
        """``{layer: number of ids}`` of the layers that embed integer inputs (token ids),
        in model order."""
        return {}

    def embedding_layers(self) -> list[str]:
        """Names of the layers that embed integer inputs (token ids), in model order."""
        return list(self.embedding_sizes())

    # --- data ----------------------------------------------------------------------------
    def input_count(self) -> int | None:
        """How many inputs the model takes, when known."""
        return None

    def prepare(self, x: Any) -> Native:
        """Validate a user batch (or a tuple / list / dict of batches for a multi-input
        model) and convert it to one native array on the model's device."""
        self.structure = structure_of(x, self.input_count())
        shapes = [getattr(m, "shape", np.shape(m)) for m in (
            [x] if self.structure is None else self.structure.members(x))]
        if any(len(shape) and int(shape[0]) == 0 for shape in shapes):
            raise InputError("the input batch is empty (0 samples); give at least one sample")
        if self.structure is None:
            native = self._prepare_one(x)
            if not self.ops.is_integer(native) and self.embedding_layers():
                self._check_not_ids(native)
        else:
            natives = []
            for key, member in zip(self.structure.keys, self.structure.members(x)):
                value = self._prepare_member(member)
                if self.ops.is_integer(value):
                    raise InputError(
                        f"input {key!r} of the structure holds integers; crosslens explains "
                        "several inputs together only when all are floating point. Explain "
                        "the integer input alone, or at its embedding with layer=")
                natives.append(value)
            native = self.structure.flatten(self.ops, natives)
            self._check_runs(native)
        self._current = native[:1]
        return native

    @abc.abstractmethod
    def _prepare_one(self, x: Any) -> Native:
        """Validate one user batch and convert it to a native array."""

    def _check_not_ids(self, native: Native) -> None:
        """A model that embeds its input takes integer ids, not floats (a float batch would
        fail inside the model, or be cast to ids and lose its gradient)."""
        embeddings = self.embedding_layers()
        try:
            calls = self.layer_calls(native)
        except ModelError as error:
            raise InputError(self._ids_message(native, embeddings)) from error
        if calls and calls[0][0] in embeddings:
            raise InputError(self._ids_message(native, embeddings))

    def _ids_message(self, native: Native, embeddings: list[str]) -> str:
        return (f"this model embeds its input (embedding layer {embeddings[0]!r}), so it "
                f"takes integer ids, but the input has a floating-point dtype (shape "
                f"{tuple(self.ops.shape(native))}); pass the token ids as integers, e.g. "
                "x.astype('int64') or x.long()")

    def _prepare_ids(self, native: Native) -> Native:
        """Check an integer batch: ids for the model's embeddings (a model without one
        takes floats), in range, and accepted by the model (one sample is run)."""
        sizes = self.embedding_sizes()
        if not sizes:
            raise InputError(
                f"the input holds integers (dtype {str(native.dtype).split('.')[-1]}), but "
                "this model has no embedding layer to take ids; give floating-point values "
                "(e.g. x.astype('float32'), scaled as in training)")
        ids = self.ops.to_numpy(native)
        if ids.size and int(ids.min()) < 0:
            raise InputError(f"the integer input holds negative ids (min {int(ids.min())}); "
                             "token ids index an embedding and must be >= 0")
        if ids.size:
            top = int(ids.max())
            name, size = min(sizes.items(), key=lambda item: item[1])
            if top >= size and (len(sizes) == 1 or top >= max(sizes.values())):
                raise InputError(f"token id {top} is out of range for embedding {name!r} "
                                 f"with {size} entries (valid ids 0..{size - 1})")
        self._check_runs(native)
        return native

    def _prepare_member(self, x: Any) -> Native:
        """Convert one member of an input structure (checked only for finiteness here;
        the model's own run checks the rest)."""
        native = self.ops.asarray(x)
        if not self.ops.all_finite(native):
            check_finite(False, tuple(self.ops.shape(native)))
        return native

    def _check_runs(self, native: Native) -> None:
        """Run the model once on the first sample, so a structure that does not fit the
        model's inputs fails here with the model's own message (as a ModelError)."""
        self._forward(native[:1])

    @abc.abstractmethod
    def _restore_one(self, native: Native, like: Any) -> Any:
        """Convert one native result to the array type (and device, dtype) of ``like``."""

    def restore(self, native: Native, like: Any) -> Any:
        """Convert a native result to the array type (and device, dtype) of ``like``."""
        return self._restore_one(native, like)

    def prepare_aux(self, array: Any) -> Native:
        """Convert an auxiliary user array (a baseline, noise) to a native array; for a
        multi-input model a structure like the input is flattened like it."""
        if self.structure is not None and isinstance(array, (tuple, list, dict)):
            members = self.structure.members(array)
            natives = []
            for member, shape in zip(members, self.structure.shapes):
                value = self.ops.asarray(to_numpy(member) if hasattr(member, "shape")
                                         else np.full(shape, float(member)))
                got = tuple(self.ops.shape(value))
                if got == tuple(shape):
                    value = self.ops.reshape(value, (1,) + got)
                natives.append(value)
            n = max(self.ops.shape(v)[0] for v in natives)
            natives = [v if self.ops.shape(v)[0] == n else self.ops.repeat_batch(v, n)
                       for v in natives]
            return self.structure.flatten(self.ops, natives)
        return self.ops.asarray(to_numpy(array))

    # --- primitives -----------------------------------------------------------------------
    def forward(self, x: Native) -> Native:
        """Model outputs for ``x`` (no gradients), chunked to the memory budget."""
        size = self.pass_size(x, backward=False)
        parts = []
        for a, b in chunks(len(x), size):
            out = self._forward(x[a:b])
            self.check_finite(out, "outputs", x[a:b])
            parts.append(out)
        return self.ops.concat(parts)

    def gradient(self, x: Native, target: TargetSpec, *, wrt: str | None = None,
                 rule: str | None = None, capture: Sequence[str] = (),
                 replace: dict[str, Native] | None = None, split: bool = True
                 ) -> GradientResult:
        """Gradient of the target score of each sample.

        Parameters
        ----------
        x
            Native input batch.
        target
            Resolved target (see :mod:`crosslens.core.targets`).
        wrt
            ``None`` for the gradient w.r.t. the input, else a layer name: the gradient
            w.r.t. that layer's output (which is then also in ``activations``).
        rule
            ``None`` (true gradient) or a backward rule (:mod:`crosslens.core.rules`, an
            object or its name, e.g. ``GUIDED`` / ``"guided"``), scoped to this call.
        capture
            Layer names whose outputs are returned in ``activations``.
        replace
            ``{layer: values}``: the layer's output is replaced by ``values`` (batch
            aligned with ``x``) in this pass.
        split
            Whether ``x`` may be split into passes that fit the memory budget; ``False``
            for a batch whose rows belong together (DeepLIFT's ``[inputs; baselines]``),
            which the caller has sized.

        Raises
        ------
        NonFiniteError
            When outputs, scores or gradients hold NaN or infinity (saying where they
            first appeared).
        """
        capture = tuple(dict.fromkeys(list(capture) + ([wrt] if wrt else [])))
        rule = get_rule(rule) if rule is not None else None
        # a target that compares the samples (diversity) is split only if memory forces it
        coupled = getattr(target, "couples_batch", False)
        size = (self.max_batch if coupled else self.pass_size)(x, backward=True)
        if size >= len(x) or not split:
            return self._checked_gradient(x, target, wrt, rule, capture, replace)
        parts = []
        for a, b in chunks(len(x), size):
            part_replace = {k: v[a:b] for k, v in (replace or {}).items()} or None
            parts.append(self._checked_gradient(x[a:b], target.take(a, b), wrt, rule,
                                                capture, part_replace))
        cat = self.ops.concat
        outputs = None if parts[0].outputs is None else cat([p.outputs for p in parts])
        return GradientResult(
            cat([p.grad for p in parts]), outputs, cat([p.scores for p in parts]),
            {k: cat([p.activations[k] for p in parts]) for k in capture})

    def _checked_gradient(self, x, target, wrt, rule, capture, replace) -> GradientResult:
        result = self._gradient(x, target, wrt, rule, capture, replace)
        if result.outputs is not None:
            self.check_finite(result.outputs, "outputs", x)
        self.check_finite(result.scores, "scores", x)
        self.check_finite(result.grad, f"gradient w.r.t. {wrt!r}" if wrt else
                          "gradient w.r.t. the input", x)
        return result

    def activations(self, x: Native, layers: Sequence[str]) -> dict[str, Native]:
        """Outputs of the named layers for ``x`` (no gradients), chunked."""
        size = self.pass_size(x, backward=False)
        parts = [self._activations(x[a:b], tuple(layers)) for a, b in chunks(len(x), size)]
        values = {k: self.ops.concat([p[k] for p in parts]) for k in layers}
        for name, value in values.items():
            self.check_finite(value, f"activations of layer {name!r}", x)
        return values

    # --- non-finite values ----------------------------------------------------------------
    def check_finite(self, value: Native, what: str, x: Native) -> None:
        """Raise :class:`NonFiniteError` when ``value`` (computed from ``x``) is not finite,
        naming the samples and the layer where non-finite values first appear."""
        if self.ops.all_finite(value):
            return
        array = self.ops.to_numpy(value)
        flat = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
        bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
        samples = bad.tolist()[:8] + (["..."] if len(bad) > 8 else [])
        located = None
        if len(bad) and len(bad) <= self.ops.shape(x)[0]:
            try:
                located = self._locate_nonfinite(x[int(bad[0]):int(bad[0]) + 1])
            except Exception:  # locating is a diagnosis: never mask the real error
                located = None
        inputs = self.ops.to_numpy(x)
        scale = (f"the largest input magnitude is {np.abs(inputs).max():.3g}"
                 if inputs.size and np.isfinite(inputs).all() else "")
        if located is not None:
            where = (f"non-finite values first appear at the output of layer {located[0]!r} "
                     f"({located[1]})")
        elif what in ("scores",):
            where = ("the model's outputs are finite: the target's score itself is not "
                     "(e.g. a callable target taking the log of 0)")
        elif what.startswith("gradient"):
            where = ("the forward pass is finite: the backward pass overflows (e.g. float16) "
                     "or meets a point where the model is not differentiable (sqrt or log "
                     "at 0, 0/0)")
        else:
            where = "no named layer outputs them: they arise in the model's own code"
        raise NonFiniteError(
            f"the model's {what} hold NaN or infinite values for samples {samples}; "
            f"{where}. {scale + '. ' if scale else ''}Rescale the input to the range the "
            "model was trained on, run the model in float32/float64 rather than float16, or "
            "fix the computation that produces them")

    def _locate_nonfinite(self, x1: Native) -> tuple[str, str] | None:
        """``(layer, type)`` of the first layer, in execution order, whose output holds
        NaN or infinity for the one-sample batch ``x1``; ``None`` when none does."""
        return None

    def vjp(self, x: Native, cotangent: Native) -> Native:
        """Vector-Jacobian product: the gradient of ``sum(outputs * cotangent)`` w.r.t. ``x``.

        ``cotangent`` has the shape of the model's (single) output for ``x``; chunked to
        the memory budget. Used to differentiate through a model whose output feeds
        another computation (a generator's image, a density model's log-likelihood).
        """
        size = self.pass_size(x, backward=True)
        return self.ops.concat([self._vjp(x[a:b], cotangent[a:b])
                                for a, b in chunks(len(x), size)])

    def _vjp(self, x: Native, cotangent: Native) -> Native:
        raise UnsupportedError(f"the {self.name} backend has no vector-Jacobian product")

    def max_batch(self, x: Native, backward: bool = True, total: int | None = None) -> int:
        """How many samples shaped like ``x[0]`` fit in one pass under the budget.

        At most ``total`` (default ``len(x)``): pass the number of points a method
        wants to evaluate when it is larger than the batch (paths, masks).
        """
        per_sample = self.bytes_per_sample(x)
        if not backward:
            per_sample = max(per_sample // 2, 1)  # forward only: no saved tensors for backward
        return chunk_size(per_sample, self.budget, len(x) if total is None else total)

    def pass_size(self, x: Native, backward: bool = True, total: int | None = None) -> int:
        """How many samples shaped like ``x[0]`` to put in one pass.

        :meth:`max_batch`, and on a CPU at most what keeps a pass's estimated memory
        within :attr:`pass_bytes`: there, CNNs take longer per image in passes of many
        GiB than in small ones (``benchmarks/chunk_sweep.py``: ResNet50 and
        EfficientNet-Lite0 at 224² run fastest at 2-8 images per pass, up to 1.6x slower
        at the 11-33 the default budget allows). Results do not depend on the pass size.
        """
        size = self.max_batch(x, backward, total)
        cap = self.pass_bytes
        if cap == "auto":
            cap = CPU_PASS_BYTES if self.runs_on_cpu() else None
        if cap is None:
            return size
        return max(1, min(size, int(cap) // max(self.bytes_per_sample(x), 1)))

    def bytes_per_sample(self, x: Native) -> int:
        """Estimated peak memory of one sample's forward-backward pass (cached per shape)."""
        key = (tuple(self.ops.shape(x)[1:]), self.structure)
        if key not in self._bytes_per_sample:
            self._bytes_per_sample[key] = self._estimate_bytes_per_sample(x[:1])
        return self._bytes_per_sample[key]

    # --- model copies (sanity checks) ---------------------------------------------------------
    def weights_digest(self) -> str:
        """SHA-256 of the model's weights and buffers (names, dtypes, shapes, values): what a
        dataset store records to refuse resuming with another model."""
        import hashlib
        digest = hashlib.sha256()
        for name, array in self._named_weights():
            array = np.ascontiguousarray(array)
            digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def _named_weights(self) -> list[tuple[str, np.ndarray]]:
        raise UnsupportedError(f"the {self.name} backend cannot list the model's weights")

    def parameter_layers(self) -> list[str]:
        """Names of the layers that own trainable parameters, in model order."""
        raise UnsupportedError(f"the {self.name} backend cannot list parameter layers")

    def randomized_copy(self, layers: Sequence[str], seed: int | None = None) -> Any:
        """A copy of the model with the parameters of ``layers`` redrawn at random.

        The model itself is never modified. See :mod:`crosslens.backends.randomize`
        for the draws (seeded per layer, same values for PyTorch and Keras).
        """
        raise UnsupportedError(f"the {self.name} backend cannot copy models")

    # --- layer calls and shapes ------------------------------------------------------------
    def layer_calls(self, x: Native) -> list[tuple[str, int, tuple[int, ...] | None]]:
        """``(layer, call index, per-sample output shape or None)`` of every layer call on
        ``x[:1]``, in execution order (a container after its children; ``None`` when the
        output is not one tensor). Cached per input shape and structure."""
        key = (tuple(self.ops.shape(x)[1:]), self.structure)
        if key not in self._calls:
            self._calls[key] = self._layer_calls(x[:1])
        return list(self._calls[key])

    def call_counts(self, x: Native) -> dict[str, int]:
        """How many times each layer runs in one forward pass on ``x``."""
        counts: dict[str, int] = {}
        for name, _, _ in self.layer_calls(x):
            counts[name] = counts.get(name, 0) + 1
        return counts

    def layer_shapes(self, x: Native) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every addressable layer output on ``x[:1]``, in
        execution order: ``name`` for a layer that runs once, ``name#k`` for each call of
        one that runs several times (a shared module); outputs that are not one tensor
        are left out."""
        counts = self.call_counts(x)
        return {(name if counts[name] == 1 else f"{name}#{k}"): shape
                for name, k, shape in self.layer_calls(x) if shape is not None}

    def channel_axes(self, x: Native) -> dict[str, int]:
        """The per-sample axis of the channels (features) of every output of
        :meth:`layer_shapes`: ``0`` for channels-first maps and vectors, the last axis for
        channels-last ones. Sequences ``(T, C)`` / ``(C, T)`` depend on the layer in
        frameworks whose layers differ (PyTorch: Conv1d vs Linear / Embedding)."""
        first = self.layer_layout == "channels_first"
        return {name: 0 if first or len(shape) < 2 else len(shape) - 1
                for name, shape in self.layer_shapes(x).items()}

    def spatial_layers(self, x: Native) -> list[str]:
        """Layer outputs with an image-like shape (rank 4, more than one spatial position),
        in execution order: the candidates for class activation maps."""
        axes = (2, 3) if self.layer_layout == "channels_first" else (1, 2)
        return [name for name, shape in self.layer_shapes(x).items()
                if len(shape) == 3 and shape[axes[0] - 1] * shape[axes[1] - 1] > 1]

    def _layer_calls(self, x1: Native) -> list[tuple[str, int, tuple[int, ...] | None]]:
        raise UnsupportedError(f"the {self.name} backend cannot list layer calls")

    def relevance_layers(self, x: Native) -> list:
        """The layers of one forward pass on ``x[:1]`` as relevance propagation sees them
        (:class:`crosslens.core.relevance.LayerInfo`: kind, type, batch-norm merges), in
        execution order. Cached per input shape and structure."""
        key = ("relevance", tuple(self.ops.shape(x)[1:]), self.structure)
        if key not in self._calls:
            self._calls[key] = self._relevance_layers(x[:1])
        return list(self._calls[key])

    def _relevance_layers(self, x1: Native) -> list:
        raise UnsupportedError(f"the {self.name} backend does not implement LRP")

    # --- to implement per framework ---------------------------------------------------------
    @abc.abstractmethod
    def _forward(self, x: Native) -> Native:
        """Model outputs for one pass, without gradients (must return one tensor)."""

    @abc.abstractmethod
    def _gradient(self, x: Native, target: TargetSpec, wrt: str | None, rule: Rule | None,
                  capture: tuple[str, ...], replace: dict[str, Native] | None
                  ) -> GradientResult: ...

    @abc.abstractmethod
    def _activations(self, x: Native, layers: tuple[str, ...]) -> dict[str, Native]: ...

    @abc.abstractmethod
    def _estimate_bytes_per_sample(self, x1: Native) -> int: ...
