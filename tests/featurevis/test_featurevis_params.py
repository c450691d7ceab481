"""Parameterizations: exact adjoints, inverses, and the Fourier basis' 1/f spectrum."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.featurevis.params import COLOR_CORRELATION, FourierParam, PixelParam, rfft2_freqs
from crosslens.featurevis.spectrum import spectral_slope

RNG = np.random.default_rng(0)


def _inner(a, b):
    return float(np.sum(a * b))


@pytest.mark.parametrize("size", [(16, 16), (15, 17), (8, 13), (9, 9)])
def test_fourier_adjoint_is_exact(size):
    """<irfft2(scale * p), g> == <p, adjoint(g)>: the hand-written adjoint of the inverse
    FFT (rfft2 with doubled conjugate-pair bins) for even and odd sizes."""
    param = FourierParam(2, size, 3)
    p = RNG.standard_normal(param.shape)
    g = RNG.standard_normal((2,) + size + (3,))
    lhs = _inner(param.linear(p), g)
    rhs = _inner(p, param.linear_vjp(g))
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)


def _finite_difference_check(param, p, g, eps=1e-6, samples=12):
    """Directional derivatives of <forward(p), g> against the vjp."""
    vjp = param.vjp(p, g)
    rng = np.random.default_rng(1)
    for _ in range(samples):
        d = rng.standard_normal(p.shape)
        numeric = (_inner(param.forward(p + eps * d), g)
                   - _inner(param.forward(p - eps * d), g)) / (2 * eps)
        assert abs(numeric - _inner(vjp, d)) <= 1e-6 * max(1.0, abs(numeric)), (numeric,
                                                                                _inner(vjp, d))


@pytest.mark.parametrize("value_range", ["sigmoid", "clip"])
@pytest.mark.parametrize("decorrelate", [False, True])
def test_fourier_vjp_matches_finite_differences(value_range, decorrelate):
    param = FourierParam(2, (10, 11), 3, value_range=value_range, decorrelate=decorrelate)
    p = RNG.standard_normal(param.shape) * 0.05  # clip: values well inside (0, 1)
    _finite_difference_check(param, p, RNG.standard_normal((2, 10, 11, 3)))


@pytest.mark.parametrize("value_range", ["sigmoid", "clip"])
@pytest.mark.parametrize("decorrelate", [False, True])
def test_pixel_vjp_matches_finite_differences(value_range, decorrelate):
    param = PixelParam(2, (6, 7), 3, value_range=value_range, decorrelate=decorrelate)
    p = RNG.uniform(-0.3, 0.3, param.shape)
    _finite_difference_check(param, p, RNG.standard_normal((2, 6, 7, 3)))


def test_clip_range_passes_gradient_back_into_the_range_only():
    param = PixelParam(1, (1, 3), 1, value_range="clip")
    p = np.array([-0.5, 0.0, 0.5]).reshape(1, 1, 3, 1)  # image 0, 0.5, 1
    up = param.vjp(p, np.ones_like(p)).ravel()
    down = param.vjp(p, -np.ones_like(p)).ravel()
    np.testing.assert_array_equal(up, [1, 1, 0])  # at 1 an increase is blocked
    np.testing.assert_array_equal(down, [0, -1, -1])  # at 0 a decrease is blocked


@pytest.mark.parametrize("cls", [PixelParam, FourierParam])
@pytest.mark.parametrize("value_range", ["sigmoid", "clip"])
def test_from_image_inverts_forward(cls, value_range):
    param = cls(2, (12, 9), 3, value_range=value_range, decorrelate=True)
    image = RNG.uniform(0.05, 0.95, (2, 12, 9, 3))
    np.testing.assert_allclose(param.forward(param.from_image(image)), image, atol=1e-12)


def test_color_decorrelation_matrix_is_lucids_normalized():
    raw = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    np.testing.assert_allclose(COLOR_CORRELATION * np.linalg.norm(raw, axis=0).max(), raw)
    assert np.isclose(np.linalg.norm(COLOR_CORRELATION, axis=0).max(), 1.0)


@pytest.mark.parametrize("decay_power,expected", [(1.0, -2.0), (0.0, 0.0)])
def test_fourier_random_init_follows_power_law(decay_power, expected):
    """Random coefficients scaled by 1/f**d give an image whose power spectrum falls as
    1/f**(2d): slope -2 for Lucid's default (natural-image statistics), 0 without."""
    param = FourierParam(8, (128, 128), 1, decorrelate=False, decay_power=decay_power)
    p = param.noise(np.random.default_rng(0), 0.01)
    lin = param.linear(p)
    slopes = [spectral_slope(img, low=2) for img in lin]
    assert abs(np.mean(slopes) - expected) < 0.15, slopes


def test_fourier_noise_start_is_gray_with_small_natural_noise():
    param = FourierParam(4, (64, 64), 3)
    image = param.forward(param.noise(np.random.default_rng(0), 0.01))
    assert abs(image.mean() - 0.5) < 0.01 and 0.001 < image.std() < 0.05


def test_fourier_blur_is_the_gaussian_transfer_function():
    """Blurring Fourier parameters equals a circular Gaussian blur of the linear image."""
    param = FourierParam(1, (32, 32), 1, decorrelate=False)
    p = RNG.standard_normal(param.shape)
    sigma = 1.5
    blurred = param.linear(param.blur(p, sigma))[0, :, :, 0]
    image = param.linear(p)[0, :, :, 0]
    offsets = np.arange(-16, 16)
    kernel1 = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = np.outer(kernel1, kernel1)
    kernel = np.fft.ifftshift(kernel / kernel.sum())
    reference = np.real(np.fft.ifft2(np.fft.fft2(image) * np.fft.fft2(kernel)))
    np.testing.assert_allclose(blurred, reference, atol=2e-3 * np.abs(image).max())


def test_rfft2_freqs():
    freqs = rfft2_freqs(4, 5)
    assert freqs.shape == (4, 3)
    assert freqs[0, 0] == 0 and np.isclose(freqs[2, 0], 0.5) and np.isclose(freqs[0, 2], 0.4)


def test_spectral_slope_separates_noise_from_natural_statistics():
    rng = np.random.default_rng(0)
    white = rng.uniform(0, 1, (96, 96, 3))
    assert abs(spectral_slope(white)) < 0.2
    # integrated (brown) noise has power ~ 1/f^2 along both axes
    brown = np.cumsum(np.cumsum(rng.standard_normal((96, 96)), axis=0), axis=1)
    assert spectral_slope(brown) < -1.5
