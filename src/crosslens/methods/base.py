"""What a method function receives and returns.

A method is ``fn(ctx: Context, **options) -> MethodResult``. It computes with
``ctx.backend`` primitives and ``ctx.ops`` on native arrays, never importing a framework.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..core.backend import Backend, GradientResult, Native
from ..core.errors import OptionError
from ..core.progress import chunks as progress_chunks
from ..core.targets import (ClassTarget, PredictedTarget, TargetSpec, binary_kind,
                            predicted_classes)


@dataclass
class MethodResult:
    """Native attributions plus what the :class:`~crosslens.Explanation` reports."""

    attributions: Native
    outputs: Native | None = None  # model outputs on the input, when computed anyway
    layer: str | None = None  # where the attributions live, for layer methods
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """The call a method serves: backend, prepared input, resolved target and settings."""

    backend: Backend
    x: Native
    target: TargetSpec
    layer: str | None = None
    seed: int | None = None
    progress: bool | None = None

    @property
    def ops(self):
        return self.backend.ops

    @property
    def n(self) -> int:
        return self.ops.shape(self.x)[0]

    @property
    def layout(self) -> str | None:
        """Layout of the input batch by its role in the model (which axis holds channels;
        ``None`` when it cannot be known, e.g. several inputs flattened together)."""
        if self.backend.structure is not None:
            return None
        return self.backend.input_layout(self.ops.shape(self.x))

    def binary_kind(self) -> str:
        """For a single-output model, whether its output is a ``"logit"`` or a
        ``"probability"`` (see :mod:`crosslens.core.targets`)."""
        outputs = self.ops.to_numpy(self.backend.forward(self.x))
        return binary_kind(outputs, self.backend.output_activation())

    def fixed_target(self) -> TargetSpec:
        """The target with ``"predicted"`` replaced by explicit classes (one forward pass).

        Needed by methods that evaluate points other than the input itself (paths,
        noise, perturbations), where the class must stay the one predicted for ``x``.
        """
        if isinstance(self.target, PredictedTarget):
            outputs = self.ops.to_numpy(self.backend.forward(self.x))
            self.target = ClassTarget(predicted_classes(outputs,
                                                        self.backend.output_activation()))
        return self.target

    def gradient(self, x: Native | None = None, target: TargetSpec | None = None,
                 **kwargs: Any) -> GradientResult:
        """``backend.gradient`` with this context's input and target as defaults."""
        return self.backend.gradient(self.x if x is None else x,
                                     self.target if target is None else target, **kwargs)

    def derive(self, **changes: Any) -> "Context":
        """A copy with some fields changed (e.g. a noisy input for a wrapped method)."""
        return replace(self, **changes)

    def chunks(self, total: int, size: int, desc: str) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` pairs over ``total`` items in passes of ``size``, with a
        progress bar under the call's ``progress=`` setting (:mod:`crosslens.core.progress`)."""
        return progress_chunks(total, size, desc, self.progress)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def canonical_normal(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Standard normal noise of ``shape`` (in the model's layout) drawn in channels-first
        order, so the same seed gives the same noise on PyTorch and Keras models.

        ``shape`` is ``(k, N, ...)`` or ``(k * N, ...)``: the sample axes follow one or two
        leading axes; the channel axis is drawn right after them, for images
        ``(H, W, C)`` and sequences ``(T, C)`` alike."""
        lead = len(shape) - (len(self.ops.shape(self.x)) - 1)  # axes before the sample's
        if self.layout == "channels_last" and len(shape) >= 3 and lead >= 1:
            first = shape[:lead] + (shape[-1],) + shape[lead:-1]
            return np.moveaxis(rng.standard_normal(first), lead, -1)
        return rng.standard_normal(shape)


def require_layer(ctx: Context, method: str) -> str:
    """The context's layer, or a clear error when the method needs one."""
    if ctx.layer is None:
        raise OptionError(f"{method} needs a layer: pass layer='name' (see "
                          "cl.layers(model) for the names)")
    return ctx.layer
