"""Cross-framework parity: the same weights in PyTorch and Keras give the same attributions.

Every method of the foundation issue, float64 and float32 builds, relative error <= 1e-5;
seeded noise / random baselines are drawn identically on both frameworks (channels-first
order), which is also checked against the documented draw in numpy.
"""
from __future__ import annotations

import numpy as np
import pytest

from reference import methods_numpy as R

RTOL = 1e-5
TARGET = [2, 0, 4]
KINDS = ("small_cnn", "small_resnet")
LAYER = {"small_cnn": "conv2", "small_resnet": "block.conv1"}

CASES = {
    "saliency": ("saliency", lambda k: {}),
    "gradient_x_input": ("gradient_x_input", lambda k: {}),
    "saliency_layer": ("saliency", lambda k: {"layer": LAYER[k]}),
    "gradient_x_input_layer": ("gradient_x_input", lambda k: {"layer": LAYER[k]}),
    "ig": ("integrated_gradients", lambda k: {"steps": 16}),
    "ig_riemann_trapezoid_blur": ("integrated_gradients", lambda k: {
        "steps": 8, "rule": "riemann_trapezoid", "baseline": ["blur", 0.25]}),
    "ig_uniform_seeded": ("integrated_gradients", lambda k: {
        "steps": 8, "baseline": "uniform", "seed": 3}),
    "smoothgrad": ("smoothgrad", lambda k: {"samples": 4, "seed": 11}),
    "squaregrad": ("squaregrad", lambda k: {"samples": 4, "seed": 11}),
    "vargrad": ("vargrad", lambda k: {"samples": 4, "seed": 11, "noise_level": 0.3}),
    "smoothgrad_stdev_gxi": ("smoothgrad", lambda k: {
        "samples": 3, "seed": 5, "stdev": 0.2, "base": "gradient_x_input"}),
    "guided_backprop": ("guided_backprop", lambda k: {}),
    "deconvnet": ("deconvnet", lambda k: {}),
    "guided_backprop_layer": ("guided_backprop", lambda k: {"layer": LAYER[k]}),
    "activations": ("activations", lambda k: {"layer": LAYER[k]}),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_torch_keras_parity(zoo, case, kind, dtype):
    method, options = CASES[case]
    x = zoo.x(kind, dtype=np.dtype(dtype))
    got = {}
    for flavor in ("torch", "keras"):
        attr, exp = zoo.explain(flavor, kind, x, method, dtype=dtype, target=TARGET,
                                **options(kind))
        assert exp.numpy().dtype == np.dtype(dtype)  # numpy in -> numpy out, input's dtype
        got[flavor] = attr
    zoo.assert_close(got["keras"], got["torch"], RTOL, f"{case} {kind} {dtype}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("aggregate", ["smoothgrad", "vargrad"])
def test_seeded_noise_is_the_documented_channels_first_draw(zoo, kind, aggregate):
    """seed=s draws default_rng(s).standard_normal((samples, N, C, H, W)) · 0.15·(max-min)."""
    spec, x = zoo.spec(kind), zoo.x(kind)
    ref = getattr(R, aggregate)(spec, x, TARGET, R.seeded_noise(x, 4, seed=11))
    for flavor in ("torch", "keras"):
        attr, _ = zoo.explain(flavor, kind, x, aggregate, target=TARGET, samples=4, seed=11)
        zoo.assert_close(attr, ref, 1e-8, f"{aggregate} seed on {flavor}")


def test_seed_changes_noise_and_is_reproducible(zoo):
    x = zoo.x("small_cnn")
    a, _ = zoo.explain("torch", "small_cnn", x, "smoothgrad", target=TARGET, samples=3, seed=1)
    b, _ = zoo.explain("torch", "small_cnn", x, "smoothgrad", target=TARGET, samples=3, seed=1)
    c, _ = zoo.explain("torch", "small_cnn", x, "smoothgrad", target=TARGET, samples=3, seed=2)
    np.testing.assert_array_equal(a, b)
    assert zoo.rel_err(c, a) > 1e-3
