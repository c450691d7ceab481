"""GradientSHAP: the documented draws, closed form on linear models, both frameworks."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
from reference.numpy_nets import forward
from robustness import models as M
from robustness.catalogue import image, to_fw, to_nchw

TARGET = [1, 3, 0]


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_one_baseline_on_a_linear_model_is_exact(fw):
    """The gradient of a linear model is W everywhere: (x - b)·W whatever α and noise."""
    model = M.torch_linear() if fw == "torch" else M.keras_linear()
    x = image(fw)
    got = cl.explain(model, x, "gradient_shap", target=2, baselines=0.3, samples=7,
                     stdev=0.2, seed=1).numpy()
    w = M.linear_weights()[0][2].reshape(M.IMAGE)
    want = w * (to_nchw(fw, x).astype(np.float64) - 0.3)
    np.testing.assert_allclose(to_nchw(fw, got), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_a_baseline_distribution_follows_the_documented_draws(fw):
    model = M.torch_linear() if fw == "torch" else M.keras_linear()
    x = image(fw)
    pool = np.stack([np.full(M.IMAGE, v, np.float32) for v in (-1.0, 0.0, 2.0)])
    samples, seed = 6, 4
    got = cl.explain(model, x, "gradient_shap", target=2, baselines=to_fw(fw, pool),
                     samples=samples, seed=seed).numpy()
    choice = np.random.default_rng(seed).integers(0, 3, size=(samples, 2))
    mean_base = pool[choice].mean(axis=0)  # (2, C, H, W): each sample's mean baseline
    w = M.linear_weights()[0][2].reshape(M.IMAGE)
    want = w * (to_nchw(fw, x).astype(np.float64) - mean_base)
    np.testing.assert_allclose(to_nchw(fw, got), want, rtol=1e-4, atol=1e-6)


def test_frameworks_agree_and_completeness_holds_in_expectation(zoo):
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    results = {flavor: zoo.explain(flavor, "small_cnn", x, "gradient_shap", target=TARGET,
                                   baselines=["zeros", 0.2], samples=400, seed=0)[0]
               for flavor in ("torch", "keras")}
    zoo.assert_close(results["keras"], results["torch"], 1e-8, "keras vs torch")
    rows = np.arange(3)
    expected = forward(spec, x)[rows, TARGET] - 0.5 * (
        forward(spec, 0 * x)[rows, TARGET] + forward(spec, 0 * x + 0.2)[rows, TARGET])
    sums = results["torch"].reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(sums, expected, rtol=0.1, atol=0.05 * np.abs(expected).max())


@pytest.mark.parametrize("method", ["gradient_shap", "kernel_shap", "shapley_value_sampling"])
def test_our_names_run_captum_with_aligned_options(method):
    """implementation='captum' maps our names and options (samples, stdev, baseline) to
    Captum's classes; on a linear model both give the closed form w·(x - b)."""
    import warnings

    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    x = np.random.default_rng(0).random((1, 3, 2, 2)).astype(np.float32)
    options = dict(target=1, samples=40, seed=0)
    options.update({"baselines": 0.5} if method == "gradient_shap" else {"baseline": 0.5})
    if method != "gradient_shap":  # every element its own feature (Captum's default too)
        options["feature_mask"] = np.arange(12).reshape(1, 3, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's note on several inputs per Lime call
        theirs = cl.explain(model, x, method, implementation="captum", **options).numpy()
    ours = cl.explain(model, x, method, **options).numpy()
    want = (model[1].weight[1].detach().numpy().reshape(3, 2, 2) * (x[0] - 0.5))[None]
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(theirs, want, rtol=1e-3, atol=1e-5)
