"""Activation maximization with an expert (Nguyen et al. 2016, 2017): a prior term.

The objective becomes ``objective(image) + weight * log p(image)`` where ``p`` is given by a
user model of any framework crosslens has a backend for:

- ``kind="density"``: the model returns ``log p(x)`` per sample (shape ``(N,)`` or
  ``(N, 1)``); its gradient comes from the model's backend as a vector-Jacobian product
  with a cotangent of ones.
- ``kind="denoiser"``: the model ``D`` was trained to remove Gaussian noise of std
  ``sigma``; then ``(D(x) - x) / sigma²`` estimates ``grad log p(x)`` (Alain & Bengio
  2014, the DAE prior of Nguyen et al.'s PPGN). One forward pass, no gradient.

The prior model sees the image at the visualization's size through its own
:class:`~crosslens.featurevis.modelio.ModelIO` (layout, ``input_range``, ``mean``, ``std``),
and the gradient is carried back to the canonical image by the chain rule.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError, TargetError
from .modelio import ModelIO, image_layout

_KINDS = ("density", "denoiser")


class Prior:
    """A learned image prior (see the module docstring).

    Parameters
    ----------
    model
        Density or denoiser model (PyTorch, Keras, ...), input in its own layout.
    kind : {"denoiser", "density"}
        What the model computes.
    weight : float
        Weight of ``log p`` in the maximized objective.
    sigma : float
        Noise std the denoiser was trained for, in the model's input units.
    input_range, mean, std
        How the model's inputs relate to ``[0, 1]`` images (as for the classifier).
    """

    def __init__(self, model: Any, kind: str = "denoiser", weight: float = 1.0,
                 sigma: float = 0.1, input_range: tuple[float, float] = (0.0, 1.0),
                 mean: Any = None, std: Any = None) -> None:
        if kind not in _KINDS:
            raise OptionError(f"Prior kind must be one of {_KINDS}, got {kind!r}")
        if sigma <= 0:
            raise OptionError("sigma must be positive")
        self.model, self.kind, self.weight, self.sigma = model, kind, float(weight), float(sigma)
        self.input_range, self.mean, self.std = input_range, mean, std

    def bind(self, channels: int) -> "BoundPrior":
        """The prior attached to its backend (enter ``bound.backend.session()`` to use)."""
        from ..backends import get_backend
        backend = get_backend(self.model)
        io = ModelIO(image_layout(backend), channels, self.input_range, self.mean, self.std)
        return BoundPrior(self, backend, io)

    def __repr__(self) -> str:
        return f"Prior({type(self.model).__name__}, kind={self.kind!r}, weight={self.weight:g})"


class BoundPrior:
    """A :class:`Prior` with its backend: ``grad(image)`` is ``weight * grad log p``."""

    def __init__(self, prior: Prior, backend: Any, io: ModelIO) -> None:
        self.prior, self.backend, self.io = prior, backend, io

    def grad(self, image: np.ndarray) -> np.ndarray:
        ops, x = self.backend.ops, self.io.encode(image)
        native = ops.asarray(x)
        if self.prior.kind == "denoiser":
            denoised = ops.to_numpy(self.backend.forward(native)).astype(np.float64)
            if denoised.shape != x.shape:
                raise TargetError(f"a denoiser must return its input's shape {x.shape}; "
                                  f"got {denoised.shape}")
            score = (denoised - x) / self.prior.sigma ** 2
        else:
            out = self.backend.forward(native)
            shape = ops.shape(out)
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
                raise TargetError(f"a density prior must return log p per sample, shape (N,) "
                                  f"or (N, 1); got {shape}")
            ones = ops.asarray(np.ones(shape))
            score = ops.to_numpy(self.backend.vjp(native, ones)).astype(np.float64)
        return self.prior.weight * self.io.encode_vjp(score)
