"""Targets: predicted, per-sample classes, callables, Neuron and Channel, on both frameworks."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
from reference import methods_numpy as R

FLAVORS = [("torch", "small_cnn"), ("torch", "small_resnet"),
           ("keras", "small_cnn"), ("keras", "small_resnet")]
RTOL = 1e-8


@pytest.mark.parametrize("flavor,kind", FLAVORS)
def test_predicted_is_the_argmax_class(zoo, flavor, kind):
    spec, x = zoo.spec(kind), zoo.x(kind)
    top = R.predicted(spec, x)
    assert len(set(top.tolist())) >= 1
    for method, options in (("saliency", {}), ("integrated_gradients", {"steps": 4}),
                            ("smoothgrad", {"samples": 2, "seed": 0})):
        got, exp = zoo.explain(flavor, kind, x, method, **options)  # default: "predicted"
        assert exp.target == top.tolist()
        explicit, _ = zoo.explain(flavor, kind, x, method, target=top.tolist(), **options)
        np.testing.assert_array_equal(got, explicit)
    zoo.assert_close(zoo.explain(flavor, kind, x, "saliency", target="predicted")[0],
                     R.saliency(spec, x, top), RTOL, "predicted saliency")


@pytest.mark.parametrize("flavor,kind", FLAVORS)
def test_per_sample_classes(zoo, flavor, kind):
    spec, x = zoo.spec(kind), zoo.x(kind)
    for target in ([4, 0, 2], np.array([1, 1, 3]), 2):
        got, exp = zoo.explain(flavor, kind, x, "gradient_x_input", target=target)
        zoo.assert_close(got, R.gradient_x_input(spec, x, target), RTOL, f"target {target}")
        assert exp.target == np.broadcast_to(target, (3,)).tolist()


@pytest.mark.parametrize("flavor,kind", FLAVORS)
def test_callable_target_on_native_outputs(zoo, flavor, kind):
    """lambda out: out[:, 1] - out[:, 0] on the framework's tensor = gradient of that score."""
    spec, x = zoo.spec(kind), zoo.x(kind)
    seed = np.zeros((3, spec.n_classes))
    seed[:, 1], seed[:, 0] = 1.0, -1.0
    for method, ref in (("saliency", R.saliency(spec, x, seed)),
                        ("integrated_gradients", R.integrated_gradients(spec, x, seed, steps=4)),
                        ("guided_backprop", R.guided_backprop(spec, x, seed))):
        got, _ = zoo.explain(flavor, kind, x, method, target=lambda out: out[:, 1] - out[:, 0],
                             **({"steps": 4} if method == "integrated_gradients" else {}))
        zoo.assert_close(got, ref, RTOL, f"callable target, {method}")


def _torch_to_keras_index(index):
    c, i, j = index
    return (i, j, c)


NEURON_LAYERS = {"small_cnn": ["conv2", "conv1", "pool"],
                 "small_resnet": ["block.conv1", "block.add", "relu"]}


@pytest.mark.parametrize("kind", ["small_cnn", "small_resnet"])
def test_neuron_target_torch_and_keras_equal_the_reference(zoo, kind):
    spec, x = zoo.spec(kind), zoo.x(kind)
    for layer in NEURON_LAYERS[kind]:
        if layer == "block.add":
            continue  # no torch module for the residual sum
        act = R.activation(spec, x, layer).min(axis=0)  # a unit active on every sample
        c, i, j = (int(v) for v in np.unravel_index(act.argmax(), act.shape))
        ref = R.backward(spec, x, layer, R.neuron_seed(spec, x, layer, (c, i, j)))
        assert np.abs(ref).max() > 0
        got_t, exp = zoo.explain("torch", kind, x, "saliency", target=cl.Neuron(layer, (c, i, j)))
        got_k, _ = zoo.explain("keras", kind, x, "saliency",
                               target=cl.Neuron(zoo.layer("keras", layer), (i, j, c)))
        zoo.assert_close(got_t, ref, RTOL, f"torch neuron {layer}")
        zoo.assert_close(got_k, ref, RTOL, f"keras neuron {layer}")
        assert "neuron" in str(exp.target)
    # negative indices count from the end, as in numpy
    layer = NEURON_LAYERS[kind][0]
    ref = R.backward(spec, x, layer, R.neuron_seed(spec, x, layer, (-1, -1, 0)))
    got_t, _ = zoo.explain("torch", kind, x, "saliency", target=cl.Neuron(layer, (-1, -1, 0)))
    got_k, _ = zoo.explain("keras", kind, x, "saliency",
                           target=cl.Neuron(zoo.layer("keras", layer), (-1, 0, -1)))
    zoo.assert_close(got_t, ref, RTOL, "torch negative index")
    zoo.assert_close(got_k, ref, RTOL, "keras negative index")


@pytest.mark.parametrize("kind", ["small_cnn", "small_resnet"])
def test_channel_target_is_the_gradient_of_the_channel_mean(zoo, kind):
    spec, x = zoo.spec(kind), zoo.x(kind)
    layer = NEURON_LAYERS[kind][0]
    for channel in (0, 6):
        ref = R.backward(spec, x, layer, R.channel_seed(spec, x, layer, channel))
        for flavor in ("torch", "keras"):
            target = cl.Channel(zoo.layer(flavor, layer), channel)
            got, _ = zoo.explain(flavor, kind, x, "saliency", target=target)
            zoo.assert_close(got, ref, RTOL, f"{flavor} channel {channel}")
            got, _ = zoo.explain(flavor, kind, x, "integrated_gradients", target=target, steps=4)
            assert np.all(np.isfinite(got))
    # a channel target also works for layer attributions upstream of it
    ref = R.backward(spec, x, layer, R.channel_seed(spec, x, layer, 2), wrt="stem" if
                     kind == "small_resnet" else "conv1")
    upstream = "stem" if kind == "small_resnet" else "conv1"
    for flavor in ("torch", "keras"):
        got, _ = zoo.explain(flavor, kind, x, "saliency", layer=upstream,
                             target=cl.Channel(zoo.layer(flavor, layer), 2))
        zoo.assert_close(got, ref, RTOL, f"{flavor} channel -> layer gradient")


@pytest.mark.parametrize("flavor", ["torch", "keras"])
def test_bad_unit_targets_are_target_errors(zoo, flavor):
    x = zoo.x("small_cnn")
    with pytest.raises(cl.TargetError, match="does not fit layer"):
        zoo.explain(flavor, "small_cnn", x, "saliency", target=cl.Neuron("conv2", (99, 0, 0)))
    with pytest.raises(cl.TargetError, match="does not fit layer"):
        zoo.explain(flavor, "small_cnn", x, "saliency", target=cl.Neuron("conv2", (1, 2)))
    with pytest.raises(cl.TargetError, match=r"channel 16 is out of range.*16 channels"):
        zoo.explain(flavor, "small_cnn", x, "saliency", target=cl.Channel("conv2", 16))
    with pytest.raises(cl.TargetError, match="one class index per sample"):
        zoo.explain(flavor, "small_cnn", x, "saliency", target=[1, 2])
