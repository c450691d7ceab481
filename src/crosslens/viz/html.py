"""Embedding figures in HTML (notebook ``_repr_html_`` and HTML reports)."""

from __future__ import annotations

import base64
import html
from typing import Any, Optional, Union

__all__ = ["png_data_uri", "figure_html"]


def png_data_uri(png_bytes: bytes) -> str:
    """Encode PNG bytes as a ``data:`` URI.

    Parameters
    ----------
    png_bytes : bytes
        Content of a PNG file.

    Returns
    -------
    str
        ``"data:image/png;base64,..."``, usable as an ``<img src>``.
    """
    return "data:image/png;base64," + base64.b64encode(bytes(png_bytes)).decode("ascii")


def figure_html(fig: Union[Any, bytes], caption: Optional[str] = None, *, dpi: int = 100) -> str:
    """Self-contained HTML snippet showing a figure.

    Parameters
    ----------
    fig : matplotlib.figure.Figure or bytes
        Figure to render, or already rendered PNG bytes.
    caption : str, optional
        Plain-text caption (HTML-escaped) placed in a ``<figcaption>``.
    dpi : int, default 100
        Resolution used when rendering a figure.

    Returns
    -------
    str
        ``<figure><img src="data:image/png;base64,..." alt="..."/>
        [<figcaption>...</figcaption>]</figure>``.
    """
    if isinstance(fig, (bytes, bytearray, memoryview)):
        png = bytes(fig)
    else:
        from .grid import figure_to_png_bytes

        png = figure_to_png_bytes(fig, dpi=dpi)
    alt = html.escape(caption or "figure", quote=True)
    parts = [f'<figure class="crosslens-figure"><img src="{png_data_uri(png)}" alt="{alt}"/>']
    if caption:
        parts.append(f"<figcaption>{html.escape(caption)}</figcaption>")
    parts.append("</figure>")
    return "".join(parts)
