"""Visualization of attributions and activations (numpy + matplotlib only).

Inputs are numpy arrays in channels-last layout: images ``(H, W, C)`` and raw,
signed attribution maps ``(H, W)`` or ``(H, W, C)``. Importing this package
does not import matplotlib; the functions that need it import it on call.
Figures are plain ``matplotlib.figure.Figure`` objects (no pyplot state).
"""

from .activation_grid import activation_grid
from .colors import heatmap_rgba, heatmap_scale, normalize, reduce_channels, to_display_image
from .grid import Cell, figure_grid, figure_to_png_bytes, save_figure, show
from .html import figure_html, png_data_uri
from .masks import apply_mask, attribution_mask, channel_mask, mask_image
from .overlay import is_signed, overlay, prepare_map
from .resize import resize_bilinear

__all__ = [
    "Cell",
    "activation_grid",
    "apply_mask",
    "attribution_mask",
    "channel_mask",
    "figure_grid",
    "figure_html",
    "figure_to_png_bytes",
    "heatmap_rgba",
    "heatmap_scale",
    "is_signed",
    "mask_image",
    "normalize",
    "overlay",
    "png_data_uri",
    "prepare_map",
    "reduce_channels",
    "resize_bilinear",
    "save_figure",
    "show",
    "to_display_image",
]
