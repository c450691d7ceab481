"""Layer and neuron attribution: layer gradient, gradient × activation, layer integrated
gradients, (neuron) conductance, neuron IG — numpy references, Captum parity, PyTorch /
Keras parity, chunk-size invariance, errors and the model left untouched."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import crosslens as cl  # noqa: E402
from crosslens.methods.quadrature import integration_points  # noqa: E402
from layer.common import (  # noqa: E402
    assert_close, assert_same_state, explain_keras, explain_torch,
    inputs, spec_of, state_of, torch_model)
from reference.numpy_nets import forward, layer_gradient  # noqa: E402

X = inputs(batch=2)
XT = torch.tensor(X)
BASE = 0.1 * inputs(seed=5, batch=1)  # a non-trivial baseline, one sample


def captum(cls, *args):
    return cls(torch_model(), *args)


def relu2_grad(c):
    """∂logit_c/∂conv2 for the small CNN: relu'(conv2) · W_fc[c] / (H·W) (exact)."""
    w = spec_of().weights["fc.weight"][c]

    def grad(conv2):
        return (conv2 > 0) * w[None, :, None, None] / (conv2.shape[2] * conv2.shape[3])
    return grad


# --- layer gradient and gradient × activation -----------------------------------------

def test_layer_gradient_and_gradient_x_activation_equal_numpy():
    grad = layer_gradient(spec_of(), X, 3, "pool")
    assert_close(explain_torch(X, "saliency", target=3, layer="pool"), grad, 1e-12)
    act = forward(spec_of(), X, capture=["pool"])[1]["pool"]
    assert_close(explain_torch(X, "gradient_x_input", target=3, layer="pool"), grad * act,
                 1e-12)


# --- layer integrated gradients -------------------------------------------------------

@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_layer_ig_equals_numpy_reference(rule):
    steps = 16
    alphas, weights = integration_points(rule, steps)
    acts = lambda x: forward(spec_of(), x, capture=["conv2"])[1]["conv2"]  # noqa: E731
    a_x, a_b = acts(X), acts(np.broadcast_to(BASE, X.shape))
    grad = relu2_grad(2)
    integral = sum(w * grad(a_b + a * (a_x - a_b)) for a, w in zip(alphas, weights))
    got = explain_torch(X, "integrated_gradients", target=2, layer="conv2", steps=steps,
                        rule=rule, baseline=BASE[0])
    assert_close(got, (a_x - a_b) * integral, 1e-12, "layer IG")


@pytest.mark.parametrize("layer", ["conv2", "pool"])
def test_layer_ig_equals_captum(layer):
    got = explain_torch(X, "integrated_gradients", target=1, layer=layer, steps=20,
                        baseline=BASE[0])
    ref = captum(captum_attr.LayerIntegratedGradients, getattr(torch_model(), layer)).attribute(
        XT, baselines=torch.tensor(BASE), target=1, n_steps=20)
    # Captum casts its quadrature weights to float32
    assert_close(got, ref.detach().numpy(), 1e-6, "Captum LayerIntegratedGradients")


def test_layer_ig_completeness_and_linear_head():
    exp = cl.explain(torch_model(), X, "integrated_gradients", target=0, layer="conv2",
                     steps=64, completeness=True)
    assert exp.layer == "conv2" and exp.numpy().shape == (2, 16, 8, 8)
    assert exp.info["completeness_error"].max() < 1e-2  # ReLU kinks: slow convergence
    # after relu2 the head is linear: layer IG is exactly the activation difference times W
    got = explain_torch(X, "integrated_gradients", target=4, layer="relu2", steps=3)
    relu2 = forward(spec_of(), X, capture=["relu2"])[1]["relu2"]
    relu2_0 = forward(spec_of(), np.zeros_like(X), capture=["relu2"])[1]["relu2"]
    w = spec_of().weights["fc.weight"][4][None, :, None, None] / 64
    assert_close(got, (relu2 - relu2_0) * w, 1e-12)


# --- conductance ------------------------------------------------------------------------

def test_layer_conductance_equals_numpy_reference_and_captum():
    steps, rule = 8, "riemann_trapezoid"
    alphas, _ = integration_points(rule, steps + 1)
    points = [BASE + a * (X - BASE) for a in alphas]
    acts = [forward(spec_of(), p, capture=["conv2"])[1]["conv2"] for p in points]
    grads = [layer_gradient(spec_of(), p, 3, "conv2") for p in points]
    ref = sum(g * (acts[k + 1] - acts[k]) for k, g in enumerate(grads[:-1]))
    got = explain_torch(X, "conductance", target=3, layer="conv2", steps=steps, rule=rule,
                        baseline=BASE[0])
    assert_close(got, ref, 1e-12, "numpy conductance")
    for rule in ("riemann_trapezoid", "gausslegendre"):
        got = explain_torch(X, "conductance", target=3, layer="conv2", steps=steps, rule=rule)
        ref = captum(captum_attr.LayerConductance, torch_model().conv2).attribute(
            XT, target=3, n_steps=steps, method=rule)
        assert_close(got, ref.detach().numpy(), 1e-12, f"Captum LayerConductance {rule}")


def test_nested_layer_of_a_resnet_equals_captum():
    model, x = torch_model("small_resnet", 1), inputs("small_resnet", 1)
    for method, cls in (("conductance", captum_attr.LayerConductance),
                        ("integrated_gradients", captum_attr.LayerIntegratedGradients)):
        got = cl.explain(model, x, method, target=0, layer="block.conv1", steps=6).numpy()
        ref = cls(model, model.block.conv1).attribute(torch.tensor(x), target=0, n_steps=6)
        assert_close(got, ref.detach().numpy(), 1e-6, f"resnet {method}")


def test_conductance_sums_to_the_score_difference():
    got = explain_torch(X, "conductance", target=1, layer="pool", steps=200,
                        rule="riemann_trapezoid")
    scores = forward(spec_of(), X)[:, 1] - forward(spec_of(), np.zeros_like(X))[:, 1]
    assert_close(got.reshape(2, -1).sum(1), scores, 1e-2, "completeness")


# --- neuron targets -----------------------------------------------------------------------

def test_neuron_ig_equals_captum():
    got = explain_torch(X, "integrated_gradients", target=cl.Neuron("conv2", (5, 2, 6)),
                        steps=24, baseline=BASE[0])
    ref = captum(captum_attr.NeuronIntegratedGradients, torch_model().conv2).attribute(
        XT, (5, 2, 6), baselines=torch.tensor(BASE), n_steps=24)
    assert_close(got, ref.detach().numpy(), 1e-6, "Captum NeuronIntegratedGradients")


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "gausslegendre"])
def test_neuron_conductance_equals_captum(rule):
    got = explain_torch(X, "conductance", target=2, neuron=cl.Neuron("conv2", (1, 2, 3)),
                        steps=12, rule=rule, baseline=BASE[0])
    ref = captum(captum_attr.NeuronConductance, torch_model().conv2).attribute(
        XT, (1, 2, 3), baselines=torch.tensor(BASE), target=2, n_steps=12, method=rule)
    assert_close(got, ref.detach().numpy(), 1e-6, "Captum NeuronConductance")


def test_layer_ig_of_a_channel_target_between_two_layers():
    """Layer IG of conv1 towards a channel of conv2 sums to the channel's change."""
    exp = cl.explain(torch_model(), X, "integrated_gradients", target=cl.Channel("conv2", 7),
                     layer="conv1", steps=128, completeness=True)
    assert exp.info["completeness_error"].max() < 1e-3


# --- shared properties ----------------------------------------------------------------------

CASES = [("integrated_gradients", dict(layer="conv2", steps=7, baseline=BASE[0])),
         ("conductance", dict(layer="conv2", steps=7)),
         ("conductance", dict(layer="pool", steps=5, rule="riemann_trapezoid"))]


@pytest.mark.parametrize("method,options", CASES, ids=["layer_ig", "conductance", "cond_trap"])
def test_chunk_size_does_not_change_the_result(method, options):
    default = explain_torch(X, method, target=1, **options)
    tiny = explain_torch(X, method, target=1, memory_budget=1, **options)
    assert_close(tiny, default, 1e-13, method)


def test_neuron_conductance_chunk_size_invariant():
    options = dict(target=1, neuron=cl.Neuron("conv2", (1, 2, 7)), steps=5)
    assert_close(explain_torch(X, "conductance", memory_budget=1, **options),
                 explain_torch(X, "conductance", **options), 1e-13)


def test_pytorch_and_keras_agree():
    # Keras layer outputs are channels-last: indices and results are transposed
    for method, options in CASES + [("saliency", dict(layer="conv2")),
                                    ("gradient_x_input", dict(layer="pool"))]:
        a = explain_torch(X, method, target=1, **options)
        keras_options = dict(options)
        if "baseline" in options:  # arrays are given in the model's layout
            keras_options["baseline"] = np.transpose(options["baseline"], (1, 2, 0))
        b = explain_keras(X, method, target=1, **keras_options)
        assert_close(b, a, 1e-5, f"{method} {sorted(options)} torch vs keras")
    a = explain_torch(X, "conductance", target=2, neuron=cl.Neuron("conv2", (1, 2, 3)), steps=6)
    b = explain_keras(X, "conductance", target=2, neuron=cl.Neuron("conv2", (2, 3, 1)), steps=6)
    assert_close(b, a, 1e-5, "neuron conductance torch vs keras")
    a = explain_torch(X, "integrated_gradients", target=cl.Channel("conv2", 3), steps=6,
                      layer="pool")
    b = explain_keras(X, "integrated_gradients", target=cl.Channel("conv2", 3), steps=6,
                      layer="pool")
    assert_close(b, a, 1e-5, "layer IG of a channel torch vs keras")


def test_model_untouched_and_clear_errors():
    model = torch_model()
    before = state_of(model)
    cl.explain(model, X, "conductance", target=1, layer="conv2", steps=3)
    cl.explain(model, X, "integrated_gradients", target=1, layer="conv2", steps=3)
    with pytest.raises(cl.OptionError, match="layer="):
        cl.explain(model, X, "conductance", target=1)
    with pytest.raises(cl.OptionError, match="cl.Neuron"):
        cl.explain(model, X, "conductance", target=1, neuron=("conv2", 1))
    with pytest.raises(cl.OptionError, match="names its layer"):
        cl.explain(model, X, "conductance", layer="conv1", neuron=cl.Neuron("conv2", (0, 0, 0)))
    with pytest.raises(cl.TargetError, match="does not fit"):
        cl.explain(model, X, "conductance", neuron=cl.Neuron("conv2", (0, 0)))
    with pytest.raises(cl.LayerNotFoundError, match="conv2"):
        cl.explain(model, X, "integrated_gradients", layer="conv_2")
    assert_same_state(model, before)
