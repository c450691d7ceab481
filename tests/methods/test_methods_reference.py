"""Every method on every backend flavour equals its numpy reference (float64, <= 1e-8).

References: tests/reference/methods_numpy.py (independent of crosslens). Flavours: torch
and Keras builds of small_cnn and small_resnet, plus the Keras fused-ReLU build and the
torch functional-ReLU build for the ReLU-rule methods.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from reference import methods_numpy as R
from reference.numpy_nets import input_gradient, one_hot

RTOL = 1e-8
TARGET = [1, 3, 0]
STEPS = 8
SAMPLES = 4
KINDS = ("small_cnn", "small_resnet")
PLAIN = [(f, k) for f in ("torch", "keras") for k in KINDS]
RELU = PLAIN + [("torch_functional", "small_cnn"), ("keras_fused", "small_cnn")]
LAYER = {"small_cnn": "conv2", "small_resnet": "block.conv2"}


def _noise(x):
    return np.random.default_rng(7).standard_normal((SAMPLES,) + x.shape) * 0.3


def _sample_baseline(x):
    return np.random.default_rng(8).uniform(-0.5, 0.5, x.shape[1:])


def _batch_baseline(x):
    return np.random.default_rng(9).uniform(-0.5, 0.5, x.shape)


# case id -> (method, options(kind, x), reference(spec, kind, x), flavours)
CASES = {
    "saliency": ("saliency", lambda k, x: {}, lambda s, k, x: R.saliency(s, x, TARGET), RELU),
    "gradient_x_input": ("gradient_x_input", lambda k, x: {},
                         lambda s, k, x: R.gradient_x_input(s, x, TARGET), PLAIN),
    "saliency_layer": ("saliency", lambda k, x: {"layer": LAYER[k]},
                       lambda s, k, x: R.saliency(s, x, TARGET, layer=LAYER[k]), PLAIN),
    "gradient_x_input_layer": ("gradient_x_input", lambda k, x: {"layer": LAYER[k]},
                               lambda s, k, x: R.gradient_x_input(s, x, TARGET, LAYER[k]), PLAIN),
    "guided_backprop": ("guided_backprop", lambda k, x: {},
                        lambda s, k, x: R.guided_backprop(s, x, TARGET), RELU),
    "deconvnet": ("deconvnet", lambda k, x: {}, lambda s, k, x: R.deconvnet(s, x, TARGET), RELU),
    "guided_backprop_layer": ("guided_backprop", lambda k, x: {"layer": LAYER[k]},
                              lambda s, k, x: R.guided_backprop(s, x, TARGET, LAYER[k]), PLAIN),
    "activations": ("activations", lambda k, x: {"layer": LAYER[k]},
                    lambda s, k, x: R.activation(s, x, LAYER[k]), PLAIN),
}
for _rule in R.RULES:
    CASES[f"ig_{_rule}"] = (
        "integrated_gradients", lambda k, x, r=_rule: {"rule": r, "steps": STEPS},
        lambda s, k, x, r=_rule: R.integrated_gradients(s, x, TARGET, "zeros", STEPS, r), PLAIN)
_BASELINES = {
    "constant": (lambda x: 0.5, lambda x: 0.5),
    "blur": (lambda x: "blur", lambda x: "blur"),  # default blur_sigma=8 > image/2
    "sample_array": (_sample_baseline, _sample_baseline),
    "batch_array": (_batch_baseline, _batch_baseline),
    "list": (lambda x: ["zeros", 0.5, "blur", _sample_baseline(x)],
             lambda x: ["zeros", 0.5, "blur", _sample_baseline(x)]),
}
for _name, (_ours, _ref) in _BASELINES.items():
    CASES[f"ig_baseline_{_name}"] = (
        "integrated_gradients", lambda k, x, b=_ours: {"baseline": b(x), "steps": STEPS},
        lambda s, k, x, b=_ref: R.integrated_gradients(s, x, TARGET, b(x), STEPS), PLAIN)
CASES["ig_blur_sigma2"] = (
    "integrated_gradients", lambda k, x: {"baseline": "blur", "blur_sigma": 2.0, "steps": STEPS},
    lambda s, k, x: R.integrated_gradients(s, x, TARGET, "blur", STEPS, blur_sigma=2.0), PLAIN)
for _agg in ("smoothgrad", "squaregrad", "vargrad"):
    CASES[_agg] = (_agg, lambda k, x: {"noise": _noise(x), "samples": SAMPLES},
                   lambda s, k, x, a=_agg: getattr(R, a)(s, x, TARGET, _noise(x)), PLAIN)
CASES["smoothgrad_of_ig"] = (
    "smoothgrad", lambda k, x: {"noise": _noise(x), "samples": SAMPLES,
                                "base": "integrated_gradients", "steps": 4},
    lambda s, k, x: R.smoothgrad(s, x, TARGET, _noise(x), base="integrated_gradients", steps=4),
    PLAIN)
CASES["smoothgrad_of_guided"] = (
    "smoothgrad", lambda k, x: {"noise": _noise(x), "samples": SAMPLES, "base": "guided_backprop"},
    lambda s, k, x: R.smoothgrad(s, x, TARGET, _noise(x), base="guided_backprop"), RELU)

PARAMS = [pytest.param(case, flavor, kind, id=f"{case}-{flavor}-{kind}")
          for case, (_, _, _, flavors) in CASES.items() for flavor, kind in flavors]


@functools.lru_cache(maxsize=None)
def _reference(zoo, case, kind):
    return CASES[case][2](zoo.spec(kind), kind, zoo.x(kind))


@pytest.mark.parametrize("case,flavor,kind", PARAMS)
def test_method_matches_numpy_reference(zoo, case, flavor, kind):
    method, options, _, _ = CASES[case]
    x = zoo.x(kind)
    got, exp = zoo.explain(flavor, kind, x, method, target=TARGET, **options(kind, x))
    zoo.assert_close(got, _reference(zoo, case, kind), RTOL, f"{case} on {flavor}/{kind}")
    assert exp.method == method


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", ["normal", "guided", "deconv"])
def test_reference_backward_agrees_with_numpy_nets_oracle(zoo, kind, rule):
    """The generic backward of methods_numpy (any start layer) equals the oracle's."""
    spec, x = zoo.spec(kind), zoo.x(kind)
    seed = one_hot(TARGET, spec.n_classes)
    for wrt in ("input",) + spec.layer_names[:-3]:
        ours = R.backward(spec, x, "fc", seed, wrt=wrt, rule=rule)
        oracle = input_gradient(spec, x, seed, relu_rule=rule, wrt=wrt)
        np.testing.assert_array_equal(ours, oracle)


def test_reference_rules_integrate_exactly():
    """Sanity of the reference rules: exact on low-degree polynomials / linear functions."""
    for rule in R.RULES:
        alphas, weights = R.integration_points(rule, 16)
        # Captum's trapezoid keeps step 1/n with halved ends: the weights sum to (n-1)/n
        total = 15 / 16 if rule == "riemann_trapezoid" else 1.0
        assert abs(weights.sum() - total) < 1e-14
        if rule in ("gausslegendre", "riemann_middle"):
            assert abs((weights * alphas).sum() - 0.5) < 1e-14
    a, w = R.integration_points("gausslegendre", 5)
    assert abs((w * a ** 9).sum() - 0.1) < 1e-14
