"""Results of the modality entry points: an :class:`~crosslens.Explanation` extended."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from ..core.explanation import Explanation

E = TypeVar("E", bound=Explanation)


def extended(cls: type[E], exp: Explanation, **extra: Any) -> E:
    """``exp`` as an instance of the :class:`Explanation` subclass ``cls``, with its extra
    fields set from ``extra`` (the attributions are shared, not copied)."""
    return cls(**{f.name: getattr(exp, f.name) for f in fields(Explanation)}, **extra)
