"""Feature visualization on every backend (Olah et al. 2017; Yosinski et al. 2015;
Mordvintsev et al. 2015; Nguyen et al. 2016).

``crosslens.visualize(model, objective, ...)`` optimizes images that maximize an objective
of a PyTorch or Keras model. The loop, parameterizations, transforms, regularizers and
optimizer are written once (numpy on the host, :class:`ArrayOps` for the optimizer); the
objective is differentiated natively by the model's own framework.

Modules: :mod:`.objectives` (what to maximize), :mod:`.params` (pixel / Fourier),
:mod:`.transforms`, :mod:`.regularizers`, :mod:`.optim`, :mod:`.prior` (AM with an
expert), :mod:`.codespace` (AM through a generator), :mod:`.filters` (every channel of a
layer as a grid), :mod:`.deepdream` (from a photo, with octaves), :mod:`.benchmark`.
"""
from __future__ import annotations

from . import objectives
from .benchmark import steps_per_second
from .codespace import Generator
from .deepdream import deepdream
from .filters import visualize_filters
from .objectives import (Objective, channel, class_logit, class_prob, custom, direction,
                         diversity, layer, neuron)
from .optim import SGD, Adam
from .params import FourierParam, PixelParam
from .prior import Prior
from .regularizers import L1, L2, Blur, ContributionClip, NormClip, TotalVariation
from .render import FeatureVisualization, visualize
from .spectrum import spectral_slope
from .transforms import (Jitter, Pad, RandomRotate, RandomScale, Resize, Roll,
                         standard_transforms)

__all__ = ["visualize", "visualize_filters", "deepdream", "FeatureVisualization",
           "objectives", "Objective", "neuron", "channel", "layer", "class_logit",
           "class_prob", "direction", "diversity", "custom", "PixelParam", "FourierParam",
           "Pad", "Jitter", "Roll", "RandomScale", "RandomRotate", "Resize",
           "standard_transforms", "L1", "L2", "TotalVariation", "Blur", "NormClip",
           "ContributionClip", "Adam", "SGD", "Prior", "Generator", "spectral_slope",
           "steps_per_second"]
