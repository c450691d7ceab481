"""The numpy oracle agrees with PyTorch, Keras 3 (TF backend) and Captum (float64)."""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from . import numpy_ops as ops  # noqa: E402
from .builders import (  # noqa: E402
    build_keras,
    build_torch,
    build_torch_functional_relu,
    keras_capture,
    torch_capture,
)
from .nets import SMALL_CNN, SMALL_RESNET, make_net  # noqa: E402
from .numpy_nets import forward, input_gradient, one_hot  # noqa: E402

KINDS = (SMALL_CNN, SMALL_RESNET)
SEEDS = (0, 1, 2)
BATCH = 3


def assert_close(actual, desired, rtol=1e-10, what=""):
    """max |a - d| <= rtol * max |d| (relative to the array scale)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    scale = max(np.abs(desired).max(), 1e-300)
    err = np.abs(actual - desired).max()
    assert err <= rtol * scale, f"{what}: max abs err {err:.3e} vs scale {scale:.3e}"


@functools.lru_cache(maxsize=None)
def spec_of(kind, seed):
    return make_net(kind, seed)


@functools.lru_cache(maxsize=None)
def torch_of(kind, seed, softmax=False):
    return build_torch(spec_of(kind, seed), softmax=softmax)


@functools.lru_cache(maxsize=None)
def keras_of(kind, seed, fused_relu=False, softmax=False):
    return build_keras(spec_of(kind, seed), fused_relu=fused_relu, softmax=softmax)


def inputs(kind, seed):
    return spec_of(kind, seed).random_input(1000 + seed, batch=BATCH)


def nhwc(a):
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def nchw(a):
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))


def torch_grad(model, x, g, wrt=None):
    """grad of <model(x), g> wrt input (or wrt the output of module ``wrt``)."""
    xt = torch.tensor(x, requires_grad=True)
    if wrt is None:
        y = model(xt)
        (gx,) = torch.autograd.grad(y, xt, grad_outputs=torch.tensor(g))
        return gx.numpy()
    box = {}
    h = dict(model.named_modules())[wrt].register_forward_hook(lambda m, i, o: box.setdefault("o", o))
    try:
        y = model(xt)
    finally:
        h.remove()
    (ga,) = torch.autograd.grad(y, box["o"], grad_outputs=torch.tensor(g))
    return ga.numpy()


def keras_grad(model, x_nchw, g):
    import tensorflow as tf

    xv = tf.constant(nhwc(x_nchw))
    with tf.GradientTape() as tape:
        tape.watch(xv)
        y = model(xv, training=False)
    return nchw(tape.gradient(y, xv, output_gradients=tf.constant(g)).numpy())


# ----------------------------------------------------------------------------- sanity of the nets
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_nets_alive_and_input_dependent(kind, seed):
    spec = spec_of(kind, seed)
    assert all(v.dtype == np.float64 for v in spec.weights.values())
    x = spec.random_input(7, batch=16)
    logits, acts = forward(spec, x, capture=spec.relu_layers)
    for name in spec.relu_layers:
        frac = (acts[name] > 0).mean()
        assert 0.2 < frac < 0.85, (name, frac)
    assert logits.std(axis=0).min() > 0.2  # outputs vary with the input
    assert len(set(logits.argmax(1))) >= 2
    # deterministic
    assert_close(forward(make_net(kind, seed), x), logits, rtol=0)


def test_spec_layouts():
    s = spec_of(SMALL_CNN, 0)
    assert s.weights["conv1.weight"].shape == (8, 3, 3, 3)
    assert s.weights["conv2.weight"].shape == (16, 8, 3, 3)
    assert s.weights["fc.weight"].shape == (5, 16)
    r = spec_of(SMALL_RESNET, 0)
    assert r.weights["block.conv1.weight"].shape == (8, 8, 3, 3)
    assert not np.allclose(r.weights["bn.running_mean"], 0)
    assert not np.allclose(r.weights["bn.running_var"], 1)


# ----------------------------------------------------------------------------- primitives
def test_maxpool_first_argmax_on_ties_matches_torch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(2, 3, 8, 8)).astype(np.float64)  # many ties
    y, idx = ops.maxpool2x2(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 2, 2)
    g = rng.standard_normal(y.shape)
    (gt,) = torch.autograd.grad(yt, xt, torch.tensor(g))
    assert_close(y, yt.detach().numpy(), rtol=0)
    assert_close(ops.maxpool2x2_backward(idx, g), gt.numpy(), rtol=0)


def test_conv_backward_matches_torch():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((2, 4, 7, 6))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, padding=1)
    gx, gw = torch.autograd.grad(yt, (xt, wt), torch.tensor(g))
    assert_close(ops.conv2d(x, w), yt.detach().numpy())
    assert_close(ops.conv2d_backward_input(g, w), gx.numpy())
    assert_close(ops.conv2d_backward_weight(x, g, (3, 3)), gw.numpy())


def test_softmax_backward_matches_torch():
    rng = np.random.default_rng(2)
    z, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    zt = torch.tensor(z, requires_grad=True)
    p = torch.softmax(zt, 1)
    (gz,) = torch.autograd.grad(p, zt, torch.tensor(g))
    assert_close(ops.softmax(z), p.detach().numpy())
    assert_close(ops.softmax_backward(ops.softmax(z), g), gz.numpy())


# ----------------------------------------------------------------------------- forward parity
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_forward_numpy_torch_keras(kind, seed):
    x = inputs(kind, seed)
    ref = forward(spec_of(kind, seed), x)
    with torch.no_grad():
        assert_close(torch_of(kind, seed)(torch.tensor(x)).numpy(), ref, what="torch")
    assert_close(np.asarray(keras_of(kind, seed)(nhwc(x), training=False)), ref, what="keras")


@pytest.mark.parametrize("kind", KINDS)
def test_softmax_variants(kind):
    seed = 0
    spec, x = spec_of(kind, seed), inputs(kind, seed)
    ref = forward(spec, x, output="softmax")
    assert_close(ref.sum(1), np.ones(BATCH))
    tm = torch_of(kind, seed, softmax=True)
    assert isinstance(tm.softmax, torch.nn.Softmax)
    with torch.no_grad():
        assert_close(tm(torch.tensor(x)).numpy(), ref, what="torch softmax")
    km = keras_of(kind, seed, softmax=True)
    assert km.get_layer("fc").activation.__name__ == "softmax"
    assert_close(np.asarray(km(nhwc(x), training=False)), ref, what="keras softmax")
    g = np.random.default_rng(3).standard_normal((BATCH, spec.n_classes))
    ng = input_gradient(spec, x, g, output="softmax")
    assert_close(torch_grad(tm, x, g), ng, what="torch grad through softmax")
    assert_close(keras_grad(km, x, g), ng, what="keras grad through softmax")


def test_fused_relu_keras_and_functional_relu_torch():
    kind, seed = SMALL_CNN, 1
    spec, x = spec_of(kind, seed), inputs(kind, seed)
    ref = forward(spec, x)
    km = keras_of(kind, seed, fused_relu=True)
    names = [l.name for l in km.layers]
    assert names == ["input", "conv1", "pool", "conv2", "gap", "fc"]
    assert km.get_layer("conv1").activation.__name__ == "relu"
    assert_close(np.asarray(km(nhwc(x), training=False)), ref, what="keras fused")
    g = np.random.default_rng(4).standard_normal((BATCH, spec.n_classes))
    assert_close(keras_grad(km, x, g), input_gradient(spec, x, g), what="keras fused grad")

    tf_ = build_torch_functional_relu(spec)
    assert not any(isinstance(m, torch.nn.ReLU) for m in tf_.modules())
    assert [n for n, _ in tf_.named_children()] == ["conv1", "pool", "conv2", "gap", "flatten", "fc"]
    with torch.no_grad():
        assert_close(tf_(torch.tensor(x)).numpy(), ref, what="torch functional relu")
    assert_close(torch_grad(tf_, x, g), input_gradient(spec, x, g), what="functional relu grad")


def test_keras_layer_names():
    km = keras_of(SMALL_CNN, 0)
    assert [l.name for l in km.layers] == ["input", "conv1", "relu1", "pool", "conv2", "relu2", "gap", "fc"]
    rm = keras_of(SMALL_RESNET, 0)
    assert [l.name for l in rm.layers] == ["input", "stem", "bn", "relu", "block", "gap", "fc"]
    block = rm.get_layer("block")
    assert [l.name for l in block.layers] == [
        "block_input", "conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu_out"]
    assert rm.get_layer("bn").epsilon == 1e-5 and block.get_layer("bn2").epsilon == 1e-5


def test_torch_module_names():
    tm = torch_of(SMALL_RESNET, 0)
    names = {n for n, _ in tm.named_modules()}
    for n in ("stem", "bn", "relu", "block", "block.conv1", "block.bn1", "block.relu1",
              "block.conv2", "block.bn2", "block.relu_out", "gap", "flatten", "fc"):
        assert n in names
    assert not tm.training and tm.bn.eps == 1e-5
    cm = torch_of(SMALL_CNN, 0)
    assert [n for n, _ in cm.named_children()] == [
        "conv1", "relu1", "pool", "conv2", "relu2", "gap", "flatten", "fc"]
    assert all(p.dtype == torch.float64 for p in cm.parameters())
    assert build_torch(spec_of(SMALL_CNN, 0), dtype=torch.float32).fc.weight.dtype == torch.float32


# ----------------------------------------------------------------------------- activations
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_activations_match_torch_hooks_and_keras(kind, seed):
    spec, x = spec_of(kind, seed), inputs(kind, seed)
    _, acts = forward(spec, x, capture=spec.layer_names)
    names = [n for n in spec.layer_names if n != "block.add"]  # no torch module for the add
    cap = torch_capture(torch_of(kind, seed), torch.tensor(x), names)
    for n in names:
        assert_close(cap[n].numpy(), acts[n], what=f"torch {n}")
    knames = [n.replace(".", "/") for n in spec.layer_names if n != "flatten"]
    kcap = keras_capture(keras_of(kind, seed), nhwc(x), knames)
    for n in knames:
        ref = acts[n.replace("/", ".")] if n != "gap" else acts["flatten"]
        got = kcap[n] if kcap[n].ndim == 2 else nchw(kcap[n])
        assert_close(got, ref, what=f"keras {n}")
    # keras spelling accepted by the numpy reference too
    _, a2 = forward(spec, x, capture=knames)
    assert set(a2) == set(knames)


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_input_gradient_normal_torch_keras(kind, seed):
    spec, x = spec_of(kind, seed), inputs(kind, seed)
    g = np.random.default_rng(seed + 50).standard_normal((BATCH, spec.n_classes))
    ng = input_gradient(spec, x, g)
    assert np.abs(ng).max() > 0
    assert_close(torch_grad(torch_of(kind, seed), x, g), ng, what="torch")
    assert_close(keras_grad(keras_of(kind, seed), x, g), ng, what="keras")


@pytest.mark.parametrize("kind,layers", [
    (SMALL_CNN, ("conv2", "relu1", "pool", "conv1", "gap", "fc")),
    (SMALL_RESNET, ("block.conv1", "block.bn2", "block.relu1", "relu", "bn", "block", "stem")),
])
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_layer_gradient_matches_torch(kind, layers, seed):
    spec, x = spec_of(kind, seed), inputs(kind, seed)
    g = np.random.default_rng(seed + 60).standard_normal((BATCH, spec.n_classes))
    tm = torch_of(kind, seed)
    for layer in layers:
        assert_close(torch_grad(tm, x, g, wrt=layer), input_gradient(spec, x, g, wrt=layer), what=layer)
    if kind == SMALL_RESNET:  # keras spelling
        assert_close(input_gradient(spec, x, g, wrt="block/conv1"),
                     input_gradient(spec, x, g, wrt="block.conv1"), rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rule", ["guided", "deconv"])
def test_guided_deconv_match_captum(kind, seed, rule):
    from captum.attr import Deconvolution, GuidedBackprop

    spec, x = spec_of(kind, seed), inputs(kind, seed)
    tm = torch_of(kind, seed)
    algo = (GuidedBackprop if rule == "guided" else Deconvolution)(tm)
    for target in (0, [1, 3, 4]):
        tgt = target if isinstance(target, int) else torch.tensor(target)
        attr = algo.attribute(torch.tensor(x, requires_grad=True), target=tgt).detach().numpy()
        ng = input_gradient(spec, x, one_hot(target, spec.n_classes, batch=BATCH), relu_rule=rule)
        assert_close(attr, ng, what=f"{rule} target={target}")
        # integer targets accepted directly
        assert_close(input_gradient(spec, x, np.asarray(target), relu_rule=rule), ng, rtol=0)
    # the rules really differ from the plain gradient (and from each other)
    g1 = one_hot(0, spec.n_classes, batch=BATCH)
    assert np.abs(input_gradient(spec, x, g1, relu_rule=rule) - input_gradient(spec, x, g1)).max() > 1e-3


def test_captum_ignores_functional_relu():
    """Captum only hooks nn.ReLU modules: on the functional-ReLU build GuidedBackprop
    and Deconvolution silently degrade to the plain gradient."""
    from captum.attr import Deconvolution, GuidedBackprop

    spec, x = spec_of(SMALL_CNN, 0), inputs(SMALL_CNN, 0)
    m = build_torch_functional_relu(spec)
    plain = input_gradient(spec, x, one_hot(2, spec.n_classes, batch=BATCH))
    for algo in (GuidedBackprop(m), Deconvolution(m)):
        attr = algo.attribute(torch.tensor(x, requires_grad=True), target=2).detach().numpy()
        assert_close(attr, plain)


class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "guided":
            return g * (x > 0) * (g > 0), None
        return g * (g > 0), None


class _RuleReLUModule(torch.nn.Module):
    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, x):
        return _RuleReLU.apply(x, self.rule)


@pytest.mark.parametrize("kind,layer", [(SMALL_CNN, "conv2"), (SMALL_CNN, "pool"),
                                        (SMALL_RESNET, "block.conv1"), (SMALL_RESNET, "relu")])
@pytest.mark.parametrize("rule", ["guided", "deconv"])
def test_rule_layer_gradient_matches_torch_with_replaced_relus(kind, layer, rule):
    seed = 1
    spec, x = spec_of(kind, seed), inputs(kind, seed)
    tm = copy.deepcopy(torch_of(kind, seed))
    for name, mod in list(tm.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(mod, cname, _RuleReLUModule(rule))
    g = one_hot([0, 2, 4], spec.n_classes)
    for wrt in (layer, None):
        ng = input_gradient(spec, x, g, relu_rule=rule, wrt=layer if wrt else "input")
        assert_close(torch_grad(tm, x, g, wrt=wrt), ng, what=f"{rule} wrt {wrt}")
