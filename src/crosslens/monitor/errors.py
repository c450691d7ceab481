"""Errors of the training monitor."""
from __future__ import annotations

from ..core.errors import CrosslensError


class MissingDependencyError(CrosslensError, ImportError):
    """An optional dependency of the requested feature is not installed; the message
    names the package to install."""
