"""Saving and showing results that draw themselves (``figure()``), in one place.

Drawing is :mod:`crosslens.viz`'s job, and ``core`` imports nothing above it: the viz
package registers itself here when it is imported (``import crosslens`` does), and the
results defined below ``viz`` (an :class:`~crosslens.Explanation`, a feature
visualization) reach it through :func:`renderer`.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from .errors import UnsupportedError

_RENDERER: ModuleType | None = None


def set_renderer(module: ModuleType) -> None:
    """Register the drawing package (called by :mod:`crosslens.viz` on import)."""
    global _RENDERER
    _RENDERER = module


def renderer() -> ModuleType:
    """The drawing package: ``Cell``, ``figure_grid``, ``save_figure``, ``show``, ..."""
    if _RENDERER is None:
        raise UnsupportedError("drawing needs crosslens.viz: import crosslens (or "
                               "crosslens.viz) before drawing a result")
    return _RENDERER


class Drawable:
    """Mixin: ``save``, ``show`` and notebook display for a class defining ``figure()``."""

    def figure(self, **options: Any):  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def caption(self) -> str:
        """Caption of the notebook display."""
        return ""

    def save(self, path: str, **options: Any) -> str:
        """Write the figure of :meth:`figure` (PNG unless the suffix says otherwise)."""
        renderer().save_figure(self.figure(**options), path)
        return path

    def show(self, **options: Any) -> None:
        """Display the figure (inline in notebooks, a window elsewhere)."""
        renderer().show(self.figure(**options))

    def _repr_html_(self) -> str:
        return renderer().figure_html(self.figure(), caption=self.caption() or None)
