"""Each regularizer does what it claims."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.core.errors import OptionError
from crosslens.core.imageops import gaussian_blur, gaussian_matrix
from crosslens.featurevis.params import FourierParam, PixelParam
from crosslens.featurevis.regularizers import (L1, L2, Blur, ContributionClip, NormClip,
                                               OperatorState, TotalVariation,
                                               split_regularizers)

RNG = np.random.default_rng(0)


def high_frequency_energy(images):
    spectrum = np.abs(np.fft.fft2(images, axes=(1, 2))) ** 2
    h, w = images.shape[1:3]
    fy = np.abs(np.fft.fftfreq(h))[:, None]
    fx = np.abs(np.fft.fftfreq(w))[None, :]
    return spectrum[:, np.maximum(fy, fx) > 0.25].sum()


def test_pixel_blur_lowers_high_frequency_energy_and_keeps_the_mean():
    param = PixelParam(2, (32, 32), 3)
    p = RNG.uniform(-0.5, 0.5, param.shape)
    blurred = Blur(sigma=1.0).apply(p, OperatorState(param, None, None, None))
    assert high_frequency_energy(blurred) < 0.05 * high_frequency_energy(p)
    np.testing.assert_allclose(blurred.mean(axis=(1, 2)), p.mean(axis=(1, 2)), atol=0.01)
    np.testing.assert_allclose(gaussian_matrix(32, 1.0).sum(axis=1), 1.0)


def test_fourier_blur_lowers_high_frequency_energy():
    param = FourierParam(2, (32, 32), 3, decay_power=0.0)
    p = RNG.standard_normal(param.shape)
    before = param.linear(p)
    after = param.linear(Blur(sigma=1.0).apply(p, OperatorState(param, None, None, None)))
    assert high_frequency_energy(after) < 0.05 * high_frequency_energy(before)


def test_blur_of_a_constant_image_is_the_constant():
    image = np.full((1, 9, 7, 2), 0.3)
    np.testing.assert_allclose(gaussian_blur(image, 2.0), image)


def test_norm_clip_zeros_the_pixels_of_smallest_norm():
    param = PixelParam(1, (4, 5), 3, value_range="clip")
    zero = np.full((1, 4, 5, 3), 0.5)
    norms = RNG.permutation(20).reshape(4, 5) * 0.01 + 0.005  # distinct norms
    image = zero + norms[None, :, :, None] / np.sqrt(3)  # |image - zero| = norms
    p = param.from_image(image)
    out = param.forward(NormClip(percentile=25).apply(p, OperatorState(param, image, zero, None)))
    small = norms < np.percentile(norms, 25)
    assert small.sum() == 5
    np.testing.assert_allclose(out[0][small], 0.5)
    np.testing.assert_allclose(out[0][~small], image[0][~small])


def test_contribution_clip_zeros_the_pixels_of_smallest_contribution():
    """Contribution |sum_c (x - zero) * grad|: a large pixel with zero gradient
    contributes nothing and is zeroed; a small pixel with a large gradient stays."""
    param = PixelParam(1, (2, 5), 1, value_range="clip")
    zero = np.full((1, 2, 5, 1), 0.5)
    image = zero + np.array([[0.4, 0.01, 0.2, 0.3, 0.1], [0.2, 0.3, 0.05, 0.1, 0.15]])[None, ..., None]
    grad = np.array([[0.0, 50.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]])[None, ..., None]
    p = param.from_image(image)
    out = param.forward(ContributionClip(percentile=30).apply(
        p, OperatorState(param, image, zero, grad)))[0, :, :, 0]
    contribution = np.abs((image - zero) * grad)[0, :, :, 0]
    small = contribution < np.percentile(contribution, 30)
    assert small[0, 0] and not small[0, 1]
    np.testing.assert_allclose(out[small], 0.5)
    np.testing.assert_allclose(out[~small], image[0, :, :, 0][~small])


def test_clipping_needs_pixel_parameters():
    with pytest.raises(OptionError, match="pixel"):
        split_regularizers([NormClip(5)], FourierParam(1, (8, 8), 3))


@pytest.mark.parametrize("penalty", [L1(0.3), L2(0.7), TotalVariation(0.5),
                                     TotalVariation(0.5, beta=2.0), L2(0.2, centre=0.1)],
                         ids=repr)
def test_penalty_gradient_matches_finite_differences(penalty):
    image = RNG.uniform(0, 1, (2, 6, 5, 3))
    centre = np.full_like(image, 0.5)
    g = penalty.grad(image, centre)
    eps = 1e-6
    for _ in range(6):
        d = RNG.standard_normal(image.shape)
        numeric = (penalty.value(image + eps * d, centre).sum()
                   - penalty.value(image - eps * d, centre).sum()) / (2 * eps)
        assert np.isclose(numeric, np.sum(g * d), rtol=1e-5, atol=1e-9)


def test_total_variation_decreases_under_its_own_gradient_step():
    image = RNG.uniform(0, 1, (2, 16, 16, 3))
    tv = TotalVariation(1.0)
    before = tv.value(image)
    after = tv.value(image - 0.5 * tv.grad(image) / np.abs(tv.grad(image)).max() * 0.01)
    assert np.all(after < before)
    smooth = gaussian_blur(image, 1.0)
    assert np.all(tv.value(smooth) < 0.5 * before)  # and it measures roughness


def test_l2_gradient_step_is_yosinskis_decay():
    image = RNG.uniform(0, 1, (1, 4, 4, 3))
    centre = np.zeros_like(image)
    l2, lr = L2(1.0), 0.1
    stepped = image - lr * l2.grad(image, centre) * image[0].size / 2
    np.testing.assert_allclose(stepped, (1 - lr) * image)
