"""Array types in = array types out; figures; nested Keras layers; layer objects."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import crosslens as cl
from reference import methods_numpy as R

TARGET = [1, 4, 2]


# ----------------------------------------------------------------------------- array types
@pytest.mark.parametrize("model_dtype", ["float64", "float32"])
@pytest.mark.parametrize("input_dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method,options", [("saliency", {}), ("smoothgrad", {"samples": 2,
                                                                               "seed": 0}),
                                            ("saliency", {"layer": "conv2"})])
def test_torch_tensor_in_torch_tensor_out(zoo, model_dtype, input_dtype, method, options):
    model, x = zoo.model("torch", "small_cnn", model_dtype), zoo.x("small_cnn")
    xt = torch.tensor(x, dtype=input_dtype)
    exp = cl.explain(model, xt, method, target=TARGET, **options)
    out = exp.attributions
    assert isinstance(out, torch.Tensor)
    assert out.dtype == input_dtype and out.device == xt.device and not out.requires_grad
    assert exp.inputs is xt
    if method == "saliency" and not options:
        rtol = 1e-8 if model_dtype == "float64" and input_dtype == torch.float64 else 1e-5
        zoo.assert_close(out.numpy(), R.saliency(zoo.spec("small_cnn"), x, TARGET), rtol, "tensor")


@pytest.mark.parametrize("flavor", ["torch", "keras"])
@pytest.mark.parametrize("input_dtype", [np.float64, np.float32])
def test_numpy_in_numpy_out_with_the_input_dtype(zoo, flavor, input_dtype):
    for model_dtype in ("float64", "float32"):
        model = zoo.model(flavor, "small_cnn", model_dtype)
        x = zoo.to_model(flavor, zoo.x("small_cnn")).astype(input_dtype)
        for method, options in (("gradient_x_input", {}), ("activations", {"layer": "conv1"}),
                                ("integrated_gradients", {"steps": 2})):
            out = cl.explain(model, x, method, target=TARGET, **options).attributions
            assert type(out) is np.ndarray and out.dtype == input_dtype, (method, model_dtype)


@pytest.mark.parametrize("input_dtype", ["float64", "float32"])
def test_tf_tensor_in_tf_tensor_out(zoo, input_dtype):
    import tensorflow as tf

    model, x = zoo.model("keras", "small_resnet"), zoo.x("small_resnet")
    xt = tf.constant(zoo.nhwc(x), dtype=input_dtype)
    for method, options in (("saliency", {}), ("vargrad", {"samples": 2, "seed": 1}),
                            ("saliency", {"layer": "block/conv2"})):
        out = cl.explain(model, xt, method, target=TARGET, **options).attributions
        assert isinstance(out, tf.Tensor) and out.dtype == tf.as_dtype(input_dtype)
    out = cl.explain(model, xt, "saliency", target=TARGET).attributions
    zoo.assert_close(zoo.nchw(out.numpy()), R.saliency(zoo.spec("small_resnet"), x, TARGET),
                     1e-8 if input_dtype == "float64" else 1e-5, "tf tensor saliency")


# ----------------------------------------------------------------------------- figures
@pytest.mark.parametrize("flavor,method,options", [
    ("torch", "integrated_gradients", {"steps": 4}),
    ("keras", "saliency", {}),
    ("keras", "activations", {"layer": "conv2"}),
])
def test_save_writes_a_png_and_html_embeds_it(zoo, tmp_path, flavor, method, options):
    x = zoo.to_model(flavor, zoo.x("small_cnn"))
    exp = cl.explain(zoo.model(flavor, "small_cnn"), x, method, target=TARGET, **options)
    path = exp.save(str(tmp_path / "explanation.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    html = exp._repr_html_()
    assert "<img" in html and 'src="data:image/png;base64,' in html


# ----------------------------------------------------------------------------- nested keras
def test_nested_keras_layer_by_path(zoo):
    spec, x = zoo.spec("small_resnet"), zoo.x("small_resnet")
    model, xk = zoo.model("keras", "small_resnet"), zoo.nhwc(zoo.x("small_resnet"))
    assert "block/conv1" in cl.layers(model) and "block/relu_out" in cl.layers(model)
    ref_act = R.activation(spec, x, "block.conv1")
    acts = cl.activations(model, xk, ["block/conv1", "block/relu_out"])
    zoo.assert_close(zoo.nchw(acts["block/conv1"]), ref_act, 1e-8, "cl.activations")
    zoo.assert_close(zoo.nchw(acts["block/relu_out"]), R.activation(spec, x, "block"), 1e-8,
                     "relu_out")
    exp = cl.explain(model, xk, "activations", layer="block/conv1")
    assert exp.layer == "block/conv1"
    zoo.assert_close(zoo.nchw(exp.attributions), ref_act, 1e-8, "activations method")
    for layer in ("block/conv1", "block/relu1", "block"):
        got = cl.explain(model, xk, "saliency", target=TARGET, layer=layer).attributions
        zoo.assert_close(zoo.nchw(got), R.saliency(spec, x, TARGET, layer=layer), 1e-8, layer)


# ----------------------------------------------------------------------------- layer objects
@pytest.mark.parametrize("flavor,kind,path", [
    ("torch", "small_cnn", "conv2"), ("torch", "small_resnet", "block.conv1"),
    ("keras", "small_cnn", "conv2"), ("keras", "small_resnet", "block/conv1"),
])
def test_layer_object_equals_layer_name(zoo, flavor, kind, path):
    model = zoo.model(flavor, kind)
    x = zoo.to_model(flavor, zoo.x(kind))
    if flavor == "torch":
        obj = model.get_submodule(path)
    else:
        obj = model
        for part in path.split("/"):
            obj = obj.get_layer(part)
    for method in ("saliency", "gradient_x_input", "activations", "guided_backprop"):
        by_name = cl.explain(model, x, method, target=TARGET, layer=path)
        by_object = cl.explain(model, x, method, target=TARGET, layer=obj)
        assert by_object.layer == by_name.layer == path
        np.testing.assert_array_equal(by_object.attributions, by_name.attributions)
    by_name = cl.explain(model, x, "saliency", target=cl.Channel(path, 3)).attributions
    by_object = cl.explain(model, x, "saliency", target=cl.Channel(obj, 3)).attributions
    np.testing.assert_array_equal(by_object, by_name)
    assert list(cl.activations(model, x, obj)) == [path]
