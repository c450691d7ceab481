"""Internal influence (TruLens): its special cases equal the methods they generalize
(IG, SmoothGrad, layer IG, gradient × input / activation, saliency), QoIs and cuts
behave as defined, PyTorch and Keras agree, chunking does not matter, errors are clear."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import crosslens as cl  # noqa: E402
from layer.common import (  # noqa: E402
    assert_close, assert_same_state, explain_keras, explain_torch,
    inputs, spec_of, state_of, torch_model)
from reference.numpy_nets import forward, input_gradient, layer_gradient  # noqa: E402

X = inputs(batch=2)
II = "internal_influence"


def test_linear_doi_on_the_input_is_integrated_gradients():
    for options in (dict(steps=9), dict(steps=6, rule="riemann_trapezoid", baseline=0.25),
                    dict(steps=4, baseline=["zeros", 0.5])):
        ig = explain_torch(X, "integrated_gradients", target=2, **options)
        assert_close(explain_torch(X, II, target=2, doi="linear", **options), ig, 1e-13)
        assert_close(explain_torch(X, II, qoi=2, **options), ig, 1e-13)


def test_linear_doi_on_a_layer_is_layer_integrated_gradients():
    got = explain_torch(X, II, cut="conv2", qoi=cl.ClassQoI(1), steps=10)
    assert_close(got, explain_torch(X, "integrated_gradients", target=1, layer="conv2",
                                    steps=10), 1e-13)
    ref = captum_attr.LayerIntegratedGradients(torch_model(), torch_model().conv2).attribute(
        torch.tensor(X), target=1, n_steps=10)
    assert_close(got, ref.detach().numpy(), 1e-6, "Captum LayerIntegratedGradients")
    # layer= is the same from-cut as cut=
    assert_close(explain_torch(X, II, layer="conv2", target=1, steps=10), got, 1e-15)


def test_gaussian_doi_without_multiplier_is_smoothgrad():
    options = dict(samples=7, noise_level=0.2, seed=11)
    smooth = explain_torch(X, "smoothgrad", target=3, **options)
    got = explain_torch(X, II, target=3, doi="gaussian", multiply=False, **options)
    assert_close(got, smooth, 1e-13, "SmoothGrad")
    stdev = explain_torch(X, II, target=3, doi=cl.GaussianDoI(samples=7, stdev=0.3),
                          multiply=False, seed=11)
    assert_close(stdev, explain_torch(X, "smoothgrad", target=3, samples=7, stdev=0.3, seed=11),
                 1e-13, "SmoothGrad, absolute stdev")
    # with the multiplier: input × SmoothGrad (TruLens' multiply_activation)
    assert_close(explain_torch(X, II, target=3, doi="gaussian", **options), X * smooth, 1e-13)


def test_point_doi_is_the_gradient_times_the_cut_value():
    grad = input_gradient(spec_of(), X, 4)
    assert_close(explain_torch(X, II, target=4, doi="point", multiply=False), grad, 1e-12)
    assert_close(explain_torch(X, II, target=4, doi="point"), X * grad, 1e-12)
    layer = explain_torch(X, II, target=4, doi=cl.PointDoI(), cut="pool")
    act = forward(spec_of(), X, capture=["pool"])[1]["pool"]
    assert_close(layer, act * layer_gradient(spec_of(), X, 4, "pool"), 1e-12)
    assert_close(layer, explain_torch(X, "gradient_x_input", target=4, layer="pool"), 1e-15)


def test_class_difference_is_the_difference_of_the_classes():
    diff = explain_torch(X, II, qoi=cl.ClassDifference(3, 1), steps=8)
    a, b = (explain_torch(X, "integrated_gradients", target=c, steps=8) for c in (3, 1))
    assert_close(diff, a - b, 1e-12)
    assert_close(explain_torch(X, II, qoi=(3, 1), steps=8), diff, 1e-15)
    # also a plain target for every other method (a callable on the outputs)
    grad = input_gradient(spec_of(), X, 3) - input_gradient(spec_of(), X, 1)
    assert_close(explain_torch(X, "saliency", target=cl.ClassDifference(3, 1)), grad, 1e-12)


def test_input_to_layer_and_layer_to_layer_cuts():
    channel = explain_torch(X, II, to="conv2", qoi=cl.ChannelQoI(5), steps=8)
    ig = explain_torch(X, "integrated_gradients", target=cl.Channel("conv2", 5), steps=8)
    assert_close(channel, ig, 1e-13, "input -> layer")
    assert_close(explain_torch(X, II, qoi=cl.Channel("conv2", 5), steps=8), ig, 1e-15)
    assert_close(explain_torch(X, II, to="conv2", qoi=5, steps=8), ig, 1e-15)
    # layer -> layer: a neuron of conv2 attributed to conv1, complete along the path
    neuron = cl.Neuron("conv2", (2, 3, 4))
    got = explain_torch(X, II, cut="conv1", qoi=neuron, steps=256, rule="riemann_trapezoid")
    acts = lambda x: forward(spec_of(), x, capture=["conv2"])[1]["conv2"][:, 2, 3, 4]  # noqa: E731
    change = acts(X) - acts(np.zeros_like(X))
    assert_close(got.reshape(2, -1).sum(1), change, 1e-2, "completeness conv1 -> conv2")


def test_callable_qoi_at_the_output():
    fn = lambda out: out[:, 0] + 2 * out[:, 4]  # noqa: E731
    got = explain_torch(X, II, qoi=fn, doi="point", multiply=False)
    ref = input_gradient(spec_of(), X, np.tile([[1.0, 0, 0, 0, 2.0]], (2, 1)))
    assert_close(got, ref, 1e-12)


def test_chunk_size_does_not_change_the_result():
    for options in (dict(cut="conv2", steps=6), dict(doi="gaussian", samples=5, seed=2),
                    dict(cut="pool", doi="gaussian", samples=5, seed=2)):
        default = explain_torch(X, II, target=1, **options)
        tiny = explain_torch(X, II, target=1, memory_budget=1, **options)
        assert_close(tiny, default, 1e-13, str(options))


def test_pytorch_and_keras_agree():
    for options in (dict(cut="conv2", qoi=cl.ClassDifference(0, 2), steps=6),
                    dict(doi="gaussian", samples=4, seed=5, qoi=1),
                    dict(cut="pool", doi="gaussian", samples=3, seed=5, qoi=1),
                    dict(to="conv2", qoi=cl.ChannelQoI(3), steps=5)):
        a = explain_torch(X, II, **options)
        b = explain_keras(X, II, **options)
        assert_close(b, a, 1e-5, f"{sorted(options)} torch vs keras")


def test_clear_errors_and_model_untouched():
    model = torch_model()
    before = state_of(model)
    with pytest.raises(cl.LayerNotFoundError, match="'conv2'"):
        cl.explain(model, X, II, cut="conv_2")
    with pytest.raises(cl.LayerNotFoundError, match="'relu2'"):
        cl.explain(model, X, II, to="relu_2", qoi=1)
    with pytest.raises(cl.OptionError, match="layer to-cut"):
        cl.explain(model, X, II, to="conv2", qoi=cl.ClassDifference(0, 1))
    with pytest.raises(cl.OptionError, match="needs a quantity of interest"):
        cl.explain(model, X, II, to="conv2")
    with pytest.raises(cl.OptionError, match="carries its own parameters"):
        cl.explain(model, X, II, doi=cl.LinearDoI(steps=4), steps=8)
    with pytest.raises(cl.OptionError, match="do not apply"):
        cl.explain(model, X, II, doi="point", steps=8)
    with pytest.raises(cl.OptionError, match="unknown distribution"):
        cl.explain(model, X, II, doi="uniform")
    with pytest.raises(cl.OptionError, match="not both"):
        cl.explain(model, X, II, target=1, qoi=2)
    with pytest.raises(cl.OptionError, match="disagree"):
        cl.explain(model, X, II, layer="conv1", cut="conv2")
    with pytest.raises(cl.DisconnectedError):  # the QoI lies before the from-cut
        cl.explain(model, X, II, cut="conv2", qoi=cl.Neuron("conv1", (0, 0, 0)))
    assert_same_state(model, before)
