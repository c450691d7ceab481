"""Time series: Conv1d / LSTM / GRU twins on (N, C, T) (PyTorch) and (N, T, C) (Keras).

- PyTorch == Keras (float64, identical weights, torch LSTM / GRU gates mapped from Keras'
  order) for every method that applies, compared after moving the channel axis;
- occlusion windows in time == the score drops computed by hand;
- IG over time x channel is complete;
- the line plot shades each time step with its attribution.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import crosslens as cl
from crosslens.viz import series_figure

from modalities.twins import SERIES_KINDS, keras_series, torch_series

X = np.random.default_rng(0).standard_normal((2, 12, 3))  # Keras layout (N, T, C)
XT = np.ascontiguousarray(X.transpose(0, 2, 1))  # PyTorch layout (N, C, T)
WINDOWS = (np.arange(12) // 3)[None, None, :]  # four time windows, all channels, (1, 1, T)

METHODS = {
    "saliency": {}, "gradient_x_input": {}, "integrated_gradients": {"steps": 16},
    "smoothgrad": {"samples": 3}, "gradient_shap": {"samples": 3}, "deeplift": {},
    "internal_influence": {"steps": 8}, "occlusion": {"patch": (3, 3), "stride": (1, 2)},
    "kernel_shap": {"samples": 60}, "lime": {"samples": 60},
    "shapley_value_sampling": {"samples": 2}, "feature_permutation": {},
    "feature_ablation": {"feature_mask": WINDOWS},
}
CONV_ONLY = {"lrp": {}, "guided_backprop": {}, "deconvnet": {}}


@functools.lru_cache(maxsize=None)
def twins(kind: str):
    keras_model = keras_series(kind)
    return torch_series(kind, keras_model), keras_model


def _options(options: dict, framework: str) -> dict:
    """Masks and windows are given in the PyTorch layout (C, T); Keras gets them moved
    to (T, C). (A recurrent model's layout is not known to the backend, so occlusion
    takes its full window shape.)"""
    if framework == "keras":
        options = {key: (np.moveaxis(value, 1, -1) if key == "feature_mask" else
                         value[::-1] if key in ("patch", "stride") else value)
                   for key, value in options.items()}
    return dict(options, target=1, seed=0)


@pytest.mark.parametrize("kind", SERIES_KINDS)
@pytest.mark.parametrize("method", list(METHODS) + list(CONV_ONLY))
def test_torch_equals_keras_over_time_and_channels(kind, method):
    if method in CONV_ONLY and kind != "conv":
        pytest.skip("LRP / guided rules need ReLUs and LRP rules (no recurrent layers)")
    options = {**METHODS, **CONV_ONLY}[method]
    torch_model, keras_model = twins(kind)
    ours = cl.explain(torch_model, XT, method, **_options(options, "torch")).numpy()
    theirs = cl.explain(keras_model, X, method, **_options(options, "keras")).numpy()
    np.testing.assert_allclose(ours, theirs.transpose(0, 2, 1), rtol=1e-5, atol=1e-9)
    assert np.abs(ours).max() > 1e-3


def _score(model, x):
    with torch.no_grad():
        return model(torch.as_tensor(x))[:, 1].numpy()


@pytest.mark.parametrize("kind", ["conv", "gru"])
def test_occlusion_windows_in_time_are_the_score_drops(kind):
    """Windows of 4 steps (every channel), stride 2, on (N, C, T): each step gets the mean
    drop over the windows covering it."""
    model, _ = twins(kind)
    exp = cl.explain(model, XT, "occlusion", target=1, patch=(3, 4), stride=(1, 2),
                     baseline=0.0)
    total, covered = np.zeros((2, 12)), np.zeros(12)
    for start in range(0, 12 - 4 + 1, 2):
        occluded = XT.copy()
        occluded[:, :, start:start + 4] = 0.0
        total[:, start:start + 4] += (_score(model, XT) - _score(model, occluded))[:, None]
        covered[start:start + 4] += 1
    want = np.broadcast_to((total / covered)[:, None, :], XT.shape)
    np.testing.assert_allclose(exp.numpy(), want, rtol=1e-10, atol=1e-12)
    assert exp.info["windows"] == 5


@pytest.mark.parametrize("kind", SERIES_KINDS)
def test_ig_over_time_and_channels_is_complete(kind):
    model, _ = twins(kind)
    exp = cl.explain(model, XT, "integrated_gradients", target=1, steps=64)
    want = _score(model, XT) - _score(model, np.zeros_like(XT))
    np.testing.assert_allclose(exp.numpy().sum(axis=(1, 2)), want, rtol=1e-3, atol=1e-6)


def test_series_figure_shades_each_step_with_its_attribution():
    model, _ = twins("lstm")
    attr = cl.explain(model, XT, "integrated_gradients", target=1, steps=8).numpy()[0]
    fig = series_figure(XT[0], attr, layout="channels_first",
                        channel_names=["a", "b", "c"])
    again = series_figure(XT[0].T, attr.T, layout="time_first")
    for figure in (fig, again):
        axes = figure.axes[:3]
        for c, ax in enumerate(axes):
            shading = ax.collections[0]
            np.testing.assert_allclose(np.asarray(shading.get_array()).ravel(), attr[c])
            np.testing.assert_allclose(ax.lines[0].get_ydata(), XT[0, c])
            assert shading.norm.vmin == -shading.norm.vmax == -np.abs(attr).max()
    assert [ax.get_ylabel() for ax in fig.axes[:3]] == ["a", "b", "c"]
