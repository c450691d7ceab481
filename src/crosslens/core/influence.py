"""Vocabulary of internal influence (Leino et al. 2018, as in TruLens): cuts, QoIs, DoIs.

Internal influence attributes a *quantity of interest* (QoI), computed at a *to-cut*
of the model, to the values at a *from-cut*, averaging the gradient over a
*distribution of interest* (DoI) of points at the from-cut::

    influence = E_{z ~ DoI(x)} [ ∂ QoI / ∂ z ]          (times a multiplier, see below)

- **Cuts.** The from-cut is ``"input"`` (also ``None``) or a layer name; the to-cut is
  ``"output"`` (the model outputs) or a layer name.
- **QoIs** (what is explained): a class index or :class:`ClassQoI`, a
  :class:`ClassDifference` (TruLens' comparative QoI), ``"max"`` / ``"predicted"`` (the
  top class), a :class:`ChannelQoI` of the to-cut layer, ``cl.Channel`` /
  ``cl.Neuron`` (which name their layer, so they set the to-cut), or a callable
  ``fn(outputs) -> (N,)`` on the model's native outputs.
- **DoIs** (where the gradient is averaged): :class:`PointDoI` (the point itself),
  :class:`LinearDoI` (the straight path from a baseline, integrated with a Captum-named
  rule) and :class:`GaussianDoI` (Gaussian noise around the point).
- **Multiplier.** With ``multiply=True`` (TruLens' ``multiply_activation``, the
  default) the averaged gradient is multiplied by ``z - baseline`` for the linear DoI
  and by ``z`` otherwise, turning influence into attribution.

Special cases: input cut + linear DoI + multiply is integrated gradients; input cut +
Gaussian DoI without multiply is SmoothGrad; a layer cut + linear DoI is layer
integrated gradients (Captum ``LayerIntegratedGradients``); point DoI + multiply is
gradient × input / activation.

Unlike TruLens, a baseline is always given in *input* space and mapped to a layer
from-cut by the model (as Captum does), so the same ``baseline=`` means the same thing
for every cut. This module imports no framework.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .errors import OptionError
from .targets import (Channel, ChannelTarget, ClassTarget, Neuron, PredictedTarget,
                      ScoreTarget, TargetSpec, resolve_target)

#: Names of the two ends of the model, as cuts.
INPUT, OUTPUT = "input", "output"


# --- quantities of interest -------------------------------------------------------------

@dataclass(frozen=True)
class ClassQoI:
    """The output score of one class (same as passing the class index)."""

    cls: int


@dataclass(frozen=True)
class ClassDifference:
    """``outputs[:, a] - outputs[:, b]``: why class ``a`` rather than class ``b``.

    Callable on the model's native outputs, so it is also a valid ``target=`` for every
    gradient and perturbation method (``cl.explain(..., target=cl.ClassDifference(3, 5))``).
    """

    a: int
    b: int

    def __call__(self, outputs: Any) -> Any:
        return outputs[:, self.a] - outputs[:, self.b]


@dataclass(frozen=True)
class ChannelQoI:
    """The mean of one channel of the to-cut layer (``cl.Channel(to, channel)``)."""

    channel: int


QoILike = Union[int, str, tuple, ClassQoI, ClassDifference, ChannelQoI, Neuron, Channel,
                Callable[[Any], Any], None]


# --- distributions of interest ----------------------------------------------------------

@dataclass(frozen=True)
class PointDoI:
    """All mass on the point itself: the plain gradient at the from-cut."""


@dataclass(frozen=True)
class LinearDoI:
    """The straight path from a baseline to the point (integrated gradients' path).

    Parameters
    ----------
    baseline
        In input space, as for integrated gradients: ``"zeros"``, a number, ``"blur"``,
        ``"uniform"``, an array, or a list of these (averaged).
    steps
        Number of integration points.
    rule
        Captum-named integration rule (``"gausslegendre"``, ``"riemann_trapezoid"``, ...).
    """

    baseline: Any = "zeros"
    steps: int = 50
    rule: str = "gausslegendre"


@dataclass(frozen=True)
class GaussianDoI:
    """Gaussian noise around the point (SmoothGrad's distribution).

    The standard deviation is ``stdev`` if given, else ``noise_level`` times the value
    range (max - min) of each sample at the from-cut.
    """

    samples: int = 50
    noise_level: float = 0.15
    stdev: float | None = None


DoI = Union[PointDoI, LinearDoI, GaussianDoI]
DOI_NAMES = ("point", "linear", "gaussian")


def make_doi(doi: Any, *, baseline: Any = None, steps: int | None = None,
             rule: str | None = None, samples: int | None = None,
             noise_level: float | None = None, stdev: float | None = None) -> DoI:
    """A DoI object from a name plus shorthand options, or a DoI object as given.

    Shorthand options apply to the named form only; a DoI object carries its own
    parameters, and giving both is an error (one source of truth).
    """
    given = {k: v for k, v in dict(baseline=baseline, steps=steps, rule=rule, samples=samples,
                                   noise_level=noise_level, stdev=stdev).items()
             if v is not None}
    if isinstance(doi, (PointDoI, LinearDoI, GaussianDoI)):
        if given:
            raise OptionError(f"doi={doi!r} carries its own parameters; drop {sorted(given)} "
                              "or pass doi as a name ('point', 'linear', 'gaussian')")
        return doi
    if not isinstance(doi, str) or doi.lower() not in DOI_NAMES:
        raise OptionError(f"unknown distribution of interest {doi!r}; use one of {DOI_NAMES} "
                          "or cl.PointDoI() / cl.LinearDoI(...) / cl.GaussianDoI(...)")
    kind = doi.lower()
    allowed = {"point": (), "linear": ("baseline", "steps", "rule"),
               "gaussian": ("samples", "noise_level", "stdev")}[kind]
    stray = sorted(set(given) - set(allowed))
    if stray:
        raise OptionError(f"options {stray} do not apply to doi={kind!r}; it takes "
                          f"{list(allowed) or 'no options'}")
    if kind == "point":
        return PointDoI()
    if kind == "linear":
        return LinearDoI(**given)
    return GaussianDoI(**given)


# --- cuts and QoI resolution -------------------------------------------------------------

def is_input_cut(cut: Any) -> bool:
    """Whether ``cut`` names the model input (``None``, ``0`` or ``"input"``)."""
    return cut is None or (isinstance(cut, str) and cut.lower() == INPUT) or (
        isinstance(cut, int) and not isinstance(cut, bool) and cut == 0)


def is_output_cut(cut: Any) -> bool:
    """Whether ``cut`` names the model output (``None`` or ``"output"``)."""
    return cut is None or (isinstance(cut, str) and cut.lower() == OUTPUT)


def resolve_qoi(qoi: QoILike, to: str | None, n_samples: int,
                resolve_layer: Callable[[Any], str]) -> TargetSpec:
    """The backend target record that computes ``qoi`` at the to-cut ``to``.

    Parameters
    ----------
    qoi
        See the module docstring. An ``int`` is a class at the output and a channel at a
        layer to-cut (as in TruLens); a pair ``(a, b)`` is a :class:`ClassDifference`.
    to
        Canonical layer name of the to-cut, or ``None`` for the model output.
    n_samples
        Batch size (for per-sample class lists).
    resolve_layer
        The backend's layer resolver.
    """
    at_layer = to is not None
    where = f"the to-cut layer {to!r}" if at_layer else "the model output"
    if isinstance(qoi, (Neuron, Channel)):
        spec = resolve_target(qoi, n_samples, resolve_layer)
        if at_layer and spec.layer != to:
            raise OptionError(f"qoi {qoi!r} lives in layer {spec.layer!r} but to={to!r}; "
                              "drop to= (the unit names its layer) or make them agree")
        return spec
    if isinstance(qoi, ClassQoI):
        qoi = qoi.cls
    if isinstance(qoi, tuple) and len(qoi) == 2:
        qoi = ClassDifference(int(qoi[0]), int(qoi[1]))
    if at_layer:
        if isinstance(qoi, ChannelQoI):
            return ChannelTarget(to, int(qoi.channel))
        if isinstance(qoi, (int, np.integer)) and not isinstance(qoi, bool):
            return ChannelTarget(to, int(qoi))
        raise OptionError(
            f"qoi {qoi!r} cannot be computed at {where}: a layer to-cut takes "
            "cl.ChannelQoI(c) (or an int channel), cl.Channel(layer, c) or "
            "cl.Neuron(layer, index); class and callable QoIs need to='output'")
    if isinstance(qoi, ChannelQoI):
        raise OptionError("cl.ChannelQoI needs a layer to-cut: pass to='layer name', or use "
                          "cl.Channel(layer, c)")
    if isinstance(qoi, str) and qoi.lower() == "max":
        qoi = "predicted"
    spec = resolve_target(qoi, n_samples, resolve_layer)
    if not isinstance(spec, (ClassTarget, PredictedTarget, ScoreTarget)):
        raise OptionError(f"unsupported qoi {qoi!r}")
    return spec


__all__ = ["ClassQoI", "ClassDifference", "ChannelQoI", "PointDoI", "LinearDoI",
           "GaussianDoI", "make_doi", "resolve_qoi", "is_input_cut", "is_output_cut",
           "INPUT", "OUTPUT", "DOI_NAMES"]
