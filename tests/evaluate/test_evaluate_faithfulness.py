"""Deletion / insertion curves equal hand-computed and numpy references on both frameworks."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.evaluate import area, deletion, insertion
from crosslens.core.imageops import gaussian_blur
from reference.builders import build_keras, build_torch
from reference.nets import SMALL_CNN, make_net
from reference.numpy_nets import forward

FRAMEWORKS = ("torch", "keras")
C, S, K = 2, 4, 3  # channels, side, classes of the linear model


def nhwc(a):
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def linear_model(framework: str, w: np.ndarray, b: np.ndarray):
    """f(x)_k = <w_k, x> + b_k as one convolution whose kernel covers the image (exact)."""
    if framework == "torch":
        import torch
        conv = torch.nn.Conv2d(C, K, S).double()
        with torch.no_grad():
            conv.weight.copy_(torch.as_tensor(w))
            conv.bias.copy_(torch.as_tensor(b))
        return torch.nn.Sequential(conv, torch.nn.Flatten()).eval()
    import keras
    inputs = keras.Input((S, S, C), dtype="float64")
    conv = keras.layers.Conv2D(K, S, dtype="float64")
    model = keras.Model(inputs, keras.layers.Flatten(dtype="float64")(conv(inputs)))
    conv.set_weights([np.transpose(w, (2, 3, 1, 0)), b])
    return model


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((K, C, S, S)), rng.standard_normal(K)
    x = rng.standard_normal((2, C, S, S))
    return w, b, x, {fw: linear_model(fw, w, b) for fw in FRAMEWORKS}


def hand_curve(w, b, x, target, kind, base):
    """Deletion/insertion of a linear model, one pixel per step, from the definition."""
    contrib = (w[target] * x).sum(axis=0).ravel()  # per-pixel <w, x>
    contrib_base = (w[target] * base).sum(axis=0).ravel()
    order = np.argsort(-contrib, kind="stable")  # attribution = gradient x input
    scores = []
    for k in range(len(order) + 1):
        moved = np.zeros(len(order), bool)
        moved[order[:k]] = True
        if kind == "deletion":
            scores.append(b[target] + contrib[~moved].sum() + contrib_base[moved].sum())
        else:
            scores.append(b[target] + contrib[moved].sum() + contrib_base[~moved].sum())
    return np.array(scores)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_linear_model_curve_by_hand(linear, framework, kind):
    w, b, x, models = linear
    target = [2, 0]
    attributions = np.stack([w[t] * xi for t, xi in zip(target, x)])  # NCHW
    base_value = 0.5
    fn = deletion if kind == "deletion" else insertion
    xm = x if framework == "torch" else nhwc(x)
    am = attributions if framework == "torch" else nhwc(attributions)
    curve = fn(models[framework], xm, am, target=target, baseline=base_value, steps=S * S)
    for i, t in enumerate(target):
        expected = hand_curve(w, b, x[i], t, kind, np.full_like(x[i], base_value))
        np.testing.assert_allclose(curve.scores[i], expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(curve.fractions, np.arange(S * S + 1) / (S * S))
    assert curve.target == target
    np.testing.assert_allclose(curve.auc, area(curve.fractions, curve.scores))
    # deletion in attribution order falls at least as fast as any other order: the
    # gradient x input of a linear model is the exact contribution of each pixel
    if kind == "deletion":
        reverse = fn(models[framework], xm, -am, target=target, baseline=0.0, steps=S * S)
        ordered = fn(models[framework], xm, am, target=target, baseline=0.0, steps=S * S)
        assert np.all(ordered.auc <= reverse.auc)


def test_area_is_the_trapezoid_rule():
    rng = np.random.default_rng(1)
    f = np.sort(rng.uniform(size=9))
    s = rng.standard_normal((3, 9))
    np.testing.assert_allclose(area(f, s), np.trapezoid(s, f, axis=1))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_reference_cnn_matches_numpy(framework):
    """Coarse steps, blur baseline, softmax score, CAM-sized maps: vs the numpy net."""
    spec = make_net(SMALL_CNN, 0)
    model = build_torch(spec) if framework == "torch" else build_keras(spec)
    x = spec.random_input(7, batch=3)
    rng = np.random.default_rng(3)
    cam = rng.standard_normal((3, 8, 8))  # (N, h, w) map, upsampled to 16x16
    from crosslens.viz import resize_bilinear
    relevance = np.stack([resize_bilinear(m, (16, 16)) for m in cam])
    target = [0, 4, 2]
    steps = 5
    xm = x if framework == "torch" else nhwc(x)
    curve = deletion(model, xm, cam, target=target, baseline="blur", blur_sigma=2.0,
                     steps=steps, score="softmax")
    blurred = gaussian_blur(x, 2.0, (2, 3))
    counts = np.rint(np.linspace(0, 256, steps + 1)).astype(int)
    for i in range(3):
        order = np.argsort(-relevance[i].ravel(), kind="stable")
        images = []
        for count in counts:
            moved = np.zeros(256, bool)
            moved[order[:count]] = True
            images.append(np.where(moved.reshape(16, 16), blurred[i], x[i]))
        probs = forward(spec, np.stack(images), output="softmax")[:, target[i]]
        np.testing.assert_allclose(curve.scores[i], probs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_chunking_does_not_change_the_curve(framework):
    spec = make_net(SMALL_CNN, 1)
    model = build_torch(spec) if framework == "torch" else build_keras(spec)
    x = spec.random_input(2, batch=2)
    xm = x if framework == "torch" else nhwc(x)
    attr = np.random.default_rng(0).standard_normal(xm.shape)
    whole = insertion(model, xm, attr, baseline="mean", steps=7)
    tiny = insertion(model, xm, attr, baseline="mean", steps=7, memory_budget=1)
    np.testing.assert_allclose(tiny.scores, whole.scores, rtol=1e-12)
    # "predicted" is the class of the unperturbed input: the insertion curve ends there
    outputs = forward(spec, x)
    assert whole.target == list(outputs.argmax(axis=1))
    np.testing.assert_allclose(whole.scores[:, -1], outputs.max(axis=1), rtol=1e-10)


def test_torch_and_keras_give_the_same_curve():
    spec = make_net(SMALL_CNN, 2)
    x = spec.random_input(5, batch=2)
    attr = np.random.default_rng(5).standard_normal(x.shape)
    ct = deletion(build_torch(spec), x, attr, target=1, baseline="uniform", seed=3, steps=9)
    ck = deletion(build_keras(spec), nhwc(x), nhwc(attr), target=1, baseline="uniform",
                  seed=3, steps=9)
    np.testing.assert_allclose(ct.scores, ck.scores, rtol=1e-9)


def test_bad_options_are_named():
    from crosslens.core.errors import OptionError
    spec = make_net(SMALL_CNN, 0)
    model = build_torch(spec)
    x = spec.random_input(0, batch=1)
    with pytest.raises(OptionError, match="score"):
        deletion(model, x, x, score="probability")
    with pytest.raises(OptionError, match="attribution maps"):
        deletion(model, x, np.zeros((2, 16, 16)))
