"""Regularizers: penalties added to the objective, and operators applied between steps.

Penalties (differentiable, on the canonical image, subtracted from the objective):

- :class:`L1`, :class:`L2`: ``weight * mean |image - centre|`` (or squared), the decay
  terms of Simonyan et al. 2014 / Yosinski et al. 2015 (``centre`` defaults to the mean
  image, the "zero" of a mean-subtracted model input);
- :class:`TotalVariation`: ``weight * mean((dx² + dy² + eps) ** (beta / 2))``
  (Mahendran & Vedaldi 2015; ``beta=1`` is the usual isotropic TV).

Operators (Yosinski et al. 2015), applied to the parameters every ``every`` steps:

- :class:`Blur`: Gaussian blur of the parameters (for Fourier parameters a multiplication
  of the coefficients by the blur's transfer function);
- :class:`NormClip`: pixels whose norm ``|image - zero|`` (over channels) is below the
  ``percentile``-th percentile of the image are set to zero (the mean image);
- :class:`ContributionClip`: the same for the pixel's contribution
  ``|sum_c (image - zero) * d objective / d image|``, a first-order estimate of how much
  the objective changes when the pixel is set to zero.

The clipping operators need a pixel parameterization.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import OptionError


class Penalty:
    """Base class: ``value(image, centre) -> (N,)`` and its gradient ``grad``."""

    weight: float

    def value(self, image: np.ndarray, centre: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def grad(self, image: np.ndarray, centre: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _per_image_size(image: np.ndarray) -> int:
    return int(np.prod(image.shape[1:]))


@dataclass
class L1(Penalty):
    """``weight * mean |image - centre|`` per image (``centre=None``: the mean image)."""

    weight: float = 0.05
    centre: Any = None

    def _centre(self, centre):
        return centre if self.centre is None else np.asarray(self.centre, dtype=np.float64)

    def value(self, image, centre):
        diff = np.abs(image - self._centre(centre))
        return self.weight * diff.reshape(len(image), -1).mean(axis=1)

    def grad(self, image, centre):
        return self.weight * np.sign(image - self._centre(centre)) / _per_image_size(image)


@dataclass
class L2(Penalty):
    """``weight * mean (image - centre)²`` per image (``centre=None``: the mean image);
    with plain gradient ascent a step of it is Yosinski's decay ``x <- (1 - c) x``."""

    weight: float = 0.05
    centre: Any = None

    def _centre(self, centre):
        return centre if self.centre is None else np.asarray(self.centre, dtype=np.float64)

    def value(self, image, centre):
        diff = image - self._centre(centre)
        return self.weight * (diff * diff).reshape(len(image), -1).mean(axis=1)

    def grad(self, image, centre):
        return 2.0 * self.weight * (image - self._centre(centre)) / _per_image_size(image)


@dataclass
class TotalVariation(Penalty):
    """``weight * mean over positions and channels of (dx² + dy² + eps) ** (beta / 2)``
    with forward differences (Mahendran & Vedaldi 2015)."""

    weight: float = 0.05
    beta: float = 1.0
    eps: float = 1e-8

    def _parts(self, image):
        dy = image[:, 1:, :-1] - image[:, :-1, :-1]
        dx = image[:, :-1, 1:] - image[:, :-1, :-1]
        return dy, dx, dy * dy + dx * dx + self.eps

    def value(self, image, centre=None):
        _, _, r = self._parts(image)
        return self.weight * (r ** (self.beta / 2.0)).reshape(len(image), -1).mean(axis=1)

    def grad(self, image, centre=None):
        dy, dx, r = self._parts(image)
        count = _per_image_size(r)
        q = self.weight * (self.beta / 2.0) * r ** (self.beta / 2.0 - 1.0) * 2.0 / count
        g = np.zeros_like(image)
        g[:, 1:, :-1] += q * dy
        g[:, :-1, 1:] += q * dx
        g[:, :-1, :-1] -= q * (dy + dx)
        return g


class Operator:
    """Base class of the between-step operators: ``apply(p, state) -> p``."""

    every: int = 1
    needs_pixels = False

    def apply(self, p: np.ndarray, state: "OperatorState") -> np.ndarray:
        raise NotImplementedError


@dataclass
class OperatorState:
    """What an operator may use: the parameterization, the current image, the zero image
    and the objective's gradient w.r.t. the image at this step."""

    param: Any
    image: np.ndarray
    zero: np.ndarray
    grad: np.ndarray


@dataclass
class Blur(Operator):
    """Gaussian blur of std ``sigma`` pixels every ``every`` steps."""

    sigma: float = 0.5
    every: int = 4

    def apply(self, p, state):
        return state.param.blur(p, self.sigma)


def _set_to_zero(p: np.ndarray, state: OperatorState, mask: np.ndarray) -> np.ndarray:
    zero_params = state.param.from_image(np.broadcast_to(state.zero, state.image.shape))
    return np.where(mask[..., None], zero_params, p)


def _below_percentile(values: np.ndarray, percentile: float) -> np.ndarray:
    flat = values.reshape(len(values), -1)
    threshold = np.percentile(flat, percentile, axis=1)
    return values < threshold.reshape((-1,) + (1,) * (values.ndim - 1))


@dataclass
class NormClip(Operator):
    """Set pixels whose norm ``|image - zero|`` is below the ``percentile``-th
    percentile (per image) to zero, every ``every`` steps (Yosinski's ``theta_n_pct``)."""

    percentile: float = 10.0
    every: int = 1
    needs_pixels = True

    def apply(self, p, state):
        norms = np.sqrt(((state.image - state.zero) ** 2).sum(axis=-1))
        return _set_to_zero(p, state, _below_percentile(norms, self.percentile))


@dataclass
class ContributionClip(Operator):
    """Set pixels whose contribution ``|sum_c (image - zero) * grad|`` is below the
    ``percentile``-th percentile (per image) to zero (Yosinski's ``theta_c_pct``)."""

    percentile: float = 10.0
    every: int = 1
    needs_pixels = True

    def apply(self, p, state):
        contribution = np.abs(((state.image - state.zero) * state.grad).sum(axis=-1))
        return _set_to_zero(p, state, _below_percentile(contribution, self.percentile))


def split_regularizers(regularizers: Any, param: Any) -> tuple[list[Penalty], list[Operator]]:
    """Penalties and operators from a sequence, checked against the parameterization."""
    if regularizers is None:
        return [], []
    if isinstance(regularizers, (Penalty, Operator)):
        regularizers = [regularizers]
    penalties, operators = [], []
    for r in regularizers:
        if isinstance(r, Penalty):
            penalties.append(r)
        elif isinstance(r, Operator):
            if r.needs_pixels and not getattr(param, "pixelwise", False):
                raise OptionError(f"{type(r).__name__} sets pixels to zero and needs "
                                  "param='pixel'")
            if int(r.every) < 1:
                raise OptionError(f"{type(r).__name__}.every must be >= 1")
            operators.append(r)
        else:
            raise OptionError(f"{r!r} is not a crosslens.featurevis regularizer (L1, L2, "
                              "TotalVariation, Blur, NormClip, ContributionClip)")
    return penalties, operators
