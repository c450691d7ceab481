"""Established toolsets as oracles: Captum on the PyTorch builds, tf-keras-vis on Keras.

Same model, same target, same integration points / noise: the attributions must agree.
Noise is not drawn by us here: the toolset's own draw is reproduced from its seed (Captum:
``torch.normal`` after ``torch.manual_seed``; tf-keras-vis: ``np.random.normal`` after
``np.random.seed``) and passed to crosslens with ``noise=`` shaped ``(samples, N, ...)``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import crosslens as cl
from reference import methods_numpy as R

TARGET = [3, 1, 4]
KINDS = ("small_cnn", "small_resnet")
STEPS = 8


def _torch_attr(algo, x, **kwargs):
    xt = torch.tensor(x, requires_grad=True)
    return algo.attribute(xt, target=torch.tensor(TARGET), **kwargs).detach().numpy()


# ----------------------------------------------------------------------------- Captum
@pytest.mark.parametrize("kind", KINDS)
def test_saliency_equals_captum(zoo, kind):
    from captum.attr import Saliency

    model, x = zoo.model("torch", kind), zoo.x(kind)
    ours, _ = zoo.explain("torch", kind, x, "saliency", target=TARGET)
    zoo.assert_close(ours, _torch_attr(Saliency(model), x, abs=False), 1e-12, "Saliency")
    ours_abs, _ = zoo.explain("torch", kind, x, "saliency", target=TARGET, abs=True)
    zoo.assert_close(ours_abs, _torch_attr(Saliency(model), x), 1e-12, "Saliency abs")


# Captum rounds the step sizes to float32 (integrated_gradients.py: ``.float()``) and
# takes Riemann alphas from a float32 torch.linspace; ours are exact float64. With 8 steps
# the Riemann points and weights (multiples of 1/16) are exact in float32, so those agree
# to rounding; the Gauss-Legendre weights are not, so that rule agrees to ~2e-8.
IG_RTOL = {"gausslegendre": 1e-7, "riemann_left": 1e-12, "riemann_right": 1e-12,
           "riemann_middle": 1e-12, "riemann_trapezoid": 1e-12}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", list(IG_RTOL))
def test_integrated_gradients_equal_captum(zoo, kind, rule):
    from captum.attr import IntegratedGradients

    model, x = zoo.model("torch", kind), zoo.x(kind)
    batch_base = np.random.default_rng(4).uniform(-0.5, 0.5, x.shape)
    for ours_base, captum_base in (("zeros", None), (0.5, 0.5),
                                   (batch_base, torch.tensor(batch_base))):
        ours, _ = zoo.explain("torch", kind, x, "integrated_gradients", target=TARGET,
                              steps=STEPS, rule=rule, baseline=ours_base)
        theirs = _torch_attr(IntegratedGradients(model), x, baselines=captum_base,
                             n_steps=STEPS, method=rule)
        err = zoo.assert_close(ours, theirs, IG_RTOL[rule], f"IG {rule} vs Captum")
        print(f"IG {rule} {kind} baseline={type(ours_base).__name__}: rel err vs Captum {err:.1e}")


def captum_noise(seed: int, x: np.ndarray, samples: int, stdev: float) -> np.ndarray:
    """Captum NoiseTunnel's draw (noise_tunnel.py ``_add_noise_to_input``) as ``(S, N, ...)``.

    Captum draws ``torch.normal(0, stdev_expanded)`` with ``stdev_expanded`` a float32
    tensor of shape ``(N * S, ...)``, rows ordered sample-major per input
    (``input.repeat_interleave(S)``): row ``n * S + s``.
    """
    torch.manual_seed(seed)
    size = (x.shape[0] * samples,) + x.shape[1:]
    noise = torch.normal(0, torch.tensor(stdev).repeat(size)).numpy().astype(np.float64)
    return np.swapaxes(noise.reshape((x.shape[0], samples) + x.shape[1:]), 0, 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("nt_type,method", [("smoothgrad", "smoothgrad"),
                                            ("smoothgrad_sq", "squaregrad"),
                                            ("vargrad", "vargrad")])
def test_noise_tunnel_equals_captum(zoo, kind, nt_type, method):
    from captum.attr import NoiseTunnel, Saliency

    model, x = zoo.model("torch", kind), zoo.x(kind)
    samples, stdev, seed = 4, 0.2, 123
    noise = captum_noise(seed, x, samples, stdev)
    torch.manual_seed(seed)
    theirs = _torch_attr(NoiseTunnel(Saliency(model)), x, nt_type=nt_type, nt_samples=samples,
                         stdevs=stdev, abs=False)
    ours, _ = zoo.explain("torch", kind, x, method, target=TARGET, samples=samples, noise=noise)
    zoo.assert_close(ours, theirs, 1e-10, f"{nt_type} vs Captum NoiseTunnel")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_relu_rules_equal_captum(zoo, kind, method):
    from captum.attr import Deconvolution, GuidedBackprop

    model, x = zoo.model("torch", kind), zoo.x(kind)
    algo = (GuidedBackprop if method == "guided_backprop" else Deconvolution)(model)
    ours, _ = zoo.explain("torch", kind, x, method, target=TARGET)
    zoo.assert_close(ours, _torch_attr(algo, x), 1e-12, f"{method} vs Captum")


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_relu_rules_catch_functional_relu_where_captum_does_not(zoo, method):
    """On the F.relu build Captum's module hooks see no ReLU and return the plain
    gradient; the TorchFunctionMode reroutes F.relu / relu_ so ours stays exact."""
    from captum.attr import Deconvolution, GuidedBackprop

    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    model = zoo.model("torch_functional", "small_cnn")
    reference = getattr(R, method)(spec, x, TARGET)
    ours, _ = zoo.explain("torch_functional", "small_cnn", x, method, target=TARGET)
    zoo.assert_close(ours, reference, 1e-8, f"{method} on F.relu model")
    algo = (GuidedBackprop if method == "guided_backprop" else Deconvolution)(model)
    theirs = _torch_attr(algo, x)
    zoo.assert_close(theirs, R.saliency(spec, x, TARGET), 1e-8, "Captum = plain gradient")
    assert zoo.rel_err(theirs, reference) > 1e-2


# ----------------------------------------------------------------------------- tf-keras-vis
def _tfkv_saliency(model, x_nhwc, **kwargs):
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    return np.asarray(Saliency(model)(CategoricalScore(TARGET), x_nhwc, normalize_map=False,
                                      **kwargs))


@pytest.mark.parametrize("kind", KINDS)
def test_saliency_equals_tf_keras_vis(zoo, kind):
    """tf-keras-vis takes |grad| (gradient_modifier) and, unless keepdims=True, the max over
    channels: ours is abs=True, and reduce_channels="max_abs" for the channel max."""
    model, x = zoo.model("keras", kind), zoo.x(kind)
    xk = zoo.nhwc(x)
    signed = cl.explain(model, xk, "saliency", target=TARGET).attributions
    zoo.assert_close(signed, _tfkv_saliency(model, xk, keepdims=True, gradient_modifier=None),
                     1e-12, "signed saliency")
    absolute = cl.explain(model, xk, "saliency", target=TARGET, abs=True).attributions
    zoo.assert_close(absolute, _tfkv_saliency(model, xk, keepdims=True), 1e-12, "abs")
    reduced = cl.explain(model, xk, "saliency", target=TARGET, abs=True,
                         reduce_channels="max_abs").attributions
    zoo.assert_close(reduced, _tfkv_saliency(model, xk), 1e-12, "abs, max over channels")


def tfkv_noise(seed: int, x_nhwc: np.ndarray, samples: int, smooth_noise: float) -> np.ndarray:
    """tf-keras-vis Saliency's SmoothGrad draw (saliency.py): after ``np.random.seed``,
    ``np.random.normal(0, sigma, (S, N, H, W, C))`` with ``sigma = smooth_noise·(max - min)``
    of each sample, shape ``(S, N, 1, 1, 1)``."""
    spread = x_nhwc.max(axis=(1, 2, 3)) - x_nhwc.min(axis=(1, 2, 3))
    sigma = np.broadcast_to(smooth_noise * spread[None, :, None, None, None],
                            (samples, len(x_nhwc), 1, 1, 1))
    np.random.seed(seed)
    return np.random.normal(0.0, sigma, (samples,) + x_nhwc.shape)


@pytest.mark.parametrize("kind", KINDS)
def test_smoothgrad_equals_tf_keras_vis(zoo, kind):
    """Aligned with gradient_modifier=None (tf-keras-vis' default |grad| is averaged per
    sample, i.e. mean |g|, which is no crosslens aggregate; ours abs=True is |mean g|)."""
    model, x = zoo.model("keras", kind), zoo.x(kind)
    xk = zoo.nhwc(x)
    samples, level, seed = 4, 0.2, 7
    state = np.random.get_state()
    try:
        noise = tfkv_noise(seed, xk, samples, level)
        np.random.seed(seed)
        theirs = _tfkv_saliency(model, xk, keepdims=True, gradient_modifier=None,
                                smooth_samples=samples, smooth_noise=level)
    finally:
        np.random.set_state(state)
    ours = cl.explain(model, xk, "smoothgrad", target=TARGET, samples=samples,
                      noise=noise).attributions
    zoo.assert_close(ours, theirs, 1e-12, "smoothgrad vs tf-keras-vis")
