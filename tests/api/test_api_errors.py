"""Bad input gets a specific crosslens error whose message names the fix."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import crosslens as cl
from crosslens.core import errors

FLAVORS = ("torch", "keras")


def _model_and_x(zoo, flavor, kind="small_cnn"):
    return zoo.model(flavor, kind), zoo.to_model(flavor, zoo.x(kind))


def test_channels_last_image_to_torch_model_says_permute(zoo):
    model, x = _model_and_x(zoo, "torch")
    with pytest.raises(errors.InputError, match=r"channels-last.*permute\(0, 3, 1, 2\)"):
        cl.explain(model, zoo.nhwc(x), "saliency")
    with pytest.raises(errors.InputError, match="permute"):
        cl.explain(model, torch.tensor(zoo.nhwc(x)), "saliency")


def test_channels_first_image_to_keras_model_says_transpose(zoo):
    model, x = _model_and_x(zoo, "keras")
    with pytest.raises(errors.InputError, match=r"channels-first.*transpose\(x, \(0, 2, 3, 1\)\)"):
        cl.explain(model, zoo.nchw(x), "saliency")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_single_sample_without_batch_axis_suggests_x_none(zoo, flavor):
    model, x = _model_and_x(zoo, flavor)
    with pytest.raises(errors.InputError, match=r"batch axis, e\.g\. x\[None\]"):
        cl.explain(model, x[0], "saliency")
    with pytest.raises(errors.InputError, match="rank 4"):
        cl.explain(model, x[None], "saliency")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "smoothgrad"])
def test_target_out_of_range_names_the_number_of_outputs(zoo, flavor, method):
    model, x = _model_and_x(zoo, flavor)
    options = {"integrated_gradients": {"steps": 2}, "smoothgrad": {"samples": 2}}
    with pytest.raises(errors.TargetError, match=r"class 5 is out of range.*5 outputs"):
        cl.explain(model, x, method, target=[0, 5, 1], **options.get(method, {}))


@pytest.mark.parametrize("flavor,kind", [("torch", "small_cnn"), ("keras", "small_cnn"),
                                         ("keras", "small_resnet")])
@pytest.mark.parametrize("asked", ["conv", "conv3"])
def test_unknown_layer_lists_closest_names(zoo, flavor, kind, asked):
    model, x = _model_and_x(zoo, flavor, kind)
    with pytest.raises(errors.LayerNotFoundError) as info:
        cl.explain(model, x, "saliency", layer=asked)
    message = str(info.value)
    assert f"unknown layer '{asked}'" in message
    expected = ("'conv1'", "'conv2'") if kind == "small_cnn" else ("'block/conv1'",
                                                                    "'block/conv2'")
    for name in expected:
        assert name in message, message
    # the same for layers named in targets and for cl.activations
    with pytest.raises(errors.LayerNotFoundError, match="closest valid names"):
        cl.explain(model, x, "saliency", target=cl.Channel(asked, 0))
    with pytest.raises(errors.LayerNotFoundError, match="closest valid names"):
        cl.activations(model, x, asked)


def test_layer_object_of_another_model_is_rejected(zoo):
    model, x = _model_and_x(zoo, "torch")
    with pytest.raises(errors.LayerNotFoundError, match="not part of this model"):
        cl.explain(model, x, "saliency", layer=torch.nn.Conv2d(3, 8, 3))


def test_unknown_method_lists_closest_names(zoo):
    model, x = _model_and_x(zoo, "torch")
    with pytest.raises(errors.UnknownMethodError, match=r"unknown method 'saliancy'.*'saliency'"):
        cl.explain(model, x, "saliancy")
    with pytest.raises(errors.UnknownMethodError, match="'integrated_gradients'"):
        cl.explain(model, x, "integrated_gradient_s")


def test_unknown_option_names_the_valid_ones(zoo):
    model, x = _model_and_x(zoo, "torch")
    with pytest.raises(errors.OptionError, match=r"no option 'n_steps'.*steps"):
        cl.explain(model, x, "integrated_gradients", n_steps=8)
    with pytest.raises(errors.OptionError, match=r"no option 'steps'.*none"):
        cl.explain(model, x, "saliency", steps=8)
    with pytest.raises(errors.OptionError, match=r"unknown options \['steps'\].*'saliency'"):
        cl.explain(model, x, "smoothgrad", steps=8)  # passed on to the base method
    with pytest.raises(errors.OptionError, match="integration rule 'simpson'"):
        cl.explain(model, x, "integrated_gradients", rule="simpson")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input_is_rejected(zoo, flavor, bad):
    model, x = _model_and_x(zoo, flavor)
    x = x.copy()
    x[1, 2, 3, 2] = bad
    with pytest.raises(errors.InputError, match="NaN or infinite"):
        cl.explain(model, x, "saliency")


class ConstantHead(torch.nn.Module):
    """Computes a conv of the input but returns a learned constant for every sample."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1).double()
        self.logits = torch.nn.Parameter(torch.arange(5, dtype=torch.float64))

    def forward(self, x):
        self.conv(x)
        return self.logits.expand(x.shape[0], -1)


def _keras_constant_head():
    import keras
    import tensorflow as tf

    class Constant(keras.layers.Layer):
        def build(self, shape):
            self.logits = self.add_weight(shape=(5,), initializer="ones", dtype="float64")

        def call(self, x):
            return tf.broadcast_to(self.logits, [tf.shape(x)[0], 5])

    inp = keras.Input((16, 16, 3), dtype="float64")
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv", dtype="float64")(inp)
    return keras.Model(inp, Constant(name="head", dtype="float64")(h))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_output_that_ignores_the_input_is_disconnected(zoo, flavor):
    model = ConstantHead() if flavor == "torch" else _keras_constant_head()
    x = zoo.to_model(flavor, zoo.x("small_cnn"))
    for method, options in (("saliency", {}), ("integrated_gradients", {"steps": 2}),
                            ("smoothgrad", {"samples": 2})):
        with pytest.raises(errors.DisconnectedError, match="does not depend on the input"):
            cl.explain(model, x, method, target=1, **options)
    layer = "conv"
    with pytest.raises(errors.DisconnectedError, match="does not depend on layer 'conv'"):
        cl.explain(model, x, "saliency", target=1, layer=layer)


class TwoHeads(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        logits = self.net(x)
        return logits, logits.softmax(dim=1)


def _keras_two_heads(zoo):
    import keras

    net = zoo.model("keras", "small_cnn")
    return keras.Model(net.inputs, [net.outputs[0], keras.layers.Softmax(dtype="float64")(
        net.outputs[0])])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_class_target_on_tuple_output_suggests_a_callable(zoo, flavor):
    model = TwoHeads(zoo.model("torch", "small_cnn")) if flavor == "torch" \
        else _keras_two_heads(zoo)
    x = zoo.to_model(flavor, zoo.x("small_cnn"))
    for target in (1, "predicted"):
        with pytest.raises(errors.TargetError, match=r"not one tensor.*target=callable"):
            cl.explain(model, x, "saliency", target=target)
    # and the suggested fix works: same as the single-output model
    fixed = cl.explain(model, x, "saliency", target=lambda out: out[0][:, 1]).attributions
    single = cl.explain(zoo.model(flavor, "small_cnn"), x, "saliency", target=1).attributions
    zoo.assert_close(np.asarray(fixed), np.asarray(single), 1e-12, "callable on tuple")
