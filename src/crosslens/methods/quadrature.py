"""Integration rules for path methods, named as in Captum.

Each rule gives ``alphas`` (points on [0, 1]) and ``weights`` (step sizes) so that
``∫₀¹ f(α) dα ≈ Σ weights[k] · f(alphas[k])``. The weights sum to 1, except for
``riemann_trapezoid``, whose weights are Captum's (``1/n`` with the end points halved,
summing to ``(n - 1)/n``), kept so that results equal Captum's.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import OptionError

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
         "riemann_trapezoid")


def integration_points(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of ``rule`` with ``steps`` points (float64)."""
    if rule not in RULES:
        raise OptionError(f"unknown integration rule {rule!r}; choose one of {RULES}")
    if steps < (1 if rule == "gausslegendre" else 2):
        raise OptionError(f"{rule} needs at least {1 if rule == 'gausslegendre' else 2} steps")
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1.0 + nodes), 0.5 * weights
    weights = np.full(steps, 1.0 / steps)
    if rule == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0.0, 1.0, steps), weights
    start = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule] / steps
    return start + np.arange(steps) / steps, weights
