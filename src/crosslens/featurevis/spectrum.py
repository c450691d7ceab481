"""Power spectra of images: is a visualization structured, or noise?

Natural images have a power spectrum falling like ``1 / f**2`` (slope -2 in log-log);
white noise has a flat one (slope 0). :func:`spectral_slope` fits that slope.
"""
from __future__ import annotations

import numpy as np


def radial_power_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a ``(H, W)`` or ``(H, W, C)`` image.

    The image is averaged over channels, its mean removed and a Hann window applied
    (so the image border does not add spurious ``1/f²`` power). Returns
    ``(frequencies in cycles per pixel, mean power)`` for integer radii ``1 .. min(H, W)//2``.
    """
    image = np.asarray(image, dtype=np.float64)
    gray = image.mean(axis=-1) if image.ndim == 3 else image
    h, w = gray.shape
    window = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    gray = (gray - gray.mean()) * window
    power = np.abs(np.fft.fft2(gray)) ** 2
    fy = np.fft.fftfreq(h)[:, None] * h
    fx = np.fft.fftfreq(w)[None, :] * w
    # radius in units of the smaller side's frequency step
    radius = np.sqrt((fy * min(h, w) / h) ** 2 + (fx * min(h, w) / w) ** 2)
    rings = np.round(radius).astype(np.int64)
    top = min(h, w) // 2
    sums = np.bincount(rings.ravel(), weights=power.ravel(), minlength=top + 1)
    counts = np.bincount(rings.ravel(), minlength=top + 1)
    radii = np.arange(1, top + 1)
    return radii / min(h, w), sums[1:top + 1] / np.maximum(counts[1:top + 1], 1)


def spectral_slope(image: np.ndarray, low: int = 2) -> float:
    """Least-squares slope of log power against log frequency (radii ``low`` ..
    ``min(H, W)//2``): about -2 for natural images, 0 for white noise."""
    freqs, power = radial_power_spectrum(image)
    freqs, power = freqs[low - 1:], power[low - 1:]
    keep = power > 0
    slope, _ = np.polyfit(np.log(freqs[keep]), np.log(power[keep]), 1)
    return float(slope)
