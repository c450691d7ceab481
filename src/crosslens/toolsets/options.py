"""Checks of option values shared by the toolset adapters.

The toolsets validate late (deep inside a backward pass) or with bare ``assert``s; these
checks run first so a wrong value is an :class:`~crosslens.core.errors.OptionError` naming
the option and what it takes.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..core.errors import OptionError


def flag(where: str, name: str, value: Any) -> bool:
    """``value`` as a bool; anything but ``True`` / ``False`` is an error."""
    if not isinstance(value, (bool, np.bool_)):
        raise OptionError(f"{where}: {name} must be True or False, not {value!r}")
    return bool(value)


def integer(where: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (floats such as ``8.0`` are refused: say ``8``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        raise OptionError(f"{where}: {name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def number(where: str, name: str, value: Any, minimum: float | None = None) -> float:
    """``value`` as a finite float (``>= minimum`` when given)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not np.isfinite(float(value)) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise OptionError(f"{where}: {name} must be a finite number{bound}, not {value!r}")
    return float(value)
