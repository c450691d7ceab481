"""DeepLIFT (Rescale) and DeepLiftShap: a numpy reference of the multiplier rules (with
max pooling), Captum's DeepLift / DeepLiftShap, summation-to-delta, PyTorch == Keras,
functional and in-place nonlinearities, layer attributions, and the model unchanged."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
from reference import numpy_ops as ops
from reference.nets import SMALL_CNN
from reference.numpy_nets import _run
from robustness.fingerprint import assert_unchanged, fingerprint

TARGET = [1, 3, 0]


def _secant(x, x0, y, y0, derivative):
    dx = x - x0
    near = np.abs(dx) < 1e-10
    return np.where(near, derivative, (y - y0) / np.where(near, 1.0, dx))


def deeplift_numpy(spec, x, base, target):
    """DeepLIFT Rescale on the small CNN from its rules: multipliers through the linear
    maps, secants at the ReLUs, the gradient (at x) through max pooling."""
    a, b = _run(spec, x), _run(spec, base)
    w = spec.weights
    g = np.zeros_like(a["fc"])
    g[np.arange(len(x)), target] = 1.0
    g = ops.dense_backward_input(g, w["fc.weight"])
    g = ops.gap_backward(a["relu2"].shape, g.reshape(g.shape[0], -1, 1, 1))
    g = g * _secant(a["conv2"], b["conv2"], a["relu2"], b["relu2"], a["conv2"] > 0)
    g = ops.conv2d_backward_input(g, w["conv2.weight"], pad=1)
    g = ops.maxpool2x2_backward(a["_pool_idx"], g)
    g = g * _secant(a["conv1"], b["conv1"], a["relu1"], b["relu1"], a["conv1"] > 0)
    g = ops.conv2d_backward_input(g, w["conv1.weight"], pad=1)
    return g * (x - base)


@pytest.mark.parametrize("flavor", ("torch", "torch_functional", "keras", "keras_fused"))
def test_equals_the_numpy_rules(zoo, flavor):
    x = zoo.x(SMALL_CNN)
    base = zoo.x(SMALL_CNN, seed=1) * 0.3
    want = deeplift_numpy(zoo.spec(SMALL_CNN), x, base, TARGET)
    out = cl.explain(zoo.model(flavor, SMALL_CNN), zoo.to_model(flavor, x), "deeplift",
                     target=TARGET, baseline=zoo.to_model(flavor, base))
    got = np.asarray(out.attributions)
    got = zoo.nchw(got) if zoo.is_keras(flavor) else got
    assert zoo.rel_err(got, want) < 1e-8
    # max pooling keeps its gradient, so summation-to-delta is not exact here; report it
    assert out.info["delta"].shape == (3,)


def _twins(dtype: str = "float64"):
    """A conv net without max pooling, with ReLU, tanh and sigmoid, as nn.Modules and as
    Keras layers (fused activation, Activation layer, Dense activation)."""
    import keras
    import torch
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(5, 6), torch.nn.Sigmoid(), torch.nn.Linear(6, 3)
    ).to(getattr(torch, dtype)).eval()
    inp = keras.Input((8, 8, 3), dtype=dtype)
    c1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype)
    c2 = keras.layers.Conv2D(5, 3, padding="same", dtype=dtype)
    d1 = keras.layers.Dense(6, activation="sigmoid", dtype=dtype)
    d2 = keras.layers.Dense(3, dtype=dtype)
    h = keras.layers.Activation("tanh", dtype=dtype)(c2(c1(inp)))
    k = keras.Model(inp, d2(d1(keras.layers.GlobalAveragePooling2D(dtype=dtype)(h))))
    t = {i: (m[i].weight.detach().numpy(), m[i].bias.detach().numpy()) for i in (0, 2, 6, 8)}
    c1.set_weights([t[0][0].transpose(2, 3, 1, 0), t[0][1]])
    c2.set_weights([t[2][0].transpose(2, 3, 1, 0), t[2][1]])
    d1.set_weights([t[6][0].T, t[6][1]])
    d2.set_weights([t[8][0].T, t[8][1]])
    return m, k


def _data(dtype=np.float64):
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(dtype)
    base = (np.random.default_rng(1).standard_normal((4, 3, 8, 8)) * 0.1).astype(dtype)
    return x, base


def test_equals_captum_and_sums_to_delta_on_both_frameworks():
    import torch
    from captum.attr import DeepLift
    m, k = _twins()
    x, base = _data()
    target = [0, 1, 2, 0]
    theirs = DeepLift(m).attribute(torch.from_numpy(x), torch.from_numpy(base),
                                   target=target).detach().numpy()
    ours = cl.explain(m, x, "deeplift", target=target, baseline=base)
    mapped = cl.explain(m, x, "deeplift", target=target, baseline=base,
                        implementation="captum")
    keras_out = cl.explain(k, x.transpose(0, 2, 3, 1), "deeplift", target=target,
                           baseline=base.transpose(0, 2, 3, 1))
    scale = np.abs(theirs).max()
    assert np.abs(np.asarray(ours.attributions) - theirs).max() < 1e-12 * scale
    assert np.abs(np.asarray(mapped.attributions) - theirs).max() < 1e-12 * scale
    keras_values = np.asarray(keras_out.attributions).transpose(0, 3, 1, 2)
    assert np.abs(keras_values - theirs).max() < 1e-12 * scale
    f = m(torch.from_numpy(np.concatenate([x, base]))).detach().numpy()
    gap = f[np.arange(4), target] - f[4 + np.arange(4), target]
    for out in (ours, keras_out):
        sums = np.asarray(out.attributions).reshape(4, -1).sum(axis=1)
        np.testing.assert_allclose(sums, gap, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(out.info["delta"], 0.0, atol=1e-12)


def test_float32_twins_agree(zoo):
    # ReLU nets: secants of saturating functions (sigmoid near 1) lose float32 digits to
    # cancellation in every framework alike, so those are compared in float64 above
    from reference.nets import SMALL_RESNET
    for kind in (SMALL_CNN, SMALL_RESNET):
        x = zoo.x(kind, dtype=np.float32)
        for baseline in (0.0, "blur"):
            t = np.asarray(cl.explain(zoo.model("torch", kind, "float32"), x, "deeplift",
                                      target=TARGET, baseline=baseline).attributions)
            k = np.asarray(cl.explain(zoo.model("keras", kind, "float32"), zoo.nhwc(x),
                                      "deeplift", target=TARGET, baseline=baseline).attributions)
            assert zoo.rel_err(zoo.nchw(k), t) < 1e-5, (kind, baseline)


def test_deeplift_shap_equals_captum_and_is_the_mean_over_baselines():
    import torch
    from captum.attr import DeepLiftShap
    m, k = _twins()
    x, _ = _data()
    dist = np.random.default_rng(2).standard_normal((5, 3, 8, 8))
    ours = cl.explain(m, x, "deeplift_shap", target=2, baselines=dist)
    theirs = DeepLiftShap(m).attribute(torch.from_numpy(x), torch.from_numpy(dist),
                                       target=2).detach().numpy()
    assert np.abs(np.asarray(ours.attributions) - theirs).max() < 1e-12 * np.abs(theirs).max()
    each = [np.asarray(cl.explain(m, x, "deeplift", target=2, baseline=b).attributions)
            for b in dist]
    np.testing.assert_allclose(np.asarray(ours.attributions), np.mean(each, axis=0),
                               rtol=1e-12, atol=1e-16)
    keras_out = cl.explain(k, x.transpose(0, 2, 3, 1), "deeplift_shap", target=2,
                           baselines=dist.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(keras_out.attributions).transpose(0, 3, 1, 2),
                               theirs, rtol=1e-9, atol=1e-14)
    # efficiency against the distribution: sums to f(x) - mean_b f(b)
    f_x = m(torch.from_numpy(x)).detach().numpy()[:, 2]
    f_b = m(torch.from_numpy(dist)).detach().numpy()[:, 2].mean()
    np.testing.assert_allclose(np.asarray(ours.attributions).reshape(4, -1).sum(axis=1),
                               f_x - f_b, rtol=1e-10)


@pytest.mark.parametrize("layer", ("2", "6"))
def test_layer_attributions_sum_to_the_output_difference(layer):
    import torch
    m, _ = _twins()
    x, base = _data()
    out = cl.explain(m, x, "deeplift", target=1, baseline=base, layer=layer)
    f = m(torch.from_numpy(np.concatenate([x, base]))).detach().numpy()[:, 1]
    np.testing.assert_allclose(np.asarray(out.attributions).reshape(4, -1).sum(axis=1),
                               f[:4] - f[4:], rtol=1e-10)


def test_pairs_survive_small_passes_and_the_model_is_unchanged(zoo):
    model = zoo.build("torch", SMALL_CNN)
    x, base = zoo.x(SMALL_CNN), zoo.x(SMALL_CNN, seed=1) * 0.3
    before = fingerprint(model)
    whole = np.asarray(cl.explain(model, x, "deeplift", target=TARGET,
                                  baseline=base).attributions)
    small = np.asarray(cl.explain(model, x, "deeplift", target=TARGET, baseline=base,
                                  memory_budget="60KB").attributions)
    np.testing.assert_allclose(small, whole, rtol=1e-12, atol=1e-16)
    assert_unchanged(model, before)


# --- RevealCancel -------------------------------------------------------------------------

def _reveal(da, z0, z1, lin, lin_t, w, g):
    """Multipliers at a linear layer's input under RevealCancel for ReLU, from the
    multipliers ``g`` at the ReLU's output."""
    wp, wn = np.maximum(w, 0), np.minimum(w, 0)
    ap, an = np.maximum(da, 0), np.minimum(da, 0)
    up, down = lin(ap, wp) + lin(an, wn), lin(ap, wn) + lin(an, wp)
    f = ops.relu

    def slope(dy, dz):
        near = np.abs(dz) < 1e-10
        return np.where(near, 0.0, dy / np.where(near, 1.0, dz))
    m_up = slope(0.5 * (f(z0 + up) - f(z0)) + 0.5 * (f(z1) - f(z0 + down)), up)
    m_down = slope(0.5 * (f(z0 + down) - f(z0)) + 0.5 * (f(z1) - f(z0 + up)), down)
    pos, neg = (da > 0).astype(float), (da < 0).astype(float)
    return (pos * (lin_t(g * m_up, wp) + lin_t(g * m_down, wn))
            + neg * (lin_t(g * m_up, wn) + lin_t(g * m_down, wp))
            + (1 - pos - neg) * lin_t(g * 0.5 * (m_up + m_down), w))


def reveal_cancel_numpy(spec, x, base, target):
    a, b = _run(spec, x), _run(spec, base)
    w = spec.weights

    def conv(u, k):
        return ops.conv2d(u, k, None, pad=1)

    def conv_t(g, k):
        return ops.conv2d_backward_input(g, k, pad=1)
    g = np.zeros_like(a["fc"])
    g[np.arange(len(x)), target] = 1.0
    g = ops.dense_backward_input(g, w["fc.weight"])
    g = ops.gap_backward(a["relu2"].shape, g.reshape(g.shape[0], -1, 1, 1))
    g = _reveal(a["pool"] - b["pool"], b["conv2"], a["conv2"], conv, conv_t, w["conv2.weight"], g)
    g = ops.maxpool2x2_backward(a["_pool_idx"], g)
    g = _reveal(x - base, b["conv1"], a["conv1"], conv, conv_t, w["conv1.weight"], g)
    return g * (x - base)


@pytest.mark.parametrize("flavor", ("torch", "keras", "keras_fused"))
def test_reveal_cancel_equals_the_numpy_rules(zoo, flavor):
    x = zoo.x(SMALL_CNN)
    base = zoo.x(SMALL_CNN, seed=1) * 0.3
    want = reveal_cancel_numpy(zoo.spec(SMALL_CNN), x, base, TARGET)
    out = cl.explain(zoo.model(flavor, SMALL_CNN), zoo.to_model(flavor, x), "deeplift",
                     target=TARGET, baseline=zoo.to_model(flavor, base), rule="reveal_cancel")
    got = np.asarray(out.attributions)
    got = zoo.nchw(got) if zoo.is_keras(flavor) else got
    assert zoo.rel_err(got, want) < 1e-8
    rescale = deeplift_numpy(zoo.spec(SMALL_CNN), x, base, TARGET)
    assert zoo.rel_err(got, rescale) > 1e-3  # a different rule, not Rescale again


def test_reveal_cancel_sums_to_delta_on_batch_normed_resnets_and_twins(zoo):
    from reference.nets import SMALL_RESNET
    x = zoo.x(SMALL_RESNET)
    outs = []
    for flavor in ("torch", "keras"):
        out = cl.explain(zoo.model(flavor, SMALL_RESNET), zoo.to_model(flavor, x), "deeplift",
                         target=TARGET, rule="reveal_cancel")
        np.testing.assert_allclose(out.info["delta"], 0.0, atol=1e-12)
        values = np.asarray(out.attributions)
        outs.append(zoo.nchw(values) if flavor == "keras" else values)
    assert zoo.rel_err(outs[1], outs[0]) < 1e-10
    m, k = _twins()
    xt, base = _data()
    a = cl.explain(m, xt, "deeplift_shap", target=1, baselines=base, rule="reveal_cancel")
    b = cl.explain(k, xt.transpose(0, 2, 3, 1), "deeplift_shap", target=1,
                   baselines=base.transpose(0, 2, 3, 1), rule="reveal_cancel")
    np.testing.assert_allclose(np.asarray(b.attributions).transpose(0, 3, 1, 2),
                               np.asarray(a.attributions), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(a.info["delta"], 0.0, atol=1e-12)


def test_reveal_cancel_reveals_what_rescale_cancels():
    """relu(w1 x1 + w2 x2) with the sum negative: Rescale gives both inputs 0; RevealCancel
    gives x1 w1 x1 / 2 and x2 the opposite (they cancel), as in the paper's example."""
    import keras
    import torch
    w = np.array([[2.0, -3.0]])
    torch_model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False), torch.nn.ReLU()
                                      ).double()
    with torch.no_grad():
        torch_model[0].weight.copy_(torch.from_numpy(w))
    inp = keras.Input((2,), dtype="float64")
    dense = keras.layers.Dense(1, activation="relu", use_bias=False, dtype="float64")
    keras_model = keras.Model(inp, dense(inp))
    dense.set_weights([w.T])
    x = np.array([[1.0, 1.0], [0.5, 2.0]])
    half = 0.5 * w[0, 0] * x[:, 0]
    for model in (torch_model, keras_model):  # one output: class 1 scores +output
        rescale = np.asarray(cl.explain(model, x, "deeplift", target=1).attributions)
        np.testing.assert_allclose(rescale, 0.0, atol=1e-15)
        reveal = np.asarray(cl.explain(model, x, "deeplift", target=1,
                                       rule="reveal_cancel").attributions)
        np.testing.assert_allclose(reveal, np.stack([half, -half], axis=1), rtol=1e-12)


def test_reveal_cancel_without_activation_layers_is_an_error(zoo):
    with pytest.raises(cl.CrosslensError, match="rule='rescale'"):
        cl.explain(zoo.model("torch_functional", SMALL_CNN), zoo.x(SMALL_CNN), "deeplift",
                   target=TARGET, rule="reveal_cancel")
    with pytest.raises(cl.CrosslensError, match="DeepLIFT rule"):
        cl.explain(zoo.model("torch", SMALL_CNN), zoo.x(SMALL_CNN), "deeplift", rule="nope")
