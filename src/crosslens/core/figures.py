"""Saving and showing results that draw themselves (``figure()``), in one place."""
from __future__ import annotations

from typing import Any


class Drawable:
    """Mixin: ``save``, ``show`` and notebook display for a class defining ``figure()``."""

    def figure(self, **options: Any):  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def caption(self) -> str:
        """Caption of the notebook display."""
        return ""

    def save(self, path: str, **options: Any) -> str:
        """Write the figure of :meth:`figure` (PNG unless the suffix says otherwise)."""
        from ..viz import save_figure

        save_figure(self.figure(**options), path)
        return path

    def show(self, **options: Any) -> None:
        """Display the figure (inline in notebooks, a window elsewhere)."""
        from ..viz import show

        show(self.figure(**options))

    def _repr_html_(self) -> str:
        from ..viz import figure_html

        return figure_html(self.figure(), caption=self.caption() or None)
