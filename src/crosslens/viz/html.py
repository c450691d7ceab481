"""Embedding figures in HTML (notebook ``_repr_html_`` and HTML reports)."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

if TYPE_CHECKING:
    from .colors import DisplayScale

__all__ = ["png_data_uri", "figure_html", "scale_legend_html"]


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


def _distinct(texts: Sequence[str], names: Sequence[str]) -> str:
    """One text when all samples agree, else one escaped line per sample."""
    if len(set(texts)) == 1:
        return html.escape(texts[0])
    return "<br>".join(f"{html.escape(n)}: {html.escape(t)}" for n, t in zip(names, texts))


def scale_legend_html(
    scales: Mapping[str, Sequence["DisplayScale"]],
    *,
    sample_names: Optional[Sequence[str]] = None,
    cmaps: Optional[Mapping[str, str]] = None,
    caption: Optional[str] = None,
) -> str:
    """An HTML table saying, per method, what the colours of its maps mean.

    Parameters
    ----------
    scales : mapping of str to sequence of DisplayScale
        For each method (row), the :class:`crosslens.viz.DisplayScale` of each
        sample's map (columns), as used to draw them.
    sample_names : sequence of str, optional
        Column headings of the ranges (default ``"sample 0"``, ...).
    cmaps : mapping of str to str, optional
        Colormap name per method where it is not the default.
    caption : str, optional
        Table caption (plain text).

    Returns
    -------
    str
        ``<table class="crosslens-legend">`` with one row per method: the colours
        (signed diverging vs. unsigned sequential, what zero and the ends mean),
        the scaling rule used and why, and the value range mapped for each sample
        (the colour bar's range). Everything is HTML-escaped.
    """
    if not scales:
        return ""
    count = max(len(v) for v in scales.values())
    names = list(sample_names) if sample_names is not None else [
        f"sample {i}" for i in range(count)]
    head = "".join(f"<th>range: {html.escape(str(n))}</th>" for n in names[:count])
    rows = []
    for method, per_sample in scales.items():
        cmap = (cmaps or {}).get(method)
        colors = _distinct([d.colors_text(cmap) for d in per_sample], names)
        rules = _distinct([d.rule_text(reason=False) for d in per_sample], names)
        reasons = [d.reason for d in per_sample]
        if any(reasons):
            rules += f" <i>Why:</i> {_distinct(reasons, names)}"
        ranges = "".join(f"<td>{html.escape(d.range_text())}</td>" for d in per_sample)
        rows.append(f"<tr><td>{html.escape(method)}</td><td>{colors}</td><td>{rules}</td>"
                    f"{ranges}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<table class="crosslens-legend">{cap}<tr><th>method</th><th>colours</th>'
            f"<th>scaling</th>{head}</tr>{''.join(rows)}</table>")
