"""Feature tables (N, F) from scikit-learn's shipped datasets.

- PyTorch == Keras (float64 twin MLPs) for every method that applies to a table;
- feature groups: KernelSHAP / LIME / ablation / Shapley sampling over groups of a linear
  model are each group's closed-form contribution; gradient methods sum their features;
- Captum ``KernelShap`` fed our coalitions == ours; the ``shap`` package's
  ``KernelExplainer`` == ours, exactly on a linear model (closed form) and with every
  coalition enumerated on an MLP;
- the bar chart and the beeswarm summary follow SHAP's conventions (order, colours).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import crosslens as cl
from crosslens.modalities import explain_tabular, feature_group_ids
from crosslens.viz import beeswarm_offsets, feature_bars, summary_plot

from modalities.twins import keras_tabular, torch_tabular


@functools.lru_cache(maxsize=None)
def table(name: str) -> tuple[np.ndarray, list[str]]:
    """A standardized scikit-learn table and its feature names."""
    from sklearn import datasets
    data = getattr(datasets, f"load_{name}")()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    return x, list(data.feature_names)


@functools.lru_cache(maxsize=None)
def twins(features: int = 13, classes: int = 3):
    keras_model = keras_tabular(features, classes)
    return torch_tabular(keras_model), keras_model


WINE = table("wine")[0][::45]  # 4 rows of 13 features
#: Every method that applies to a table, with cheap options (seeded where random).
APPLICABLE = {
    "saliency": {}, "gradient_x_input": {}, "integrated_gradients": {"steps": 16},
    "smoothgrad": {"samples": 4}, "squaregrad": {"samples": 4}, "vargrad": {"samples": 4},
    "guided_backprop": {}, "deconvnet": {}, "deeplift": {}, "deeplift_shap": {},
    "gradient_shap": {"samples": 4}, "lrp": {}, "deep_taylor": {},
    "internal_influence": {"steps": 16}, "conductance": {"layer": "hidden", "steps": 8},
    "occlusion": {"patch": 2, "stride": 1}, "feature_ablation": {"feature_mask": np.arange(13)},
    "kernel_shap": {"samples": 60}, "lime": {"samples": 60},
    "shapley_value_sampling": {"samples": 3}, "feature_permutation": {},
}


@pytest.mark.parametrize("method", list(APPLICABLE))
def test_torch_equals_keras_for_every_method_that_applies(method):
    torch_model, keras_model = twins()
    options = dict(APPLICABLE[method], target=1, seed=0)
    ours = cl.explain(torch_model, WINE, method, **options).numpy()
    theirs = cl.explain(keras_model, WINE, method, **options).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)
    assert np.abs(ours).max() > 1e-3


# --- feature groups on a linear model: closed forms ------------------------------------------

def _linear(features: int, seed: int = 0):
    torch.manual_seed(seed)
    return torch.nn.Linear(features, 2).double().eval()


CANCER_GROUPS = {"mean": [n for n in table("breast_cancer")[1] if n.startswith("mean ")],
                 "error": [n for n in table("breast_cancer")[1] if n.endswith(" error")],
                 "worst": [n for n in table("breast_cancer")[1] if n.startswith("worst ")]}


@pytest.mark.parametrize("method,options", [
    ("kernel_shap", {}), ("feature_ablation", {}), ("shapley_value_sampling", {"samples": 2}),
    ("lime", {"samples": 40, "ridge": 0.0}), ("integrated_gradients", {"steps": 4}),
    ("deeplift", {})])
def test_group_values_of_a_linear_model_are_the_group_contributions(method, options):
    x, names = table("breast_cancer")
    x = x[:3]
    model = _linear(30)
    baseline = x.mean(0) * 0 + 0.25
    exp = explain_tabular(model, x, method, feature_names=names, feature_groups=CANCER_GROUPS,
                          target=1, seed=0, baseline=baseline, **options)
    group_of, group_names = feature_group_ids(names, CANCER_GROUPS)
    weights = model.weight.detach().numpy()[1]
    want = np.stack([[(weights * (row - baseline))[group_of == g].sum()
                      for g in range(len(group_names))] for row in x])
    assert group_names == ["mean", "error", "worst"]
    np.testing.assert_allclose(exp.group_values, want, rtol=1e-8, atol=1e-10)
    with torch.no_grad():
        f = model(torch.as_tensor(x))[:, 1] - model(torch.as_tensor(baseline[None]))[:, 1]
    np.testing.assert_allclose(exp.group_values.sum(1), f.numpy(), rtol=1e-8)


def test_kernel_shap_of_a_regression_is_efficient():
    """Diabetes: a regression MLP (single output); KernelSHAP values sum to
    f(x) - f(baseline) (efficiency), the baseline being the data mean (0)."""
    x, names = table("diabetes")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 1)).double().eval()
    exp = explain_tabular(model, x[:5], "kernel_shap", feature_names=names, target=1,
                          samples=200, seed=0)
    with torch.no_grad():
        f = model(torch.as_tensor(x[:5]))[:, 0] - model(torch.zeros(1, 10).double())[:, 0]
    np.testing.assert_allclose(exp.values.sum(1), f.numpy(), rtol=1e-8)
    assert exp.group_names == names


# --- Captum KernelShap and the shap package -------------------------------------------------

def test_captum_kernel_shap_with_our_coalitions():
    """Captum's KernelShap draws its own coalitions; fed ours (seed 0) after its two
    end points (all / none, weighted 10^6) its unconstrained regression is our constrained
    one up to that weight."""
    from captum.attr import KernelShap
    from crosslens.methods.shapley import _sampled_coalitions

    torch_model, _ = twins()
    x = torch.as_tensor(WINE)
    samples = 80
    ours = cl.explain(torch_model, x, "kernel_shap", target=2, samples=samples, seed=0,
                      baseline=0.0).numpy()
    coalitions = torch.as_tensor(_sampled_coalitions(13, samples, np.random.default_rng(0)))
    explainer = KernelShap(torch_model)

    def perturb(original, **kwargs):  # restarted for every sample
        yield torch.ones(1, 13, dtype=torch.long)
        yield torch.zeros(1, 13, dtype=torch.long)
        yield from (row[None].long() for row in coalitions)

    explainer.perturb_func = perturb
    theirs = explainer.attribute(x, baselines=0.0, target=2, n_samples=samples + 2).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)


def _shap_values(predict, x, background):
    import shap
    explainer = shap.KernelExplainer(predict, background[None])
    m = x.shape[1]
    return np.asarray(explainer.shap_values(x, nsamples=2 ** m - 2, l1_reg=False,
                                            silent=True))


def test_shap_kernel_explainer_exact_on_a_linear_model():
    x, names = table("iris")
    x = x[::40]
    model = _linear(4, seed=1)
    background = np.full(4, -0.3)

    def predict(rows):
        with torch.no_grad():
            return model(torch.as_tensor(rows))[:, 1].numpy()

    theirs = _shap_values(predict, x, background)
    ours = explain_tabular(model, x, "kernel_shap", feature_names=names, target=1,
                           baseline=background).values
    closed = model.weight.detach().numpy()[1] * (x - background)
    np.testing.assert_allclose(ours, closed, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(theirs, closed, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_shap_kernel_explainer_equals_ours_with_every_coalition(framework):
    """A nonlinear twin MLP on iris: both enumerate all 14 coalitions -> the same exact
    Shapley values w.r.t. one background row."""
    x, _ = table("iris")
    x = x[::40]
    torch_model, keras_model = twins(4, 3)
    model = torch_model if framework == "torch" else keras_model
    background = x.mean(0) + 0.1

    def predict(rows):
        with torch.no_grad():
            return torch_model(torch.as_tensor(rows))[:, 0].numpy()

    theirs = _shap_values(predict, x, background)
    ours = explain_tabular(model, x, "kernel_shap", target=0, baseline=background)
    assert ours.info["exact"]
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-8, atol=1e-10)


# --- display ----------------------------------------------------------------------------------

def test_bar_chart_sorts_by_magnitude_and_colours_by_sign():
    values = np.array([0.1, -0.5, 0.3, 0.0, -0.05])
    fig = feature_bars(values, list("abcde"), max_features=3)
    ax = fig.axes[0]
    labels = [t.get_text() for t in sorted(ax.get_yticklabels(),
                                           key=lambda t: -t.get_position()[1])]
    bars = sorted(ax.patches, key=lambda p: -p.get_y())  # top first
    assert labels == ["b", "c", "a", "2 other features"]
    np.testing.assert_allclose([p.get_width() for p in bars], [-0.5, 0.3, 0.1, -0.05])
    assert [p.get_facecolor()[0] > 0.5 for p in bars] == [False, True, True, False]


def test_summary_plot_orders_features_and_colours_points_by_value():
    x, names = table("wine")
    torch_model, _ = twins()
    exp = explain_tabular(torch_model, x[::8], "gradient_x_input", feature_names=names,
                          target=0)
    fig = exp.summary(max_features=5)
    ax = fig.axes[0]
    shown = [t.get_text() for t in sorted(ax.get_yticklabels(),
                                          key=lambda t: -t.get_position()[1])]  # top first
    mean_abs = np.abs(exp.values).mean(0)
    assert shown == [names[i] for i in np.argsort(-mean_abs)[:5]]
    top = names.index(shown[0])
    points = ax.collections[0]  # the top feature's row, drawn first
    np.testing.assert_allclose(points.get_offsets()[:, 0], exp.values[:, top])
    shades, feature = points.get_array(), x[::8, top]
    inside = (feature > np.percentile(feature, 5)) & (feature < np.percentile(feature, 95))
    order = np.argsort(feature[inside])
    assert np.all(np.diff(np.asarray(shades)[inside][order]) >= 0)  # low blue -> high red


def test_beeswarm_offsets_stack_equal_values():
    offsets = beeswarm_offsets(np.array([0.0, 0.0, 0.0, 1.0, 2.0]))
    assert sorted(offsets[:3].tolist()) == [-0.4, 0.0, 0.4] and offsets[3] == offsets[4] == 0


def test_tabular_errors_name_the_fix():
    torch_model, _ = twins()
    with pytest.raises(cl.OptionError, match="feature_ablation"):
        explain_tabular(torch_model, WINE, "occlusion", feature_groups=[0] * 13)
    with pytest.raises(cl.OptionError, match="one group"):
        feature_group_ids(["a", "b"], {"g": ["a"], "h": ["a"]})
    with pytest.raises(cl.OptionError, match="Did you mean|close|unknown"):
        feature_group_ids(["alcohol", "ash"], {"g": ["alcohl"]})
    with pytest.raises(cl.InputError, match="table"):
        explain_tabular(torch_model, WINE[None], "saliency")
