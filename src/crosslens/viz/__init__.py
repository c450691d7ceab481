"""Visualization of attributions and activations (numpy + matplotlib only).

Inputs are numpy arrays in channels-last layout: images ``(H, W, C)`` and raw,
signed attribution maps ``(H, W)`` or ``(H, W, C)``. Importing this package
does not import matplotlib; the functions that need it import it on call.
Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state).

Only the display is scaled, never the attribution: :func:`display_scale` picks, per
map, Captum's ``outlier_perc`` percentile clipping, ``"max_abs"`` or min-max for maps
with an offset (RISE); overlays, colour bars and :func:`scale_legend_html` share it.
"""
import sys as _sys

from ..core import figures as _figures
from .activation_grid import activation_grid
from .colors import (
    SCALES,
    DisplayScale,
    display_scale,
    has_offset,
    heatmap_rgba,
    is_channel_broadcast,
    normalize,
    outlier_threshold,
    reduce_channels,
    to_display_image,
)
from .grid import Cell, cell_scale, figure_grid, figure_to_png_bytes, save_figure, show
from .html import figure_html, png_data_uri, scale_legend_html
from .masks import apply_mask, attribution_mask, channel_mask, mask_image
from .overlay import is_signed, overlay, prepare_map
from .series import series_figure
from .tabular import beeswarm_offsets, feature_bars, feature_order, summary_plot
from .tokens import merge_subwords, token_colors, token_figure, token_html
from ..core.imageops import resize_bilinear

__all__ = [
    "Cell",
    "DisplayScale",
    "SCALES",
    "activation_grid",
    "apply_mask",
    "beeswarm_offsets",
    "feature_bars",
    "feature_order",
    "merge_subwords",
    "series_figure",
    "summary_plot",
    "token_colors",
    "token_figure",
    "token_html",
    "attribution_mask",
    "cell_scale",
    "channel_mask",
    "display_scale",
    "figure_grid",
    "figure_html",
    "figure_to_png_bytes",
    "has_offset",
    "heatmap_rgba",
    "is_channel_broadcast",
    "is_signed",
    "mask_image",
    "normalize",
    "outlier_threshold",
    "overlay",
    "png_data_uri",
    "prepare_map",
    "reduce_channels",
    "resize_bilinear",
    "save_figure",
    "scale_legend_html",
    "show",
    "to_display_image",
]

# results defined in core (Explanation, feature visualizations) draw through this package
_figures.set_renderer(_sys.modules[__name__])
