"""Side-by-side figures of images, overlays and heatmaps.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``),
never through pyplot, so nothing here touches global matplotlib state or
needs a display. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence, Union

import numpy as np

from .colors import (
    DEFAULT_OUTLIER_PERC,
    DisplayScale,
    _get_cmap,
    _tick,
    display_scale,
    to_display_image,
)
from .overlay import overlay, prepare_map

if TYPE_CHECKING:  # only for annotations; matplotlib is imported lazily
    from matplotlib.figure import Figure

__all__ = ["Cell", "cell_scale", "figure_grid", "save_figure", "figure_to_png_bytes", "show"]

_KINDS = ("image", "overlay", "heatmap")


@dataclass(frozen=True)
class Cell:
    """Explicit description of one grid cell.

    Parameters
    ----------
    kind : {"image", "overlay", "heatmap"}
        What to draw.
    image : array_like, optional
        Channels-last image (needed for "image" and "overlay").
    attribution : array_like, optional
        Raw attribution ``(h, w)`` or ``(h, w, C)`` (needed for "overlay" and
        "heatmap"); resized to the image for overlays.
    title : str, optional
        Cell title (used when ``figure_grid(titles=...)`` gives none).
    signed, cmap, alpha, reduce, scale, outlier_perc
        As in :func:`crosslens.viz.overlay`; ``scale`` may be a resolved
        :class:`crosslens.viz.DisplayScale` (e.g. one also used for a legend).
    """

    kind: str
    image: Any = None
    attribution: Any = None
    title: Optional[str] = None
    signed: Optional[bool] = None
    cmap: Any = None
    alpha: float = 0.6
    reduce: str = "sum"
    scale: Union[str, DisplayScale] = "auto"
    outlier_perc: float = DEFAULT_OUTLIER_PERC


CellLike = Union[Cell, Mapping[str, Any], tuple, np.ndarray, None]


def _to_cell(item: CellLike) -> Optional[Cell]:
    """Interpret the shorthand cell forms accepted by :func:`figure_grid`."""
    if item is None or isinstance(item, Cell):
        return item
    if isinstance(item, Mapping):
        d = dict(item)
        if "kind" not in d:
            has_img, has_attr = d.get("image") is not None, d.get("attribution") is not None
            d["kind"] = "overlay" if has_img and has_attr else ("heatmap" if has_attr else "image")
        return Cell(**d)
    if isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError("a tuple cell must be (image, attribution)")
        return Cell("overlay", image=item[0], attribution=item[1])
    arr = np.asarray(item)
    # A 2-D float array is taken as a raw map; anything else is a picture.
    if arr.ndim == 2 and arr.dtype != np.uint8:
        return Cell("heatmap", attribution=arr)
    return Cell("image", image=arr)


def _is_nested(seq: Sequence) -> bool:
    return len(seq) > 0 and all(isinstance(r, list) for r in seq)


def _as_rows(items: Sequence, ncols: Optional[int]) -> List[list]:
    if _is_nested(items):
        return [list(r) for r in items]
    items = list(items)
    n = len(items)
    if ncols is None:
        ncols = min(n, 6)
    ncols = max(int(ncols), 1)
    return [items[i : i + ncols] for i in range(0, n, ncols)]


def _titles_as_rows(titles: Optional[Sequence], rows: List[list]) -> List[list]:
    if titles is None:
        return [[None] * len(r) for r in rows]
    if _is_nested(titles):
        out = [list(t) for t in titles]
    else:
        flat, out = list(titles), []
        for r in rows:
            out.append(flat[: len(r)])
            flat = flat[len(r) :]
    # Pad short rows so missing titles are simply absent.
    return [t + [None] * (len(r) - len(t)) for t, r in zip(out + [[]] * len(rows), rows)]


def _row_aspect(cells: Sequence[Optional[Cell]]) -> float:
    """Height/width of the first picture in a row (1.0 if none), bounded."""
    for c in cells:
        if c is None:
            continue
        src = c.image if c.image is not None else c.attribution
        shape = np.shape(src)
        if len(shape) >= 2 and shape[0] > 0 and shape[1] > 0:
            return float(min(max(shape[0] / shape[1], 0.25), 4.0))
    return 1.0


def _clear_axes(ax: Any) -> None:
    # Hide ticks and frame but keep the axes "on" so a row label (ylabel) still shows.
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def cell_map(cell: Cell) -> np.ndarray:
    """The ``(H, W)`` map a heatmap/overlay cell shows (reduced, resized to its image)."""
    if cell.kind == "overlay":
        return prepare_map(cell.attribution, np.shape(cell.image)[:2], cell.reduce)
    return prepare_map(cell.attribution, None, cell.reduce)


def cell_scale(cell: Cell) -> DisplayScale:
    """The :class:`DisplayScale` a heatmap/overlay cell is drawn with."""
    return display_scale(cell_map(cell), cell.scale, outlier_perc=cell.outlier_perc,
                         signed=cell.signed)


def _draw_cell(fig: Any, ax: Any, cell: Cell, colorbar: bool) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if cell.kind not in _KINDS:
        raise ValueError(f"unknown cell kind {cell.kind!r}; valid kinds: {', '.join(_KINDS)}")
    if cell.kind == "image":
        if cell.image is None:
            raise ValueError("an 'image' cell needs image=")
        ax.imshow(to_display_image(cell.image))
        return
    if cell.attribution is None:
        raise ValueError(f"a {cell.kind!r} cell needs attribution=")
    if cell.kind == "overlay" and cell.image is None:
        raise ValueError("an 'overlay' cell needs image=")

    m = cell_map(cell)
    ds = display_scale(m, cell.scale, outlier_perc=cell.outlier_perc, signed=cell.signed)
    cm = _get_cmap(cell.cmap, ds.signed)
    if cell.kind == "overlay":
        ax.imshow(overlay(cell.image, m, cmap=cm, alpha=cell.alpha, scale=ds))
    else:
        ax.imshow(ds.position(m), cmap=cm, norm=Normalize(0.0, 1.0))
    if colorbar:
        # The bar spans exactly the range the colours were mapped from (values
        # beyond it saturate); ticks at its ends (and zero for signed maps).
        lo, hi = ds.vmin, ds.vmax
        if hi <= lo:  # all-zero or constant map: a nominal range, ticks still say the value
            hi = lo + (abs(lo) or 1.0)
        # An inset in axes coordinates follows the image box after aspect
        # adjustment, so the bar is exactly as tall as the picture.
        cax = ax.inset_axes((1.03, 0.0, 0.05, 1.0))
        cb = fig.colorbar(ScalarMappable(norm=Normalize(lo, hi), cmap=cm), cax=cax)
        ticks = ds.ticks()
        cb.set_ticks(ticks, labels=[_tick(t) for t in ticks])
        cb.ax.tick_params(labelsize=7)
        cb.set_label(("|a|, " if ds.shows_magnitude else "") + ds.short(), fontsize=6,
                     labelpad=1)


def figure_grid(
    images_and_maps: Sequence[Any],
    *,
    titles: Optional[Sequence[Any]] = None,
    row_titles: Optional[Sequence[Optional[str]]] = None,
    col_titles: Optional[Sequence[Optional[str]]] = None,
    ncols: Optional[int] = None,
    cell_size: float = 2.6,
    colorbar: bool = False,
) -> "Figure":
    """Lay out images, overlays and heatmaps in a grid figure.

    Typical use: one row per input image, one column per attribution method,
    the first column showing the original image titled with its top label.

    Parameters
    ----------
    images_and_maps : sequence
        Either a flat sequence of cells (wrapped into rows of ``ncols``) or a
        list of lists (one inner list per row). Each cell is one of:

        - an ``(H, W, 3)``/``(H, W, 1)`` array, or any ``uint8`` array: an image;
        - a 2-D non-``uint8`` array: a raw heatmap (signedness auto-detected);
        - a tuple ``(image, attribution)``: an overlay;
        - a :class:`Cell` or a dict of its fields, for explicit control;
        - ``None``: an empty cell.
    titles : sequence, optional
        Per-cell titles, nested like ``images_and_maps`` or flat row-major;
        ``None`` entries mean no title (a :class:`Cell`'s own title is used).
    row_titles : sequence of str, optional
        Label to the left of each row.
    col_titles : sequence of str, optional
        Heading above each column (stacked above the cell title of row 0).
    ncols : int, optional
        Columns for a flat input (default ``min(n, 6)``); ignored for nested
        input.
    cell_size : float, default 2.6
        Size of one cell in inches.
    colorbar : bool, default False
        Add a colour bar next to heatmap and overlay cells, in raw attribution
        units, spanning exactly the range mapped to colours (see
        :func:`crosslens.viz.display_scale`), labelled with its ends and the
        scaling rule.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not registered with pyplot (save it with :func:`save_figure`
        or :func:`figure_to_png_bytes`, display it with :func:`show`).
    """
    from matplotlib.figure import Figure

    rows = _as_rows(list(images_and_maps), ncols)
    if not rows or not any(rows):
        raise ValueError("figure_grid needs at least one cell")
    cell_titles = _titles_as_rows(titles, rows)
    nrows, ncol = len(rows), max(len(r) for r in rows)
    if row_titles is not None and len(row_titles) != nrows:
        raise ValueError(f"got {len(row_titles)} row_titles for {nrows} rows")
    if col_titles is not None and len(col_titles) != ncol:
        raise ValueError(f"got {len(col_titles)} col_titles for {ncol} columns")

    # Size rows by their pictures' aspect ratio (a square cell for a 3:2 photo
    # leaves large blank bands); 0.35 in per row for titles.
    cells = [[_to_cell(c) for c in r] for r in rows]
    heights = [cell_size * _row_aspect(r) + 0.35 for r in cells]
    width = ncol * cell_size * (1.15 if colorbar else 1.0)
    fig = Figure(figsize=(width, sum(heights)), layout="constrained")
    axes = fig.subplots(nrows, ncol, squeeze=False, gridspec_kw={"height_ratios": heights})
    for i in range(nrows):
        for j in range(ncol):
            ax = axes[i][j]
            cell = cells[i][j] if j < len(cells[i]) else None
            parts = []
            if i == 0 and col_titles is not None and col_titles[j]:
                parts.append(str(col_titles[j]))
            t = cell_titles[i][j] if j < len(cell_titles[i]) else None
            if t is None and cell is not None:
                t = cell.title
            if t:
                parts.append(str(t))
            if parts:
                ax.set_title("\n".join(parts), fontsize=9)
            if j == 0 and row_titles is not None and row_titles[i]:
                ax.set_ylabel(str(row_titles[i]), fontsize=9)
            if cell is None:
                if not (j == 0 and row_titles is not None):
                    ax.set_axis_off()
                else:
                    _clear_axes(ax)
                continue
            _draw_cell(fig, ax, cell, colorbar)
            _clear_axes(ax)
    return fig


def figure_to_png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to render.
    dpi : int, default 100
        Resolution.

    Returns
    -------
    bytes
        The PNG file content.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Any, path: Union[str, os.PathLike], dpi: int = 100) -> Path:
    """Write a figure to disk, creating the parent folder.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to save.
    path : str or path-like
        Destination; written as PNG unless the suffix names another format
        matplotlib supports (``.svg``, ``.pdf``, ...).
    dpi : int, default 100
        Resolution.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = p.suffix[1:].lower() or "png"
    fig.savefig(p, format=fmt, dpi=dpi)
    return p


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def show(fig: Any, dpi: int = 100) -> None:
    """Display a figure: inline in a notebook, else in a pyplot window.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        Figure to display.
    dpi : int, default 100
        Resolution of the rendered PNG.

    Notes
    -----
    In a Jupyter kernel the PNG is shown through ``IPython.display``. Outside
    one, pyplot is imported (only now) and used if an interactive backend is
    active; with a non-interactive backend a warning suggests
    :func:`save_figure` instead.
    """
    png = figure_to_png_bytes(fig, dpi=dpi)
    if _in_notebook():
        from IPython.display import Image, display  # type: ignore[import-not-found]

        display(Image(data=png))
        return
    import matplotlib

    backend = str(matplotlib.get_backend()).lower()
    if backend in _NON_INTERACTIVE or backend.endswith("inline"):
        warnings.warn(
            f"no interactive matplotlib backend (backend={backend!r}); "
            "use crosslens.viz.save_figure(fig, path) instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    import matplotlib.pyplot as plt
    from matplotlib.image import imread

    # pyplot cannot adopt a bare Figure portably, so show its rendering in a
    # fresh pyplot figure of the same size.
    w, h = fig.get_size_inches()
    pfig = plt.figure(figsize=(w, h), dpi=dpi)
    ax = pfig.add_axes((0, 0, 1, 1))
    ax.imshow(imread(io.BytesIO(png), format="png"))
    ax.set_axis_off()
    plt.show()
