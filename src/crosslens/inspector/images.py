"""Images for the page: PNG data URLs of inputs, thumbnails, heatmaps and overlays.

Everything is numpy in, ``"data:image/png;base64,..."`` out (Pillow encodes). Inputs are
shown as the crosslens figures show them (:func:`crosslens.viz.colors.to_display_image`:
each image min-max rescaled), small images are enlarged with nearest-neighbour pixels so
an 8x8 digit stays crisp in the browser.
"""
from __future__ import annotations

import base64
import io

import numpy as np

from ..core.imageops import resize_bilinear
from ..viz.colors import heatmap_rgba, to_display_image
from ..viz.overlay import overlay

#: Smallest side of an image sent to the page (smaller ones are enlarged, nearest).
MIN_SIDE = 96
THUMB_SIDE = 48
#: Largest side of a tile (top-9 instances, group maps); boxes stay in input pixels.
TILE_SIDE = 112
#: Group colours (Building Blocks' palette: distinct at a glance, colour-blind friendly).
PALETTE = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a6cee3", "#f781bf",
           "#a65628", "#66c2a5", "#999999", "#b2df8a", "#fdbf6f")


def png_data_url(image: np.ndarray) -> str:
    """A PNG data URL of ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` pixels (uint8, or
    floats in ``[0, 1]``)."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.nan_to_num(array) * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def channels_last(sample: np.ndarray, layout: str | None) -> np.ndarray:
    """One input sample ``(C, H, W)`` / ``(H, W, C)`` / ``(H, W)`` as ``(H, W, C)``."""
    sample = np.asarray(sample)
    if sample.ndim == 2:
        return sample[..., None]
    if sample.ndim == 3 and layout == "channels_first":
        return np.transpose(sample, (1, 2, 0))
    return sample


def display_image(sample: np.ndarray, layout: str | None) -> np.ndarray:
    """An input sample as an RGB ``(H, W, 3)`` image in ``[0, 1]``."""
    return to_display_image(channels_last(sample, layout))


def enlarge(image: np.ndarray, side: int = MIN_SIDE) -> np.ndarray:
    """``image`` repeated pixel-wise (nearest) so its smaller side is at least ``side``."""
    factor = max(1, int(np.ceil(side / max(1, min(image.shape[:2])))))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def shrink(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` resized (bilinear) so its larger side is at most ``side``."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return np.stack([resize_bilinear(image[..., c], size) for c in range(image.shape[2])], -1)


def thumbnail(image: np.ndarray) -> str:
    """A small PNG of a display image (enlarged when tiny, shrunk when large)."""
    return png_data_url(enlarge(shrink(image, THUMB_SIDE), THUMB_SIDE))


def picture(image: np.ndarray) -> str:
    """A display image as a PNG, enlarged when tiny."""
    return png_data_url(enlarge(image))


def upsample(map2d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A layer map ``(h, w)`` on the input's ``(H, W)`` grid (bilinear, half-pixel
    centres: exactly ``torch.nn.functional.interpolate(align_corners=False)``)."""
    map2d = np.asarray(map2d, dtype=np.float64)
    return map2d if map2d.shape == tuple(size) else resize_bilinear(map2d, tuple(size))


def overlay_png(image: np.ndarray, map2d: np.ndarray, signed: bool | None = None) -> str:
    """An attribution or activation map blended over the image (crosslens' overlay)."""
    return picture(overlay(image, upsample(map2d, image.shape[:2]), signed=signed))


def heatmap_png(map2d: np.ndarray, signed: bool | None = None) -> str:
    """A map alone, coloured (diverging around zero when signed), on white."""
    rgba = heatmap_rgba(np.asarray(map2d, dtype=np.float64), signed=signed)
    rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    return picture(rgb)


def hex_rgb(color: str) -> np.ndarray:
    """``"#rrggbb"`` as floats in ``[0, 1]``."""
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) / 255.0


def tinted(image: np.ndarray, weights: np.ndarray, color: str, strength: float = 0.75
           ) -> np.ndarray:
    """``image`` with ``color`` laid over it in proportion to ``weights`` in ``[0, 1]``."""
    w = strength * np.clip(weights, 0.0, 1.0)[..., None]
    return image * (1.0 - w) + hex_rgb(color) * w
