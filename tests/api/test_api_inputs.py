"""Several inputs and integer token inputs: parity with Captum and across frameworks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import crosslens as cl

captum_attr = pytest.importorskip("captum.attr")


class ImageAndFeatures(torch.nn.Module):
    """``forward(image, features)``: a small nonlinear two-input classifier."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.dense = torch.nn.Linear(5, 4)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, image, features):
        a = torch.relu(self.conv(image)).mean(dim=(2, 3))
        b = torch.tanh(self.dense(features))
        return self.fc(torch.cat([a, b], dim=1))


def _inputs():
    r = np.random.default_rng(0)
    return (r.standard_normal((3, 3, 6, 6)).astype(np.float32),
            r.standard_normal((3, 5)).astype(np.float32))


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid"])
def test_multi_input_integrated_gradients_equals_captum(rule):
    model = ImageAndFeatures().eval()
    image, features = _inputs()
    baselines = (np.full_like(image, 0.1), np.full_like(features, -0.2))
    ours = cl.explain(model, (image, features), "integrated_gradients", target=[0, 2, 1],
                      steps=24, rule=rule, baseline=baselines, completeness=True)
    theirs = captum_attr.IntegratedGradients(model).attribute(
        (torch.as_tensor(image), torch.as_tensor(features)),
        baselines=tuple(torch.as_tensor(b) for b in baselines), target=[0, 2, 1],
        n_steps=24, method=rule)
    assert isinstance(ours.attributions, tuple) and len(ours.attributions) == 2
    for got, want in zip(ours.attributions, theirs):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)
    if rule == "gausslegendre":  # the sum over both inputs is f(x) - f(b), to the
        # integration error of 24 points through ReLU kinks
        assert ours.info["completeness_error"].max() < 1e-2


def test_multi_input_saliency_and_noise_equal_captum():
    model = ImageAndFeatures().eval()
    image, features = _inputs()
    inputs = (torch.as_tensor(image), torch.as_tensor(features))
    ours = cl.explain(model, inputs, "gradient_x_input", target=1).attributions
    theirs = captum_attr.InputXGradient(model).attribute(inputs, target=1)
    for got, want in zip(ours, theirs):
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_multi_input_feature_ablation_equals_captum():
    model = ImageAndFeatures().eval()
    image, features = _inputs()
    masks = (np.repeat(np.arange(4).reshape(1, 1, 2, 2), 3, axis=2).repeat(3, axis=3)[:, :, :6, :6],
             np.array([[4, 4, 5, 5, 6]]))
    masks = (np.broadcast_to(masks[0], (1, 3, 6, 6)).copy(), masks[1])
    ours = cl.explain(model, (image, features), "feature_ablation", target=2,
                      feature_mask=masks).attributions
    theirs = captum_attr.FeatureAblation(model).attribute(
        (torch.as_tensor(image), torch.as_tensor(features)), target=2,
        feature_mask=tuple(torch.as_tensor(m) for m in masks))
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


class Tokens(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.emb = torch.nn.Embedding(30, 6)
        self.conv = torch.nn.Conv1d(6, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, ids):
        h = torch.relu(self.conv(self.emb(ids).transpose(1, 2)))
        return self.fc(h.max(dim=2).values)


def test_token_integrated_gradients_equals_captum_layer_ig_on_the_embedding():
    model = Tokens().eval()
    ids = torch.as_tensor(np.random.default_rng(2).integers(1, 30, (2, 7)))
    pad = torch.zeros_like(ids)
    ours = cl.explain(model, ids, "integrated_gradients", target=1, steps=32, baseline=pad)
    theirs = captum_attr.LayerIntegratedGradients(model, model.emb).attribute(
        ids, baselines=pad, target=1, n_steps=32)
    assert ours.layer == "emb" and "embedding layer 'emb'" in ours.info["note"]
    torch.testing.assert_close(ours.attributions, theirs, rtol=1e-5, atol=1e-6)
    # the default baseline is the zero embedding: a path in embedding space, complete
    zero = cl.explain(model, ids, "integrated_gradients", target=1, steps=64,
                      completeness=True)
    assert zero.info["completeness_error"].max() < 1e-3
    assert not torch.allclose(zero.attributions, ours.attributions)
