"""The backend interface: the few primitives every method is written against.

A backend wraps one user model and implements, natively in the model's framework:

- :meth:`Backend.prepare` / :meth:`Backend.restore`: user array <-> native tensor on the
  model's device (validating layout, rank and values on the way in);
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
session ends, also when it ends with an error.
"""
from __future__ import annotations

import abc
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..core.arrays import to_numpy
from ..core.chunking import CPU_PASS_BYTES, DEFAULT_BUDGET, chunk_size, chunks
from ..core.errors import LayerNotFoundError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.targets import TargetSpec

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
        :func:`crosslens.viz.resize_bilinear` (and ``torch.nn.functional.interpolate``)."""

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
    #: Capabilities from :data:`crosslens.core.registry.CAPABILITIES`.
    capabilities: ClassVar[frozenset[str]]

    def __init__(self, model: Any) -> None:
        # Weak: the backend is cached per model, and must not keep the model alive.
        self._model_ref = weakref.ref(model)
        self.budget = DEFAULT_BUDGET
        #: Cap on one pass's estimated memory (bytes); ``"auto"``: :data:`CPU_PASS_BYTES`
        #: when the model runs on the CPU, none on an accelerator; ``None``: no cap.
        self.pass_bytes: int | str | None = "auto"
        self._bytes_per_sample: dict[tuple, int] = {}
        self._shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}

    @property
    def model(self) -> Any:
        return self._model_ref()

    def runs_on_cpu(self) -> bool:
        """Whether the model runs on the host CPU (then passes are capped, see
        :meth:`pass_size`)."""
        return True

    # --- description -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def ops(self) -> ArrayOps: ...

    @property
    @abc.abstractmethod
    def layout(self) -> str | None:
        """``"channels_first"``, ``"channels_last"`` or ``None`` for non-image models."""

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
        """Canonical name of a layer given by name or object; unknown ones list close names."""
        names = self.layer_names()
        if isinstance(layer, str):
            if layer in names:
                return layer
            raise LayerNotFoundError(unknown_name_message("layer", layer, names))
        found = self._find_layer_object(layer)
        if found is None:
            raise LayerNotFoundError(
                f"layer object {type(layer).__name__} is not part of this model; "
                f"address layers by name, e.g. one of {names[:8]}")
        return found

    # --- session: scoped model state --------------------------------------------------
    @contextmanager
    def session(self, budget: int | None = None) -> Iterator["Backend"]:
        """Scope in which primitives may run; restores the model afterwards."""
        previous = self.budget
        if budget is not None:
            self.budget = budget
        try:
            with self._model_state():
                yield self
        finally:
            self.budget = previous

    @contextmanager
    def _model_state(self) -> Iterator[None]:
        yield

    # --- data ----------------------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, x: Any) -> Native:
        """Validate a user batch and convert it to a native array on the model's device."""

    @abc.abstractmethod
    def restore(self, native: Native, like: Any) -> Any:
        """Convert a native result to the array type (and device, dtype) of ``like``."""

    def prepare_aux(self, array: Any) -> Native:
        """Convert an auxiliary user array (a baseline, noise) to a native array."""
        return self.ops.asarray(to_numpy(array))

    # --- primitives -----------------------------------------------------------------------
    def forward(self, x: Native) -> Native:
        """Model outputs for ``x`` (no gradients), chunked to the memory budget."""
        size = self.pass_size(x, backward=False)
        return self.ops.concat([self._forward(x[a:b]) for a, b in chunks(len(x), size)])

    def gradient(self, x: Native, target: TargetSpec, *, wrt: str | None = None,
                 rule: str | None = None, capture: Sequence[str] = (),
                 replace: dict[str, Native] | None = None) -> GradientResult:
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
            ``None`` (true gradient), ``"guided"`` or ``"deconv"``: the backward rule of
            every ReLU in the model, scoped to this call.
        capture
            Layer names whose outputs are returned in ``activations``.
        replace
            ``{layer: values}``: the layer's output is replaced by ``values`` (batch
            aligned with ``x``) in this pass.
        """
        capture = tuple(dict.fromkeys(list(capture) + ([wrt] if wrt else [])))
        # a target that compares the samples (diversity) is split only if memory forces it
        coupled = getattr(target, "couples_batch", False)
        size = (self.max_batch if coupled else self.pass_size)(x, backward=True)
        if size >= len(x):
            return self._gradient(x, target, wrt, rule, capture, replace)
        parts = []
        for a, b in chunks(len(x), size):
            part_replace = {k: v[a:b] for k, v in (replace or {}).items()} or None
            parts.append(self._gradient(x[a:b], target.take(a, b), wrt, rule, capture,
                                        part_replace))
        cat = self.ops.concat
        outputs = None if parts[0].outputs is None else cat([p.outputs for p in parts])
        return GradientResult(
            cat([p.grad for p in parts]), outputs, cat([p.scores for p in parts]),
            {k: cat([p.activations[k] for p in parts]) for k in capture})

    def activations(self, x: Native, layers: Sequence[str]) -> dict[str, Native]:
        """Outputs of the named layers for ``x`` (no gradients), chunked."""
        size = self.pass_size(x, backward=False)
        parts = [self._activations(x[a:b], tuple(layers)) for a, b in chunks(len(x), size)]
        return {k: self.ops.concat([p[k] for p in parts]) for k in layers}

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
        key = tuple(self.ops.shape(x)[1:])
        if key not in self._bytes_per_sample:
            self._bytes_per_sample[key] = self._estimate_bytes_per_sample(x[:1])
        return self._bytes_per_sample[key]

    # --- model copies (sanity checks) ---------------------------------------------------------
    def parameter_layers(self) -> list[str]:
        """Names of the layers that own trainable parameters, in model order."""
        raise UnsupportedError(f"the {self.name} backend cannot list parameter layers")

    def randomized_copy(self, layers: Sequence[str], seed: int | None = None) -> Any:
        """A copy of the model with the parameters of ``layers`` redrawn at random.

        The model itself is never modified. See :mod:`crosslens.backends.randomize`
        for the draws (seeded per layer, same values for PyTorch and Keras).
        """
        raise UnsupportedError(f"the {self.name} backend cannot copy models")

    # --- layer shapes -------------------------------------------------------------------
    def layer_shapes(self, x: Native) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every layer that ran on ``x[:1]``, in execution order
        (a container after its children); layers whose output is not one tensor are left out.
        """
        key = tuple(self.ops.shape(x)[1:])
        if key not in self._shapes:
            self._shapes[key] = self._layer_shapes(x[:1])
        return dict(self._shapes[key])

    def spatial_layers(self, x: Native) -> list[str]:
        """Layers with an image-like output (rank 4, more than one spatial position), in
        execution order: the candidates for class activation maps."""
        axes = (2, 3) if self.layout == "channels_first" else (1, 2)
        return [name for name, shape in self.layer_shapes(x).items()
                if len(shape) == 3 and shape[axes[0] - 1] * shape[axes[1] - 1] > 1]

    def _layer_shapes(self, x1: Native) -> dict[str, tuple[int, ...]]:
        raise UnsupportedError(f"the {self.name} backend cannot list layer shapes")

    # --- to implement per framework ---------------------------------------------------------
    @abc.abstractmethod
    def _forward(self, x: Native) -> Native: ...

    @abc.abstractmethod
    def _gradient(self, x: Native, target: TargetSpec, wrt: str | None, rule: str | None,
                  capture: tuple[str, ...], replace: dict[str, Native] | None
                  ) -> GradientResult: ...

    @abc.abstractmethod
    def _activations(self, x: Native, layers: tuple[str, ...]) -> dict[str, Native]: ...

    @abc.abstractmethod
    def _estimate_bytes_per_sample(self, x1: Native) -> int: ...
