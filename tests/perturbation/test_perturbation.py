"""Occlusion, feature ablation and RISE: numpy references, Captum parity, PyTorch/Keras
parity, chunk-size invariance, determinism, errors, and the model left untouched."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import crosslens as cl  # noqa: E402
from layer.common import (  # noqa: E402
    assert_close, assert_same_state, explain_keras, explain_torch,
    inputs, spec_of, state_of, torch_model)
from reference.numpy_nets import forward  # noqa: E402

X = inputs(batch=2)  # (2, 3, 16, 16)


def numpy_occlusion(x, score, window, stride, baseline):
    """Reference: loop over every window, average the score drops over covering windows."""
    n, shape = len(x), x.shape[1:]
    counts = [math.ceil((d - w) / s) + 1 for d, w, s in zip(shape, window, stride)]
    total, covered = np.zeros(x.shape), np.zeros(shape)
    reference = score(x)
    for corner in np.ndindex(*counts):
        region = tuple(slice(c * s, c * s + w) for c, s, w in zip(corner, stride, window))
        occluded = x.copy()
        occluded[(slice(None),) + region] = baseline
        drop = reference - score(occluded)
        total[(slice(None),) + region] += drop.reshape((n,) + (1,) * len(shape))
        covered[region] += 1
    return total / covered


def class_score(c):
    return lambda x: forward(spec_of(), x)[:, c]


# --- occlusion --------------------------------------------------------------------------

def test_occlusion_equals_numpy_reference_and_captum():
    got = explain_torch(X, "occlusion", target=1, patch=(5, 5), stride=(3, 3), baseline=0.3)
    ref = numpy_occlusion(X, class_score(1), (3, 5, 5), (1, 3, 3), 0.3)
    assert_close(got, ref, 1e-12, "numpy occlusion")
    captum = captum_attr.Occlusion(torch_model()).attribute(
        torch.tensor(X), sliding_window_shapes=(3, 5, 5), strides=(3, 3, 3), target=1,
        baselines=0.3)
    assert_close(got, captum.double().numpy(), 1e-6, "Captum Occlusion (float32 division)")


def test_occlusion_full_window_shape_like_captum():
    # a window over 2 of 3 channels, Captum's own sliding_window_shapes form
    got = explain_torch(X, "occlusion", target=3, patch=(2, 4, 4), stride=(1, 4, 4))
    captum = captum_attr.Occlusion(torch_model()).attribute(
        torch.tensor(X), sliding_window_shapes=(2, 4, 4), strides=(1, 4, 4), target=3)
    assert_close(got, captum.double().numpy(), 1e-6, "Captum Occlusion, channel windows")


def test_occlusion_neuron_and_channel_targets_equal_numpy():
    def activation(x, layer):
        return forward(spec_of(), x, capture=[layer])[1][layer]

    got = explain_torch(X, "occlusion", target=cl.Neuron("conv2", (4, 3, 5)), patch=4, stride=2)
    ref = numpy_occlusion(X, lambda x: activation(x, "conv2")[:, 4, 3, 5], (3, 4, 4),
                          (1, 2, 2), 0.0)
    assert_close(got, ref, 1e-12, "neuron")
    got = explain_torch(X, "occlusion", target=cl.Channel("relu2", 6), patch=4, stride=2)
    ref = numpy_occlusion(X, lambda x: activation(x, "relu2")[:, 6].mean((1, 2)), (3, 4, 4),
                          (1, 2, 2), 0.0)
    assert_close(got, ref, 1e-12, "channel")


def test_occlusion_batches_windows_into_few_forward_passes():
    model, calls = torch_model(), []
    handle = model.register_forward_pre_hook(lambda m, i: calls.append(len(i[0])))
    try:
        explain_torch(X, "occlusion", target=1, patch=2, stride=1)  # 225 windows
    finally:
        handle.remove()
    assert sum(calls) == 2 * (1 + 225)  # every window evaluated once, per sample
    assert len(calls) <= 3, calls  # reference, budget probe, and the windows in one pass


def test_occlusion_default_stride_is_half_the_patch():
    got = cl.explain(torch_model(), X, "occlusion", target=0, patch=6)
    assert got.info["stride"] == (1, 3, 3) and got.info["patch"] == (3, 6, 6)


# --- feature ablation -------------------------------------------------------------------

SUPERPIXELS = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 4, 0), 4, 1)  # 4x4 blocks


@pytest.mark.parametrize("mask", [SUPERPIXELS, SUPERPIXELS[None, None],
                                  np.stack([SUPERPIXELS, SUPERPIXELS.T])[:, None]],
                         ids=["HW", "11HW", "N1HW"])
def test_feature_ablation_equals_captum(mask):
    got = explain_torch(X, "feature_ablation", target=2, feature_mask=mask, baseline=-0.5)
    captum_mask = torch.tensor(mask if mask.ndim == 4 else mask[None, None])
    captum = captum_attr.FeatureAblation(torch_model()).attribute(
        torch.tensor(X), feature_mask=captum_mask, target=2, baselines=-0.5)
    assert_close(got, captum.numpy(), 1e-12, "Captum FeatureAblation")


def test_feature_ablation_of_windows_equals_non_overlapping_occlusion():
    ablation = explain_torch(X, "feature_ablation", target=4, feature_mask=SUPERPIXELS)
    occlusion = explain_torch(X, "occlusion", target=4, patch=4, stride=4)
    assert_close(ablation, occlusion, 1e-12)


def test_feature_mask_of_wrong_shape_is_a_clear_error():
    with pytest.raises(cl.InputError, match=r"\(8, 8\).*\(2, 3, 16, 16\)"):
        cl.explain(torch_model(), X, "feature_ablation", feature_mask=np.zeros((8, 8), int))
    with pytest.raises(cl.InputError, match="integer"):
        cl.explain(torch_model(), X, "feature_ablation", feature_mask=np.zeros((16, 16)))
    with pytest.raises(cl.OptionError, match="feature_mask"):
        cl.explain(torch_model(), X, "feature_ablation")


# --- RISE ---------------------------------------------------------------------------------

def test_rise_equals_numpy_reference_of_the_paper():
    from crosslens.viz import resize_bilinear

    got = explain_torch(X, "rise", target=1, samples=12, p=0.4, cell=5, seed=7)
    rng = np.random.default_rng(7)
    grids = (rng.random((12, 4, 4)) < 0.4).astype(float)  # ceil(16 / 5) = 4 cells
    shifts = np.stack([rng.integers(0, 5, 12), rng.integers(0, 5, 12)], 1)
    saliency = np.zeros((2, 16, 16))
    for grid, (dy, dx) in zip(grids, shifts):
        mask = resize_bilinear(grid, (25, 25))[dy:dy + 16, dx:dx + 16]
        saliency += forward(spec_of(), X * mask)[:, 1, None, None] * mask
    ref = np.broadcast_to((saliency / (12 * 0.4))[:, None], X.shape)
    assert_close(got, ref, 1e-12, "RISE")


def test_rise_is_deterministic_with_a_seed():
    a = explain_torch(X, "rise", target=1, samples=20, seed=3)
    assert np.array_equal(a, explain_torch(X, "rise", target=1, samples=20, seed=3))
    assert not np.allclose(a, explain_torch(X, "rise", target=1, samples=20, seed=4))


def test_rise_finds_the_region_a_toy_model_looks_at():
    """A linear model that only sees a square: RISE with many masks agrees with occlusion
    and with the known answer."""
    weights = np.zeros((16, 16))
    weights[3:8, 9:14] = 1.0
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1, bias=False), torch.nn.Flatten(),
                                torch.nn.Linear(256, 2, bias=False)).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[2].weight.copy_(torch.tensor(np.stack([weights.ravel(), -weights.ravel()])))
    x = np.ones((1, 1, 16, 16))
    rise = cl.explain(model, x, "rise", target=0, samples=3000, p=0.5, cell=2, seed=0).numpy()
    occ = cl.explain(model, x, "occlusion", target=0, patch=2, stride=1).numpy()
    corr = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    assert corr(rise, occ) > 0.9
    assert corr(rise, weights) > 0.8  # RISE blurs by the mask smoothness
    top = np.argsort(rise.ravel())[-int(weights.sum()):]
    assert weights.ravel()[top].mean() >= 0.85  # the highest pixels are the square


# --- shared properties ------------------------------------------------------------------------

CASES = [("occlusion", dict(patch=5, stride=3, baseline=0.2)),
         ("feature_ablation", dict(feature_mask=SUPERPIXELS)),
         ("rise", dict(samples=24, seed=1, cell=4))]


@pytest.mark.parametrize("method,options", CASES, ids=[c[0] for c in CASES])
def test_chunk_size_does_not_change_the_result(method, options):
    default = explain_torch(X, method, target=1, **options)
    tiny = explain_torch(X, method, target=1, memory_budget=1, **options)
    assert_close(tiny, default, 1e-13, method)


def test_pytorch_and_keras_agree():
    for method, options in CASES:
        a = explain_torch(X, method, target=2, **options)
        b = explain_keras(X, method, target=2, **options)
        assert_close(b, a, 1e-5, f"{method} torch vs keras")
    neuron = explain_torch(X, "occlusion", target=cl.Neuron("conv2", (4, 3, 5)), patch=4)
    keras = explain_keras(X, "occlusion", target=cl.Neuron("conv2", (3, 5, 4)), patch=4)
    assert_close(keras, neuron, 1e-5, "neuron occlusion torch vs keras")


def test_model_untouched_also_after_errors():
    model = torch_model()
    before = state_of(model)
    cl.explain(model, X, "occlusion", target=cl.Neuron("conv2", (0, 0, 0)), patch=8)
    with pytest.raises(cl.InputError):
        cl.explain(model, X, "feature_ablation", feature_mask=np.zeros((3, 3), int))
    with pytest.raises(cl.TargetError):
        cl.explain(model, X, "rise", target=cl.Neuron("conv2", (99, 0, 0)), samples=4)
    assert_same_state(model, before)


def test_bad_windows_and_layer_are_clear_errors():
    with pytest.raises(cl.OptionError, match="larger step"):
        cl.explain(torch_model(), X, "occlusion", patch=3, stride=4)
    with pytest.raises(cl.OptionError, match="does not fit"):
        cl.explain(torch_model(), X, "occlusion", patch=20)
    with pytest.raises(cl.OptionError, match="cl.Neuron"):
        cl.explain(torch_model(), X, "occlusion", layer="conv2")
    with pytest.raises(cl.OptionError, match=r"\(0, 1\]"):
        cl.explain(torch_model(), X, "rise", p=0.0)
