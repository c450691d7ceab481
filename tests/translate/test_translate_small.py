"""Small CNN and small residual net (BatchNorm, eval mode) translated in both directions."""

from __future__ import annotations

import numpy as np
import pytest

from _translate_capture import keras_activation, rel_err, torch_activation
import _translate_models as M

from crosslens.translate import Translation, translate

OUT_TOL = 1e-5  # relative error on outputs required by the issue
GRAD_TOL = 1e-4


def _print(tr, title):
    print(f"\n===== {title} =====\n{tr.report}", flush=True)
    return tr


@pytest.fixture(scope="module")
def torch_cnn():
    m = M.torch_small_cnn()
    x = M.example_nchw()
    return m, x, _print(translate(m, to="keras", example=x, cache_dir=False), "torch SmallCNN -> keras")


@pytest.fixture(scope="module")
def torch_resnet():
    m = M.torch_small_resnet()
    x = M.example_nchw()
    return m, x, _print(translate(m, to="keras", example=x, cache_dir=False), "torch SmallResNet -> keras")


@pytest.fixture(scope="module")
def keras_cnn():
    m = M.keras_small_cnn()
    x = M.example_nhwc()
    return m, x, _print(translate(m, to="torch", example=x, cache_dir=False), "keras small CNN -> torch")


@pytest.fixture(scope="module")
def keras_resnet():
    m = M.keras_small_resnet()
    x = M.example_nhwc()
    return m, x, _print(translate(m, to="torch", example=x, cache_dir=False), "keras small ResNet -> torch")


ALL = ["torch_cnn", "torch_resnet", "keras_cnn", "keras_resnet"]


@pytest.mark.parametrize("case", ALL)
def test_verification_numbers(case, request):
    _, _, tr = request.getfixturevalue(case)
    assert isinstance(tr, Translation)
    v = tr.report.verification
    assert v.passed
    assert len(v.probes) == 4 and v.probes[0].kind == "example"
    assert v.worst["output"].rel <= OUT_TOL
    assert v.worst["grad_sum"].rel <= GRAD_TOL and v.worst["grad_class"].rel <= GRAD_TOL
    assert v.worst["output"].cosine > 0.999999
    assert v.worst["grad_class"].cosine > 0.99999


@pytest.mark.parametrize("case", ALL)
def test_report_contents(case, request):
    _, _, tr = request.getfixturevalue(case)
    model, report = tr  # unpacks as (translated_model, report)
    assert model is tr.translated
    d = report.to_dict()
    assert d["onnx_opset"] >= 13
    assert sum(d["op_counts"].values()) > 0 and "Conv" in d["op_counts"]
    assert "onnx" in d["converter_versions"] and "torch" in d["converter_versions"]
    assert d["seconds"] > 0
    text = str(report)
    for word in ("opset", "ops:", "converters:", "verification: PASSED", "grad class"):
        assert word in text


@pytest.mark.parametrize("case", ["torch_cnn", "torch_resnet"])
def test_torch_to_keras_model_is_nhwc_keras(case, request):
    import keras

    m, x, tr = request.getfixturevalue(case)
    km = tr.translated
    assert isinstance(km, keras.Model)
    assert tuple(km.inputs[0].shape[1:]) == (32, 32, 3)
    import torch

    with torch.no_grad():
        ref = m(torch.as_tensor(x)).numpy()
    out = np.asarray(km(tr.convert_input(x)))
    assert rel_err(out, ref) <= OUT_TOL
    # a different batch size works (dynamic batch)
    x5 = np.random.default_rng(3).random((5, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref5 = m(torch.as_tensor(x5)).numpy()
    assert rel_err(np.asarray(km(tr.convert_input(x5))), ref5) <= OUT_TOL


@pytest.mark.parametrize("case", ["keras_cnn", "keras_resnet"])
def test_keras_to_torch_model_is_nchw_torch(case, request):
    import torch

    m, x, tr = request.getfixturevalue(case)
    tm = tr.translated
    assert isinstance(tm, torch.nn.Module)
    x5 = np.random.default_rng(3).random((5, 32, 32, 3), dtype=np.float32)
    ref = np.asarray(m(x5, training=False))
    xt = torch.as_tensor(tr.convert_input(x5))
    assert xt.shape == (5, 3, 32, 32)
    with torch.no_grad():
        out = tm(xt).numpy()
    assert rel_err(out, ref) <= OUT_TOL
    # attributions come back in the original layout
    xt.requires_grad_(True)
    tm(xt)[:, 3].sum().backward()
    back = tr.convert_back(xt.grad.numpy())
    assert back.shape == x5.shape


# ---------------------------------------------------------------- layer mapping
@pytest.mark.parametrize("case", ["torch_cnn", "torch_resnet"])
def test_layer_mapping_torch_to_keras(case, request):
    m, x, tr = request.getfixturevalue(case)
    names = [n for n, _ in m.named_modules() if n]
    checked = 0
    for name in names:
        ref = tr.layer_map[name]
        if ref.target is None:
            continue
        a_orig = torch_activation(m, name, x)
        a_tr = keras_activation(tr.translated, tr.layer(name), tr.convert_input(x))
        err = rel_err(tr.activation_to_original(name, a_tr), a_orig)
        print(f"  {name:24s} -> {tr.layer(name):24s} perm={ref.perm} rel={err:.2e}")
        assert err <= OUT_TOL, name
        checked += 1
    assert checked >= len(names) - 1  # everything with an output is mapped
    # conv before BN keeps its own activation (no Conv+BN fusion)
    assert tr.layer("conv1" if case == "torch_cnn" else "layer1.conv1")


@pytest.mark.parametrize("case", ["keras_cnn", "keras_resnet"])
def test_layer_mapping_keras_to_torch(case, request):
    m, x, tr = request.getfixturevalue(case)
    checked = 0
    for layer in m.layers[1:]:
        a_orig = keras_activation(m, layer.name, x)
        target = tr.layer(layer.name)
        a_tr = torch_activation(tr.translated, target, tr.convert_input(x))
        err = rel_err(tr.activation_to_original(layer.name, a_tr), a_orig)
        print(f"  {layer.name:16s} -> {target:40s} perm={tr.layer_perm(layer.name)} rel={err:.2e}")
        assert err <= OUT_TOL, layer.name
        checked += 1
    assert checked == len(m.layers) - 1
    # tf2onnx+grappler would fuse conv and BN; we keep the conv output addressable
    conv = "conv1" if case == "keras_cnn" else "stem_conv"
    assert tr.layer(conv) == conv


def test_layer_mapping_gradients_flow(torch_resnet, keras_resnet):
    """The mapped module is on the main path: gradients w.r.t. its activation are non-zero."""
    import torch

    _, x, tr = keras_resnet
    module = dict(tr.translated.named_modules())[tr.layer("b1_out")]
    store = {}
    h = module.register_forward_hook(lambda _m, _i, o: store.setdefault("a", o))
    try:
        out = tr.translated(torch.as_tensor(tr.convert_input(x)))
    finally:
        h.remove()
    (g,) = torch.autograd.grad(out[:, 0].sum(), store["a"])
    assert float(g.abs().sum()) > 0


def test_unknown_layer_error(torch_resnet, keras_cnn):
    from crosslens.translate import UnknownLayerError

    _, _, tr = torch_resnet
    with pytest.raises(UnknownLayerError) as ei:
        tr.layer("layer1.conv")
    msg = str(ei.value)
    print(msg)
    assert "layer1.conv1" in msg and "closest" in msg
    _, _, tr = keras_cnn
    with pytest.raises(KeyError, match="conv1"):
        tr.layer("conv_1")


def test_get_layer_objects(torch_resnet, keras_cnn):
    import keras
    import torch

    _, _, tr = torch_resnet
    assert isinstance(tr.get_layer("layer1.conv1"), keras.layers.Conv2D)
    _, _, tr = keras_cnn
    assert isinstance(tr.get_layer("conv1"), torch.nn.Conv2d)
