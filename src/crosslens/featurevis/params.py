"""Image parameterizations: what the optimizer updates, and how it becomes an image.

Every parameterization maps parameters ``p`` to a canonical image batch ``(N, H, W, C)``
in ``[0, 1]`` (:meth:`forward`) and back-propagates an image gradient to ``p``
(:meth:`vjp`, the exact vector-Jacobian product, written out by hand: the adjoint of
every linear step and the derivative of the value-range map). All of it runs in numpy on
the host, identically for every backend; its cost is small next to the model's pass
(see ``info["host_seconds"]`` of a run).

- :class:`PixelParam`: one parameter per pixel and channel.
- :class:`FourierParam`: Lucid's default: scaled Fourier coefficients of each channel
  (amplitude ``1 / f**decay_power``, so steps are equalized across frequencies),
  then color decorrelation.

Both share the last two steps: an optional *color decorrelation* (a fixed 3x3 matrix, the
square root of ImageNet's color covariance, Lucid's ``color_correlation_svd_sqrt``) and
the *value range*: ``"sigmoid"`` (``image = sigmoid(lin)``) or ``"clip"``
(``image = clip(lin + 0.5, 0, 1)``, with the gradient passed where it points back into
the range, and the parameters projected back onto the range after each step).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError

#: Square root of ImageNet's RGB covariance (Lucid), columns normalized to max norm 1.
COLOR_CORRELATION = np.array([[0.26, 0.09, 0.02],
                              [0.27, 0.00, -0.05],
                              [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION / np.max(np.linalg.norm(COLOR_CORRELATION, axis=0))
_RANGES = ("sigmoid", "clip")
_LOGIT_EPS = 1e-3  # images at exactly 0 or 1 have no finite sigmoid pre-image


class Parameterization:
    """Base class (see the module docstring). ``shape`` is the parameter array's shape."""

    batch: int
    size: tuple[int, int]
    channels: int
    shape: tuple[int, ...]
    #: whether a parameter pixel maps to the image pixel at the same place (clipping ops)
    pixelwise = False

    def noise(self, rng: np.random.Generator, scale: float) -> np.ndarray:
        """Lucid's random start: parameters drawn from ``N(0, scale²)``."""
        return rng.normal(0.0, scale, self.shape)

    def forward(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def vjp(self, p: np.ndarray, grad_image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def from_image(self, image: np.ndarray) -> np.ndarray:
        """Parameters whose image is ``image`` (clipped into the value range)."""
        raise NotImplementedError

    def project(self, p: np.ndarray) -> np.ndarray:
        """Back onto the feasible set after a step (only ``"clip"`` ranges need it)."""
        return p

    def blur(self, p: np.ndarray, sigma: float) -> np.ndarray:
        raise OptionError(f"{type(self).__name__} does not support the Blur regularizer")


class _ColorAndRange:
    """The decorrelation and value-range steps shared by pixel and Fourier images."""

    def __init__(self, channels: int, value_range: str, decorrelate: bool) -> None:
        if value_range not in _RANGES:
            raise OptionError(f"value_range must be one of {_RANGES}, got {value_range!r}")
        if decorrelate and channels != 3:
            raise OptionError(f"color decorrelation needs 3 channels, the image has {channels}:"
                              " pass decorrelate=False")
        self.value_range, self.decorrelate = value_range, bool(decorrelate)

    def color(self, v: np.ndarray) -> np.ndarray:
        return v @ COLOR_CORRELATION.T if self.decorrelate else v

    def color_vjp(self, g: np.ndarray) -> np.ndarray:
        return g @ COLOR_CORRELATION if self.decorrelate else g

    def color_inverse(self, rgb: np.ndarray) -> np.ndarray:
        return rgb @ np.linalg.inv(COLOR_CORRELATION).T if self.decorrelate else rgb

    def to_range(self, lin: np.ndarray) -> np.ndarray:
        if self.value_range == "sigmoid":
            return 1.0 / (1.0 + np.exp(-lin))
        return np.clip(lin + 0.5, 0.0, 1.0)

    def range_vjp(self, lin: np.ndarray, g: np.ndarray,
                  image: np.ndarray | None = None) -> np.ndarray:
        """Chain rule through the value range (``image``: ``to_range(lin)`` if known)."""
        if self.value_range == "sigmoid":
            s = self.to_range(lin) if image is None else image
            return g * s * (1.0 - s)
        # Pass the gradient inside the range, and at a bound when it points back inside
        # (the clip's derivative alone would freeze saturated pixels forever).
        value = lin + 0.5
        passing = ((value > 0.0) | (g > 0)) & ((value < 1.0) | (g < 0))
        return g * passing

    def range_inverse(self, image: np.ndarray) -> np.ndarray:
        if self.value_range == "sigmoid":
            image = np.clip(image, _LOGIT_EPS, 1.0 - _LOGIT_EPS)
            return np.log(image) - np.log1p(-image)
        return np.clip(image, 0.0, 1.0) - 0.5


class PixelParam(Parameterization, _ColorAndRange):
    """One parameter per pixel and channel: ``image = range(color(p))``.

    Parameters
    ----------
    batch, size, channels
        Number of images, ``(H, W)``, number of channels.
    value_range : {"clip", "sigmoid"}
        How values are kept in ``[0, 1]`` (see the module docstring).
    decorrelate : bool
        Apply the color decorrelation (3 channels only).
    """

    pixelwise = True

    def __init__(self, batch: int, size: tuple[int, int], channels: int = 3,
                 value_range: str = "clip", decorrelate: bool = False) -> None:
        _ColorAndRange.__init__(self, channels, value_range, decorrelate)
        self.batch, self.size, self.channels = int(batch), tuple(size), int(channels)
        self.shape = (self.batch,) + self.size + (self.channels,)

    def forward(self, p):
        return self.to_range(self.color(p))

    def vjp(self, p, grad_image):
        return self.color_vjp(self.range_vjp(self.color(p), grad_image))

    def from_image(self, image):
        return self.color_inverse(self.range_inverse(np.broadcast_to(image, self.shape)))

    def project(self, p):
        return self.from_image(self.forward(p)) if self.value_range == "clip" else p

    def blur(self, p, sigma):
        from ..core.imageops import gaussian_blur
        return gaussian_blur(p, sigma)

    def __repr__(self) -> str:
        return (f"PixelParam({self.batch}x{self.size[0]}x{self.size[1]}x{self.channels}, "
                f"{self.value_range}, decorrelate={self.decorrelate})")


def rfft2_freqs(h: int, w: int) -> np.ndarray:
    """``(h, w // 2 + 1)`` spatial frequencies (cycles per pixel) of ``rfft2`` bins."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


class FourierParam(Parameterization, _ColorAndRange):
    """Lucid's Fourier parameterization with color decorrelation.

    Parameters ``p`` of shape ``(N, H, W // 2 + 1, C, 2)`` are the real and imaginary
    parts of each channel's ``rfft2`` coefficients divided by ``scale = 1 / max(f,
    1 / max(H, W)) ** decay_power``; the image is

        lin = color(irfft2(scale * (p[..., 0] + i p[..., 1]), norm="ortho") / 4)
        image = range(lin)

    (the factor 1/4 is Lucid's). The adjoint of ``irfft2`` (orthonormal) is ``rfft2``
    with the bins that stand for two conjugate coefficients counted twice.

    Parameters
    ----------
    batch, size, channels
        Number of images, ``(H, W)``, number of channels.
    value_range : {"sigmoid", "clip"}
        How values are kept in ``[0, 1]``.
    decorrelate : bool
        Apply the color decorrelation (3 channels only).
    decay_power : float
        Exponent of the ``1/f`` amplitude scaling (1: Lucid's default).
    """

    def __init__(self, batch: int, size: tuple[int, int], channels: int = 3,
                 value_range: str = "sigmoid", decorrelate: bool = True,
                 decay_power: float = 1.0) -> None:
        _ColorAndRange.__init__(self, channels, value_range, decorrelate)
        self.batch, self.size, self.channels = int(batch), tuple(size), int(channels)
        h, w = self.size
        self.freqs = rfft2_freqs(h, w)
        self.decay_power = float(decay_power)
        self.scale = 1.0 / np.maximum(self.freqs, 1.0 / max(h, w)) ** self.decay_power
        self.shape = (self.batch, h, w // 2 + 1, self.channels, 2)
        # rfft2 bins standing for a coefficient and its conjugate (not DC, not Nyquist)
        self.multiplicity = np.full(w // 2 + 1, 2.0)
        self.multiplicity[0] = 1.0
        if w % 2 == 0:
            self.multiplicity[-1] = 1.0

    def _spectrum_scale(self) -> np.ndarray:
        return self.scale[None, :, :, None]

    def linear(self, p: np.ndarray) -> np.ndarray:
        """The image before color decorrelation and the value range."""
        spectrum = (p[..., 0] + 1j * p[..., 1]) * self._spectrum_scale()
        return np.fft.irfft2(spectrum, s=self.size, axes=(1, 2), norm="ortho") / 4.0

    def linear_vjp(self, grad_linear: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`linear` (which is linear in ``p``)."""
        spectrum = np.fft.rfft2(grad_linear, axes=(1, 2), norm="ortho")
        spectrum *= self.multiplicity[None, None, :, None] * self._spectrum_scale() / 4.0
        return np.stack([spectrum.real, spectrum.imag], axis=-1)

    def _forward(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # the loop calls vjp(p) right after forward(p): keep that p's inverse FFT and image
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] is p:
            return cached[1], cached[2]
        lin = self.color(self.linear(p))
        image = self.to_range(lin)
        self._cache = (p, lin, image)
        return lin, image

    def forward(self, p):
        return self._forward(p)[1]

    def vjp(self, p, grad_image):
        lin, image = self._forward(p)
        return self.linear_vjp(self.color_vjp(self.range_vjp(lin, grad_image, image)))

    def from_image(self, image):
        pre = self.color_inverse(self.range_inverse(np.broadcast_to(image, self.batch_shape)))
        spectrum = np.fft.rfft2(pre * 4.0, axes=(1, 2), norm="ortho") / self._spectrum_scale()
        return np.stack([spectrum.real, spectrum.imag], axis=-1)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return (self.batch,) + self.size + (self.channels,)

    def project(self, p):
        return self.from_image(self.forward(p)) if self.value_range == "clip" else p

    def blur(self, p, sigma):
        """Gaussian blur of the (pre-decorrelation) image: its transfer function
        ``exp(-2 pi² sigma² f²)`` multiplies the coefficients (a circular blur)."""
        transfer = np.exp(-2.0 * np.pi ** 2 * sigma ** 2 * self.freqs ** 2)
        return p * transfer[None, :, :, None, None]

    def __repr__(self) -> str:
        return (f"FourierParam({self.batch}x{self.size[0]}x{self.size[1]}x{self.channels}, "
                f"{self.value_range}, decorrelate={self.decorrelate}, "
                f"decay_power={self.decay_power:g})")


def make_param(param: Any, batch: int, size: tuple[int, int], channels: int,
               value_range: str | None, decorrelate: bool | None,
               decay_power: float) -> Parameterization:
    """A parameterization from a name (``"pixel"``, ``"fourier"``) or an instance."""
    if isinstance(param, Parameterization):
        return param
    if param == "pixel":
        return PixelParam(batch, size, channels, value_range or "clip", bool(decorrelate))
    if param == "fourier":
        decorrelate = channels == 3 if decorrelate is None else decorrelate
        return FourierParam(batch, size, channels, value_range or "sigmoid", decorrelate,
                            decay_power)
    raise OptionError(f"unknown param {param!r}: use 'fourier', 'pixel', or a generator "
                      "(generator=crosslens.featurevis.Generator(...))")
