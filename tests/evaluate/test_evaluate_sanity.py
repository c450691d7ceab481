"""Model-parameter randomization: copies only, same draws on both frameworks, and it
separates a method that reads the weights (saliency) from one that does not (Sobel)."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.backends import get_backend
from crosslens.evaluate import model_randomization, rankdata, spearman
from reference.builders import build_keras, build_torch
from reference.nets import SMALL_CNN, SMALL_RESNET, make_net

FRAMEWORKS = ("torch", "keras")


def nhwc(a):
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def build(framework, spec):
    return build_torch(spec) if framework == "torch" else build_keras(spec)


def weights_of(model):
    if hasattr(model, "state_dict"):
        return [v.detach().numpy().copy() for v in model.state_dict().values()]
    return [w.copy() for w in model.get_weights()]


def sobel_explainer(layout):
    """Test oracle: |Sobel gradient| of the input (channels summed); ignores the model."""
    kx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)

    def explain(model, x, target):
        x = np.asarray(x, float)
        images = x.sum(axis=1 if layout == "channels_first" else 3)
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1)), mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
        gx = (windows * kx).sum(axis=(-1, -2))
        gy = (windows * kx.T).sum(axis=(-1, -2))
        return np.sqrt(gx ** 2 + gy ** 2)

    explain.__name__ = "sobel"
    return explain


def test_rankdata_and_spearman_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, size=200).astype(float)  # many ties
    b = a + rng.integers(0, 3, size=200)
    np.testing.assert_allclose(rankdata(a), stats.rankdata(a))
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, rel=1e-12)
    assert spearman(np.ones(5), np.arange(5)) == 0.0


@pytest.mark.parametrize("kind", [SMALL_CNN, SMALL_RESNET])
def test_randomized_copy_same_on_both_frameworks_and_model_untouched(kind):
    spec = make_net(kind, 0)
    torch_model, keras_model = build_torch(spec), build_keras(spec)
    before = {"torch": weights_of(torch_model), "keras": weights_of(keras_model)}
    bt, bk = get_backend(torch_model), get_backend(keras_model)
    assert [n.replace("/", ".") for n in bk.parameter_layers()] == bt.parameter_layers()
    layers = bt.parameter_layers()[-2:]
    copy_t = bt.randomized_copy(layers, seed=5)
    copy_k = bk.randomized_copy([bk.resolve_layer(n.replace(".", "/")) for n in layers], seed=5)
    for model, name in ((torch_model, "torch"), (keras_model, "keras")):
        for old, new in zip(before[name], weights_of(model)):
            np.testing.assert_array_equal(old, new)
    x = spec.random_input(3, batch=2)
    import torch
    out_t = copy_t(torch.as_tensor(x)).detach().numpy()
    out_k = np.asarray(copy_k(nhwc(x)))
    np.testing.assert_allclose(out_t, out_k, rtol=1e-9, atol=1e-12)
    assert not np.allclose(out_t, torch_model(torch.as_tensor(x)).detach().numpy())
    # only the listed layers changed
    original = dict(torch_model.named_parameters())
    for name, param in copy_t.named_parameters():
        changed = not np.array_equal(param.detach().numpy(), original[name].detach().numpy())
        assert changed == (name.rsplit(".", 1)[0] in layers), name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sanity_check_separates_saliency_from_an_edge_detector(framework):
    spec = make_net(SMALL_CNN, 3)
    model = build(framework, spec)
    before = weights_of(model)
    x = spec.random_input(11, batch=3)
    xm = x if framework == "torch" else nhwc(x)
    layout = "channels_first" if framework == "torch" else "channels_last"
    saliency = model_randomization(model, xm, "saliency", seed=1)
    sobel = model_randomization(model, xm, sobel_explainer(layout), seed=1)
    assert saliency.layers == (["fc", "conv2", "conv1"] if framework == "torch"
                               else ["fc", "conv2", "conv1"])
    assert saliency.correlations.shape == (3, 3)
    np.testing.assert_allclose(sobel.correlations, 1.0)
    assert saliency.final < 0.5 < sobel.final
    for old, new in zip(before, weights_of(model)):  # the model itself is untouched
        np.testing.assert_array_equal(old, new)


def test_sanity_correlations_agree_across_frameworks():
    spec = make_net(SMALL_RESNET, 2)
    x = spec.random_input(4, batch=2)
    kwargs = dict(target=[1, 3], seed=7, mode="independent", max_steps=3)
    rt = model_randomization(build_torch(spec), x, "gradient_x_input", **kwargs)
    rk = model_randomization(build_keras(spec), nhwc(x), "gradient_x_input", **kwargs)
    assert [n.replace("/", ".") for n in rk.layers] == rt.layers
    np.testing.assert_allclose(rt.correlations, rk.correlations, atol=1e-9)
    assert rt.target == [1, 3]
    assert "spearman" in rt.table()
