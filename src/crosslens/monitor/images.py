"""Images of the log: overlay strips, image strips and PNG bytes (numpy + Pillow)."""
from __future__ import annotations

import io

import numpy as np

from ..viz import overlay, to_display_image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` / ``(H, W, C)`` image as display RGB ``uint8`` (min-max rescaled as
    :func:`crosslens.viz.to_display_image` does)."""
    return np.clip(np.rint(to_display_image(image) * 255.0), 0, 255).astype(np.uint8)


def strip(images: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """RGB ``uint8`` images of one size side by side, in one ``(H, N * W, 3)`` image."""
    return np.concatenate([np.asarray(i, dtype=np.uint8) for i in images], axis=1)


def overlay_strip(images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Each channels-last image with its attribution map blended over it
    (:func:`crosslens.viz.overlay`, the display scaled per map), side by side."""
    return strip([overlay(image, amap) for image, amap in zip(images, maps)])


def enlarged(image: np.ndarray, min_height: int) -> np.ndarray:
    """``image`` repeated by the smallest integer factor that makes it ``min_height`` rows
    high (nearest neighbour: a 16x16 probe stays readable, pixels stay exact)."""
    factor = max(1, -(-min_height // image.shape[0]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB ``uint8`` image as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
