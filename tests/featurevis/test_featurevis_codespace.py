"""AM in code space (through a generator) and AM with an expert (a learned prior), on tiny
seeded models trained on scikit-learn's digits; the backends' vector-Jacobian product."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
import crosslens.featurevis as fv
from crosslens.backends import get_backend
from reference.numpy_nets import input_gradient

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
import digits  # noqa: E402  (tests/featurevis/digits.py)

CLASSES = list(range(10))


def probabilities(result):
    with torch.no_grad():
        p = torch.softmax(digits.classifier()(torch.tensor(result.inputs)), 1).numpy()
    return p[np.arange(len(p)), CLASSES[:len(p)]]


def am(**options):
    defaults = dict(batch=10, channels=1, steps=100, transforms=None, seed=0)
    defaults.update(options)
    return cl.visualize(digits.classifier(), fv.class_prob(CLASSES, log=True), **defaults)


@pytest.mark.parametrize("flavor", ["torch", "keras"])
def test_vjp_is_the_transposed_jacobian(zoo, flavor):
    """backend.vjp(x, g) == J(x)^T g: against numpy backprop on the reference net."""
    spec, x = zoo.spec("small_resnet"), zoo.x("small_resnet")
    g = np.random.default_rng(0).standard_normal((3, spec.n_classes))
    backend = get_backend(zoo.model(flavor, "small_resnet"))
    with backend.session():
        native = backend.prepare(zoo.to_model(flavor, x))
        out = backend.vjp(native, backend.ops.asarray(g))
    np.testing.assert_allclose(zoo.from_model(flavor, backend.ops.to_numpy(out)),
                               input_gradient(spec, x, g), rtol=1e-9, atol=1e-12)


def test_vjp_of_a_generator_in_both_frameworks():
    z = np.random.default_rng(1).standard_normal((4, digits.LATENT))
    cot = np.random.default_rng(2).standard_normal((4, 1, 8, 8))
    _, decoder = digits.autoencoder()
    zt = torch.tensor(z, requires_grad=True)
    (expected,) = torch.autograd.grad(decoder(zt), zt, grad_outputs=torch.tensor(cot))
    for model, c in ((decoder, cot), (digits.keras_decoder(), np.transpose(cot, (0, 2, 3, 1)))):
        backend = get_backend(model)
        with backend.session():
            got = backend.ops.to_numpy(backend.vjp(backend.ops.asarray(z), backend.ops.asarray(c)))
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-10, atol=1e-13)


def test_codespace_am_reaches_every_class_on_the_data_manifold():
    """Optimizing the decoder's code gives digit-like images with p > 0.9; pixel AM
    reaches the same probabilities with images as far from any digit as uniform noise."""
    _, decoder = digits.autoencoder()
    code = am(generator=fv.Generator(decoder, digits.LATENT), lr=0.1)
    pixel = am(param="pixel", size=8, lr=0.05)
    assert np.all(probabilities(code) > 0.9) and np.all(probabilities(pixel) > 0.9)
    near_code = digits.nearest_distance(code.images).mean()
    near_pixel = digits.nearest_distance(pixel.images).mean()
    assert near_code < 0.6 * near_pixel, (near_code, near_pixel)
    assert code.params.shape == (10, digits.LATENT)
    assert code.info["size"] == (8, 8) and code.images.shape == (10, 8, 8, 1)


def test_generator_may_be_a_keras_model_for_a_torch_classifier():
    """Cross-framework chain rule: a Keras decoder (same weights) gives the same image
    sequence as the PyTorch decoder."""
    _, decoder = digits.autoencoder()
    runs = [cl.visualize(digits.classifier(), fv.class_logit([1, 3, 5, 7]), batch=4, channels=1,
                         steps=8, transforms=None, seed=0, lr=0.1, record=range(1, 9),
                         generator=fv.Generator(g, digits.LATENT, latent_weight=0.1))
            for g in (decoder, digits.keras_decoder())]
    a = np.stack([runs[0].history[k] for k in range(1, 9)])
    b = np.stack([runs[1].history[k] for k in range(1, 9)])
    assert np.abs(a[-1] - a[0]).max() > 0.01
    np.testing.assert_allclose(a, b, atol=1e-10)


class _LogGaussian(torch.nn.Module):
    """log p(x) = -|x - mu|² / (2 s²) per sample (NCHW)."""

    def __init__(self, mu, s):
        super().__init__()
        self.register_buffer("mu", torch.tensor(mu))  # float64: the backend's dtype
        self.s = s

    def forward(self, x):
        return -((x - self.mu) ** 2).sum(dim=(1, 2, 3)) / (2 * self.s ** 2)


def test_density_prior_gradient_is_grad_log_p():
    mu = np.random.default_rng(0).uniform(0, 1, (1, 1, 8, 8))
    prior = fv.Prior(_LogGaussian(mu, 0.5), kind="density", weight=2.0, input_range=(-1, 1))
    bound = prior.bind(1)
    image = np.random.default_rng(1).uniform(0, 1, (3, 8, 8, 1))
    with bound.backend.session():
        grad = bound.grad(image)
    x = 2 * image - 1  # input_range (-1, 1): dx/dimage = 2
    expected = 2.0 * 2 * -(x - np.transpose(mu, (0, 2, 3, 1))) / 0.25
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_keras_denoiser_prior_for_a_torch_classifier():
    """D(x) = x/2 + 1/4 is the ideal denoiser of a delta at 0.5 (shrinking by 1/2): its
    score (D(x) - x)/sigma² pulls the image to 0.5; the objective is switched off."""
    keras = pytest.importorskip("keras")
    inp = keras.Input((8, 8, 1), dtype="float64")
    denoiser = keras.Model(inp, keras.layers.Rescaling(0.5, offset=0.25, dtype="float64")(inp))
    prior = fv.Prior(denoiser, kind="denoiser", sigma=0.5, weight=1.0)
    bound = prior.bind(1)
    image = np.random.default_rng(1).uniform(0, 1, (2, 8, 8, 1))
    np.testing.assert_allclose(bound.grad(image), -(image - 0.5) / 0.5, rtol=1e-12)
    result = cl.visualize(digits.classifier(), 0.0 * fv.class_logit(0), batch=2, channels=1,
                          size=8, param="pixel", init="random", steps=60, lr=0.05, prior=prior,
                          transforms=None, seed=0)
    assert np.abs(result.images - 0.5).max() < 0.05


def test_denoiser_prior_keeps_am_near_the_digits():
    """AM with an expert: a denoising autoencoder's score keeps pixel AM near real
    digits, while it still reaches the classes."""
    prior = fv.Prior(digits.denoiser(), kind="denoiser", sigma=digits.NOISE, weight=1.0)
    with_prior = am(param="pixel", size=8, lr=0.05, prior=prior)
    without = am(param="pixel", size=8, lr=0.05)
    assert probabilities(with_prior).mean() > 0.8
    assert digits.nearest_distance(with_prior.images).mean() < \
        0.6 * digits.nearest_distance(without.images).mean()
