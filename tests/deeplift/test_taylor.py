"""Simple Taylor decomposition: the root lies on the segment and scores zero, the
relevances are the gradient there times (x - root), exact completeness on linear models,
both frameworks alike."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
from reference.nets import SMALL_CNN
from reference.numpy_nets import forward, input_gradient


@pytest.mark.parametrize("flavor", ("torch", "keras"))
def test_gradient_at_the_root_times_the_distance_to_it(zoo, flavor):
    spec, x = zoo.spec(SMALL_CNN), zoo.x(SMALL_CNN)
    target = np.array([1, 3, 0])
    out = cl.explain(zoo.model(flavor, SMALL_CNN), zoo.to_model(flavor, x), "taylor",
                     target=target, baseline=0.0)
    t = out.info["root_t"]
    root = t[:, None, None, None] * x
    logits = forward(spec, x)[np.arange(3), target]
    at_zero = forward(spec, np.zeros_like(x))[np.arange(3), target]
    assert (out.info["root_found"] == (np.sign(logits) != np.sign(at_zero))).all()
    f_root = forward(spec, root)[np.arange(3), target]
    found = out.info["root_found"]
    assert found.any()
    np.testing.assert_allclose(f_root[found], 0.0, atol=1e-9)
    want = input_gradient(spec, root, target) * (x - root)
    got = np.asarray(out.attributions)
    got = zoo.nchw(got) if flavor == "keras" else got
    assert zoo.rel_err(got, want) < 1e-8


def test_exact_on_a_linear_model():
    import torch
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((2, 5)), np.array([0.7, -0.4])
    model = torch.nn.Linear(5, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w))
        model.bias.copy_(torch.from_numpy(b))
    x = rng.standard_normal((6, 5)) * 3
    out = cl.explain(model, x, "taylor", target=0, baseline=0.0)
    f = x @ w[0] + b[0]
    found = np.sign(f) != np.sign(b[0])
    t = -b[0] / (x @ w[0])
    want = np.where(found[:, None], (1 - t)[:, None] * w[0] * x, w[0] * x)
    np.testing.assert_allclose(np.asarray(out.attributions), want, rtol=1e-10, atol=1e-12)
    # completeness: f(x) where a root exists, f(x) - f(baseline) otherwise
    sums = np.asarray(out.attributions).sum(axis=1)
    np.testing.assert_allclose(sums, np.where(found, f, f - b[0]), rtol=1e-10)


def test_frameworks_agree_in_float32(zoo):
    x = zoo.x(SMALL_CNN, dtype=np.float32)
    t = cl.explain(zoo.model("torch", SMALL_CNN, "float32"), x, "taylor", target=2).attributions
    k = cl.explain(zoo.model("keras", SMALL_CNN, "float32"), zoo.nhwc(x), "taylor",
                   target=2).attributions
    assert zoo.rel_err(zoo.nchw(np.asarray(k)), np.asarray(t)) < 1e-5


def test_bad_iterations_is_an_option_error(zoo):
    with pytest.raises(cl.CrosslensError, match="iterations"):
        cl.explain(zoo.model("torch", SMALL_CNN), zoo.x(SMALL_CNN), "taylor", iterations=0)
