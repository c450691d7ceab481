"""KernelSHAP and Shapley value sampling: exact Shapley values where they are known in
closed form or by enumeration, efficiency, both frameworks."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import crosslens as cl
from reference.numpy_nets import forward

FLAVORS = ("torch", "keras")
TARGET = [1, 3, 0]


def _grid_mask(cells: int, size: int = 16) -> np.ndarray:
    """(1, 1, H, W) channels-first ids of a cells x cells grid."""
    rows = np.arange(size) * cells // size
    return (rows[:, None] * cells + rows[None, :]).reshape(1, 1, size, size)


def _features(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-feature values (N, M) read back from a per-element map (N, C, H, W)."""
    ids = np.unique(mask)
    return np.stack([values[:, 0][:, mask[0, 0] == i][:, 0] for i in ids], axis=1)


def _exact_shapley(f, x, base, mask):
    """The classic formula: Σ_S |S|!(M-|S|-1)!/M! (f(S ∪ i) - f(S)), by enumeration."""
    ids = np.unique(mask)
    m = len(ids)

    def value(subset):
        keep = np.isin(mask, [ids[j] for j in subset])
        return f(np.where(keep, x, base))

    phi = np.zeros((len(x), m))
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            for subset in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                phi[:, i] += weight * (value(subset + (i,)) - value(subset))
    return phi


@pytest.mark.parametrize("flavor", FLAVORS)
def test_kernel_shap_enumerated_is_the_exact_shapley_value(zoo, flavor):
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    mask = _grid_mask(2)  # 4 features: 14 coalitions, all evaluated
    base = 0.1 * np.ones_like(x)
    f = lambda v: forward(spec, v)[np.arange(len(v)), TARGET]  # noqa: E731
    want = _exact_shapley(f, x, base, mask)
    keras = flavor.startswith("keras")
    got, exp = zoo.explain(flavor, "small_cnn", x, "kernel_shap", target=TARGET,
                           baseline=0.1, samples=14,
                           feature_mask=np.moveaxis(mask, 1, -1) if keras else mask)
    assert exp.info["exact"] and exp.info["coalitions"] == 14
    np.testing.assert_allclose(_features(mask, got), want, rtol=1e-8, atol=1e-10)
    # efficiency: the features' values sum to f(x) - f(baseline)
    np.testing.assert_allclose(want.sum(axis=1), f(x) - f(base), rtol=1e-10)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method,options", [("kernel_shap", {"samples": 64, "seed": 3}),
                                            ("shapley_value_sampling", {"samples": 3,
                                                                        "seed": 3})])
def test_sampled_shapley_values_are_efficient(zoo, flavor, method, options):
    """Sampled (16 grid features > 64 coalitions), the values of the features still sum
    exactly to f(x) - f(baseline)."""
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    got, exp = zoo.explain(flavor, "small_cnn", x, method, target=TARGET, **options)
    mask = _grid_mask(4)
    f = forward(spec, x)[np.arange(3), TARGET] - forward(spec, 0 * x)[np.arange(3), TARGET]
    np.testing.assert_allclose(_features(mask, got).sum(axis=1), f, rtol=1e-9)
    assert exp.info["features"] == 16 and not exp.info.get("exact", False)


@pytest.mark.parametrize("method", ["kernel_shap", "shapley_value_sampling"])
@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_additive_models_get_their_closed_form(fw, method):
    """On a linear model the Shapley value of a feature is Σ_i∈F w_i (x_i - b_i), for any
    sample of coalitions or orders."""
    from robustness import models as M
    from robustness.catalogue import image, to_nchw

    model = M.torch_linear() if fw == "torch" else M.keras_linear()
    x = image(fw)
    w, _ = M.linear_weights()
    samples = 32 if method == "kernel_shap" else 2  # coalitions (>= 16 features) or orders
    exp = cl.explain(model, x, method, target=2, baseline=0.5, samples=samples, seed=0)
    xs = to_nchw(fw, x).astype(np.float64)
    contribution = w[2].reshape(M.IMAGE) * (xs - 0.5)
    mask = np.minimum(np.arange(8) * 4 // 8, 3)
    grid = mask[:, None] * 4 + mask[None, :]
    want = np.zeros_like(xs)
    for i in range(16):
        cell = grid == i
        want[:, :, cell] = contribution[:, :, cell].sum(axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(to_nchw(fw, exp.numpy()), want, rtol=1e-4, atol=1e-5)


def test_kernel_shap_refuses_an_undetermined_regression(zoo):
    with pytest.raises(cl.OptionError, match="samples >= the 16 features"):
        zoo.explain("torch", "small_cnn", zoo.x("small_cnn"), "kernel_shap", target=TARGET,
                    samples=8)


def test_tokens_each_one_a_feature():
    """Integer ids: one feature per token, absent tokens replaced by an id (padding)."""
    import torch
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 3)
    model = torch.nn.Sequential(emb, torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    ids = torch.tensor([[1, 5, 7, 2]])
    exp = cl.explain(model, ids, "kernel_shap", target=1, baseline=0, samples=14)
    with torch.no_grad():
        w = model[2].weight[1].reshape(4, 3)
        want = ((emb.weight[ids[0]] - emb.weight[0]) * w).sum(dim=1)
    assert exp.info["exact"]
    np.testing.assert_allclose(exp.numpy()[0], want.numpy(), rtol=1e-5, atol=1e-6)
