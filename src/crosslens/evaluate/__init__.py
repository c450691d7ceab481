"""Evaluation of explanations: faithfulness, sanity checks, localization, Clever Hans.

All metrics run on PyTorch and Keras models alike, on top of the backend interface and
:func:`crosslens.explain`; importing this package imports no framework.

- :func:`deletion`, :func:`insertion`: perturbation curves and their areas.
- :func:`model_randomization`: cascading parameter randomization with Spearman rank
  correlations (on copies; the model is never modified).
- :func:`pointing_game`, :func:`relevance_mass`: localization against a mask.
- :func:`clever_hans_benchmark`: every registered method on a watermark shortcut task,
  in both frameworks, with a table and an HTML report.
"""
from __future__ import annotations

from ._maps import relevance_maps
from .clever_hans import (CleverHansResult, MethodScore, clever_hans_benchmark,
                          train_models)
from .faithfulness import Curve, area, deletion, insertion, perturbation_curve
from .localization import pointing_game, relevance_mass
from .sanity import RandomizationResult, model_randomization, rankdata, spearman

__all__ = ["deletion", "insertion", "perturbation_curve", "Curve", "area",
           "model_randomization", "RandomizationResult", "spearman", "rankdata",
           "pointing_game", "relevance_mass", "relevance_maps",
           "clever_hans_benchmark", "CleverHansResult", "MethodScore", "train_models"]
