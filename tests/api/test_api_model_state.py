"""The user's model is exactly as it was after every call, also after a call that raised.

torch: state_dict bit-identical, every module's ``training`` flag and every parameter's
``requires_grad`` as before (train / eval / mixed modes, a frozen parameter), no hooks
left, no active TorchFunctionMode, no parameter gradients. Keras: weights bit-identical,
no instance ``call`` left on any (nested) layer, ``activation`` objects identical,
``trainable`` flags unchanged.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import crosslens as cl
from reference import methods_numpy as R

LAYER = {"small_cnn": "conv2", "small_resnet": "block.conv1"}


def _calls(layer):
    """(name, kwargs of cl.explain) run on each model; all must leave it untouched."""
    return [
        ("saliency", dict(method="saliency", target=1)),
        ("saliency_layer", dict(method="saliency", target=1, layer=layer)),
        ("gxi_layer", dict(method="gradient_x_input", target=[0, 1, 2], layer=layer)),
        ("ig", dict(method="integrated_gradients", steps=4, baseline=["zeros", "blur"])),
        ("ig_tiny_budget", dict(method="integrated_gradients", steps=3, memory_budget=4096)),
        ("smoothgrad", dict(method="smoothgrad", samples=2, seed=0)),
        ("vargrad_guided", dict(method="vargrad", samples=2, seed=0, base="guided_backprop")),
        ("guided", dict(method="guided_backprop", target=2)),
        ("deconv_layer", dict(method="deconvnet", target=2, layer=layer)),
        ("activations", dict(method="activations", layer=layer)),
        ("neuron", dict(method="saliency", target=cl.Neuron(layer, (0, 1, 1)))),
        ("channel", dict(method="gradient_x_input", target=cl.Channel(layer, 1))),
    ]


# ----------------------------------------------------------------------------- torch
def torch_snapshot(model):
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
    }


def assert_torch_untouched(model, before):
    state = model.state_dict()
    assert list(state) == list(before["state"])
    for key, value in before["state"].items():
        assert state[key].dtype == value.dtype
        assert state[key].numpy().tobytes() == value.numpy().tobytes(), key
    assert {n: m.training for n, m in model.named_modules()} == before["training"]
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before["requires_grad"]
    for name, module in model.named_modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                      "_backward_pre_hooks", "_forward_hooks_with_kwargs"):
            assert not getattr(module, hooks, {}), f"{hooks} left on {name or 'root'}"
    assert all(p.grad is None for p in model.parameters())
    assert torch.overrides._get_current_function_mode_stack() == []
    assert torch.is_grad_enabled()


def _torch_model(zoo, kind, mode):
    model = copy.deepcopy(zoo.model("torch", kind))
    model.fc.bias.requires_grad_(False)  # a frozen parameter must stay frozen
    if mode == "train":
        model.train()
    elif mode == "mixed":
        model.train()
        (model.block if kind == "small_resnet" else model.conv2).eval()
    assert model.fc.weight.requires_grad
    return model


@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
@pytest.mark.parametrize("kind", ["small_cnn", "small_resnet"])
def test_torch_model_unchanged_after_every_call(zoo, kind, mode):
    model, x = _torch_model(zoo, kind, mode), zoo.x(kind)
    before = torch_snapshot(model)
    for name, kwargs in _calls(LAYER[kind]):
        cl.explain(model, x, **kwargs)
        assert_torch_untouched(model, before)
    cl.activations(model, x, [LAYER[kind], "fc"])
    assert_torch_untouched(model, before)
    # the model ran in inference mode even though it is in train mode (BN running stats)
    got = cl.explain(model, x, "saliency", target=[1, 2, 3]).attributions
    zoo.assert_close(got, R.saliency(zoo.spec(kind), x, [1, 2, 3]), 1e-8, f"{mode} saliency")


class Exploding(torch.nn.Module):
    """Wraps a net; raises after the net ran (ReLUs rerouted, hooks live) when armed."""

    def __init__(self, net):
        super().__init__()
        self.net, self.armed, self.seen = net, True, None

    def forward(self, x):
        y = self.net(x)
        self.seen = (len(torch.overrides._get_current_function_mode_stack()),
                     len(self.net.conv2._forward_hooks))
        if self.armed:
            raise RuntimeError("boom midway through the pass")
        return y


@pytest.mark.parametrize("mode", ["eval", "train", "mixed"])
def test_torch_model_unchanged_after_calls_that_raise(zoo, mode):
    model, x = _torch_model(zoo, "small_cnn", mode), zoo.x("small_cnn")
    before = torch_snapshot(model)
    with pytest.raises(cl.LayerNotFoundError):
        cl.explain(model, x, "saliency", layer="conv3")
    assert_torch_untouched(model, before)
    with pytest.raises(cl.TargetError):  # raised inside the pass, with a layer hook live
        cl.explain(model, x, "guided_backprop", target=7, layer="conv2")
    assert_torch_untouched(model, before)
    with pytest.raises(cl.TargetError):
        cl.explain(model, x, "integrated_gradients", target=[0, 9, 1], steps=3)
    assert_torch_untouched(model, before)

    wrapped = Exploding(model)
    wrapped_before = torch_snapshot(wrapped)
    for method in ("guided_backprop", "deconvnet"):
        with pytest.raises(RuntimeError, match="boom midway"):
            cl.explain(wrapped, x, method, target=1, layer="net.conv2")
        assert wrapped.seen == (1, 1)  # it raised with the ReLU mode and the hook active
        assert_torch_untouched(wrapped, wrapped_before)
    wrapped.armed = False  # and the model still works, exactly
    got = cl.explain(wrapped, x, "guided_backprop", target=1).attributions
    zoo.assert_close(got, R.guided_backprop(zoo.spec("small_cnn"), x, 1), 1e-8, "after error")
    assert_torch_untouched(wrapped, wrapped_before)


# ----------------------------------------------------------------------------- keras
def keras_layers(model, prefix=""):
    for layer in model.layers:
        yield prefix + layer.name, layer
        if getattr(layer, "layers", None):
            yield from keras_layers(layer, prefix + layer.name + "/")


def keras_snapshot(model):
    layers = dict(keras_layers(model))
    return {
        "weights": [(v.path, np.array(v.numpy(), copy=True)) for v in model.weights],
        "trainable": {n: layer.trainable for n, layer in layers.items()},
        "activation": {n: getattr(layer, "activation", None) for n, layer in layers.items()},
        "variables_trainable": [v.trainable for v in model.weights],
    }


def assert_keras_untouched(model, before):
    now = [(v.path, v.numpy()) for v in model.weights]
    assert [p for p, _ in now] == [p for p, _ in before["weights"]]
    for (path, value), (_, old) in zip(now, before["weights"]):
        assert value.dtype == old.dtype and value.tobytes() == old.tobytes(), path
    layers = dict(keras_layers(model))
    for name, layer in layers.items():
        assert "call" not in layer.__dict__, f"instance call left on {name}"
        assert getattr(layer, "activation", None) is before["activation"][name], name
    assert {n: layer.trainable for n, layer in layers.items()} == before["trainable"]
    assert [v.trainable for v in model.weights] == before["variables_trainable"]


@pytest.mark.parametrize("flavor,kind", [("keras", "small_cnn"), ("keras", "small_resnet"),
                                         ("keras_fused", "small_cnn")])
def test_keras_model_unchanged_after_every_call(zoo, flavor, kind):
    model = zoo.build(flavor, kind)
    model.get_layer("fc").trainable = False  # a frozen layer must stay frozen
    x = zoo.nhwc(zoo.x(kind))
    layer = "conv1" if flavor == "keras_fused" else zoo.layer(flavor, LAYER[kind])
    before = keras_snapshot(model)
    for name, kwargs in _calls(layer):
        if isinstance(kwargs.get("target"), cl.Neuron):
            kwargs["target"] = cl.Neuron(layer, (1, 1, 0))
        cl.explain(model, x, **kwargs)
        assert_keras_untouched(model, before)
    cl.activations(model, x, [layer, "fc"])
    assert_keras_untouched(model, before)


def _keras_bomb_model():
    """A Keras model whose "bomb" layer raises while armed; ``seen`` records, at the
    raise, whether conv1's ``call`` was patched (i.e. it raised inside the traced pass)."""
    import keras
    import tensorflow as tf

    seen: dict = {}

    class Bomb(keras.layers.Layer):
        armed = False

        def call(self, x):
            if self.armed:
                seen["conv1 patched"] = "call" in seen["conv1"].__dict__
                raise RuntimeError("boom midway through the trace")
            return tf.identity(x)

    inp = keras.Input((16, 16, 3), dtype="float64")
    conv1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1",
                                dtype="float64")
    h = keras.layers.ReLU(name="relu", dtype="float64")(conv1(inp))
    h = Bomb(name="bomb", dtype="float64")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap", dtype="float64")(h)
    seen["conv1"] = conv1
    return keras.Model(inp, keras.layers.Dense(5, name="fc", dtype="float64")(h)), seen


def test_keras_model_unchanged_after_calls_that_raise(zoo):
    model = zoo.build("keras", "small_resnet")
    x = zoo.nhwc(zoo.x("small_resnet"))
    before = keras_snapshot(model)
    with pytest.raises(cl.LayerNotFoundError):
        cl.explain(model, x, "saliency", layer="block/conv3")
    assert_keras_untouched(model, before)
    with pytest.raises(cl.TargetError):
        cl.explain(model, x, "guided_backprop", target=5, layer="block/conv1")
    assert_keras_untouched(model, before)

    bomb, seen = _keras_bomb_model()
    bomb.get_layer("bomb").armed = True
    bomb_before = keras_snapshot(bomb)
    for method in ("guided_backprop", "deconvnet"):
        seen.pop("conv1 patched", None)
        with pytest.raises(RuntimeError, match="boom midway"):
            cl.explain(bomb, x, method, layer="conv1")  # "predicted": no separate forward
        assert seen["conv1 patched"]  # it raised inside the patched, overridden trace
        assert_keras_untouched(bomb, bomb_before)
    bomb.get_layer("bomb").armed = False  # traces cleanly afterwards
    cl.explain(bomb, x, "guided_backprop", target=1, layer="conv1")
    assert_keras_untouched(bomb, bomb_before)
