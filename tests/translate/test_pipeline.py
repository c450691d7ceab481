"""The one translation pipeline: its two direction descriptions, verification through the
backends' own primitives (against a closed-form reference), and a cache hit that reports
what a fresh translation reports."""

from __future__ import annotations

import numpy as np
import pytest

from crosslens.translate import translate
from crosslens.translate.directions import DIRECTIONS
from crosslens.translate.layout import layout_perm
from crosslens.translate.verify import run_model, verify


def test_directions_are_mirror_images():
    assert set(DIRECTIONS) == {"torch", "keras"}
    for source, d in DIRECTIONS.items():
        other = DIRECTIONS[d.target]
        assert d.source == source and other.target == source
        assert d.layouts == other.layouts[::-1]
        assert d.perm == layout_perm(*d.layouts, rank=4)
        assert np.array_equal(np.argsort(d.perm), other.perm)  # inverse permutations
        assert d.saves_keras == (d.target == "keras")


def _linear_pair(seed=0):
    """A torch and a Keras linear layer y = W x + b with the same weights, and W."""
    import keras
    import torch

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    tm = torch.nn.Linear(5, 3)
    with torch.no_grad():
        tm.weight.copy_(torch.from_numpy(w))
        tm.bias.copy_(torch.from_numpy(b))
    inp = keras.Input((5,))
    dense = keras.layers.Dense(3)
    km = keras.Model(inp, dense(inp))
    dense.set_weights([w.T, b])
    return tm.eval(), km, w, b


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_run_model_is_the_backends_forward_and_vjp(framework):
    """For y = W x + b: outputs x W^T + b, and the input-gradient of sum(y * m) is m W."""
    tm, km, w, b = _linear_pair()
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    masks = [np.ones((4, 3), np.float32), np.eye(3, dtype=np.float32)[[0, 2, 1, 0]]]
    out, grads = run_model(tm if framework == "torch" else km, x, lambda _: masks)
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-5, atol=1e-6)
    for mask, grad in zip(masks, grads):
        np.testing.assert_allclose(grad, mask @ w, rtol=1e-5, atol=1e-6)


def test_verify_of_equal_models_and_of_a_perturbed_one():
    tm, km, w, b = _linear_pair()
    x = np.random.default_rng(2).standard_normal((2, 5)).astype(np.float32)
    probes = [("example", x), ("random", x[::-1].copy())]
    same = verify(tm, km, probes, DIRECTIONS["torch"].perm, None)
    assert same.passed and same.worst["output"].rel < 1e-6 and same.worst["grad_class"].rel < 1e-6
    # the class gradient is taken at the original's argmax, per probe
    assert [r.class_index for r in same.probes] == [np.argmax(p @ w.T + b, 1).tolist() for _, p in probes]
    _, km_off, _, _ = _linear_pair()
    kernel, bias = km_off.layers[-1].get_weights()
    km_off.layers[-1].set_weights([kernel * 1.01, bias])
    off = verify(tm, km_off, probes, DIRECTIONS["torch"].perm, None)
    assert not off.passed and off.worst["grad_sum"].rel == pytest.approx(0.01, rel=1e-3)


def test_cache_hit_of_a_non_image_model_reports_like_a_fresh_translation(tmp_path):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).eval()
    x = np.random.default_rng(3).standard_normal((2, 6)).astype(np.float32)
    fresh = translate(model, to="keras", example=x, cache_dir=tmp_path)
    hit = translate(model, to="keras", example=x, cache_dir=tmp_path)
    assert not fresh.report.cache_hit and hit.report.cache_hit
    assert (fresh.src_layout, fresh.dst_layout) == (hit.src_layout, hit.dst_layout) == ("-", "-")
    assert hit.report.input_layout == fresh.report.input_layout == {"original": "-", "translated": "-"}
    assert hit.report.verification.from_cache and hit.report.verification.passed
    np.testing.assert_allclose(np.asarray(hit.translated(x)), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
