"""Optimizers for feature visualization, written once against :class:`ArrayOps`.

They *ascend* (maximize the objective). :class:`Adam` follows ``torch.optim.Adam``
exactly (bias corrections, ``eps`` added after the bias-corrected square root), so a run
can be checked step by step against PyTorch's own optimizer. :class:`SGD` with
``normalize=True`` is DeepDream's step: the gradient divided by its mean absolute value
per sample.
"""
from __future__ import annotations

import math
from typing import Any

from ..core.backend import ArrayOps, Native
from ..core.errors import OptionError


class Optimizer:
    """Base class: ``step(ops, params, grad) -> params`` (ascent); ``reset()`` clears state."""

    def step(self, ops: ArrayOps, params: Native, grad: Native) -> Native:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the moments of a previous run."""


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) in ``torch.optim.Adam``'s formulation, ascending.

    Parameters
    ----------
    lr : float
        Step size.
    betas : tuple of float
        Decay rates of the first and second moment estimates.
    eps : float
        Added to the bias-corrected root of the second moment.
    """

    def __init__(self, lr: float = 0.05, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        if lr <= 0:
            raise OptionError(f"lr must be positive, got {lr}")
        self.lr, self.betas, self.eps = float(lr), tuple(betas), float(eps)
        self.reset()

    def reset(self) -> None:
        self.t, self.m, self.v = 0, None, None

    def step(self, ops, params, grad):
        b1, b2 = self.betas
        if self.m is None:
            self.m, self.v = ops.zeros_like(params), ops.zeros_like(params)
        self.t += 1
        self.m = self.m * b1 + grad * (1.0 - b1)
        self.v = self.v * b2 + grad * grad * (1.0 - b2)
        denom = ops.sqrt(self.v) / math.sqrt(1.0 - b2 ** self.t) + self.eps
        return params + self.m / denom * (self.lr / (1.0 - b1 ** self.t))

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr})"


class SGD(Optimizer):
    """Plain gradient ascent ``p + lr * g``; ``normalize=True`` divides ``g`` by its mean
    absolute value per sample first (DeepDream's step, Mordvintsev et al. 2015)."""

    def __init__(self, lr: float = 0.01, normalize: bool = False) -> None:
        if lr <= 0:
            raise OptionError(f"lr must be positive, got {lr}")
        self.lr, self.normalize = float(lr), bool(normalize)

    def step(self, ops, params, grad):
        if self.normalize:
            axes = tuple(range(1, len(ops.shape(grad))))
            grad = grad / (ops.mean(ops.abs(grad), axis=axes, keepdims=True) + 1e-8)
        return params + grad * self.lr

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr}, normalize={self.normalize})"


def make_optimizer(optimizer: Any, lr: float) -> Optimizer:
    """An optimizer from a name (``"adam"``, ``"sgd"``) or an instance (its state reset)."""
    if isinstance(optimizer, Optimizer):
        optimizer.reset()
        return optimizer
    if optimizer == "adam":
        return Adam(lr)
    if optimizer == "sgd":
        return SGD(lr)
    raise OptionError(f"unknown optimizer {optimizer!r}: use 'adam', 'sgd' or an instance of "
                      "crosslens.featurevis.Adam / SGD")
