"""Objectives evaluated natively agree with numpy references on PyTorch and Keras, compose
arithmetically, differentiate correctly, chunk, and never retrace a Keras function."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens.featurevis as fv
from crosslens.backends import get_backend
from crosslens.core.errors import OptionError, TargetError
from crosslens.core.targets import Channel, Neuron
from crosslens.featurevis.objectives import as_objective, build_target
from reference.numpy_nets import forward, input_gradient

FLAVORS = ("torch", "keras")


def evaluate(zoo, flavor, kind, objective, x_nchw, budget=None):
    """(scores, input gradient as NCHW) of ``objective`` through the backend."""
    model = zoo.model(flavor, kind)
    backend = get_backend(model)
    with backend.session(budget):
        native = backend.prepare(zoo.to_model(flavor, x_nchw))
        target = build_target(as_objective(objective), backend.resolve_layer,
                              backend.layout == "channels_first", len(x_nchw))
        result = backend.gradient(native, target)
        return (backend.ops.to_numpy(result.scores),
                zoo.from_model(flavor, backend.ops.to_numpy(result.grad)))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def gram_diversity(a):
    """Lucid's diversity, per sample: -(sum over others of cos(Gram_i, Gram_j)) / N."""
    n, c = a.shape[:2]
    feats = a.reshape(n, c, -1)
    grams = np.einsum("ncp,ndp->ncd", feats, feats).reshape(n, -1)
    grams /= np.linalg.norm(grams, axis=1, keepdims=True)
    sim = grams @ grams.T
    return -(sim.sum(axis=1) - 1.0) / n


def references(spec, x, direction):
    logits, acts = forward(spec, x, capture=("conv2" if spec.kind == "small_cnn" else
                                              "block.conv2", "fc"))
    layer = "conv2" if spec.kind == "small_cnn" else "block.conv2"
    a = acts[layer]
    h, w = a.shape[2:]
    return layer, {
        "channel": (lambda l: fv.channel(l, 3), a[:, 3].mean(axis=(1, 2))),
        "channels": (lambda l: fv.channel(l, [0, 5, 2]),
                     np.array([a[0, 0].mean(), a[1, 5].mean(), a[2, 2].mean()])),
        "neuron": (lambda l: fv.neuron(l, 4), a[:, 4, h // 2, w // 2]),
        "neuron_xy": (lambda l: fv.neuron(l, 1, x=2, y=5), a[:, 1, 5, 2]),
        "layer": (lambda l: fv.layer(l), (a ** 2).mean(axis=(1, 2, 3))),
        "logit": (lambda l: fv.class_logit(2), logits[:, 2]),
        "logits": (lambda l: fv.class_logit([4, 0, 1]), logits[[0, 1, 2], [4, 0, 1]]),
        "prob": (lambda l: fv.class_prob(1), softmax(logits)[:, 1]),
        "logprob": (lambda l: fv.class_prob([3, 3, 0], log=True),
                    np.log(softmax(logits))[[0, 1, 2], [3, 3, 0]]),
        "logit_layer": (lambda l: fv.class_logit(2, layer="fc"), acts["fc"][:, 2]),
        "direction": (lambda l: fv.direction(l, direction),
                      np.einsum("nchw,c->n", a, direction) / (h * w)),
        "diversity": (lambda l: fv.diversity(l), gram_diversity(a)),
        "composite": (lambda l: 2.0 * fv.channel(l, 3) - fv.layer(l) / 4 + 1.5,
                      2 * a[:, 3].mean(axis=(1, 2)) - (a ** 2).mean(axis=(1, 2, 3)) / 4 + 1.5),
        "product": (lambda l: fv.channel(l, 3) * fv.class_logit(2),
                    a[:, 3].mean(axis=(1, 2)) * logits[:, 2]),
    }


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("kind", ["small_cnn", "small_resnet"])
def test_objective_scores_match_numpy(zoo, flavor, kind):
    spec, x = zoo.spec(kind), zoo.x(kind)
    direction = np.random.default_rng(0).standard_normal(8 if kind == "small_resnet" else 16)
    layer, cases = references(spec, x, direction)
    # evaluate every case in one backend pass: a sum of objectives scaled by distinct powers
    # would hide errors, so compare case by case (cheap: 16x16 nets)
    for name, (make, expected) in cases.items():
        scores, _ = evaluate(zoo, flavor, kind, make(zoo.layer(flavor, layer)), x)
        np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_class_objective_gradient_matches_numpy_backprop(zoo, flavor):
    spec, x = zoo.spec("small_resnet"), zoo.x("small_resnet")
    _, grad = evaluate(zoo, flavor, "small_resnet", fv.class_logit([1, 4, 2]), x)
    expected = input_gradient(spec, x, np.array([1, 4, 2]))
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)
    # probability objective: softmax chain rule
    _, grad = evaluate(zoo, flavor, "small_resnet", fv.class_prob(3), x)
    p = softmax(forward(spec, x))
    upstream = p[:, 3:4] * (np.eye(spec.n_classes)[3][None] - p)
    np.testing.assert_allclose(grad, input_gradient(spec, x, upstream), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_layer_objective_gradient_matches_finite_differences(zoo, flavor):
    x = zoo.x("small_cnn")
    obj = fv.channel("conv2", [1, 2, 3]) - 0.3 * fv.layer("conv1") + 0.1 * fv.diversity("conv2")
    _, grad = evaluate(zoo, flavor, "small_cnn", obj, x)
    rng, eps = np.random.default_rng(2), 1e-6
    for _ in range(3):
        d = rng.standard_normal(x.shape)
        up, _ = evaluate(zoo, flavor, "small_cnn", obj, x + eps * d)
        down, _ = evaluate(zoo, flavor, "small_cnn", obj, x - eps * d)
        numeric = (up.sum() - down.sum()) / (2 * eps)
        assert np.isclose(numeric, np.sum(grad * d), rtol=1e-5)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_chunked_evaluation_equals_one_pass(zoo, flavor):
    """Per-sample objectives slice their constants per chunk; diversity refuses to chunk."""
    x = zoo.x("small_cnn")
    obj = fv.channel("conv2", [3, 1, 0]) + fv.class_prob([0, 1, 2], log=True)
    whole, gw = evaluate(zoo, flavor, "small_cnn", obj, x)
    chunked, gc = evaluate(zoo, flavor, "small_cnn", obj, x, budget=1)  # 1 sample per pass
    np.testing.assert_allclose(chunked, whole, rtol=1e-12)
    np.testing.assert_allclose(gc, gw, rtol=1e-12)
    with pytest.raises(TargetError, match="diversity"):
        evaluate(zoo, flavor, "small_cnn", fv.diversity("conv2"), x, budget=1)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_cpu_pass_cap_never_splits_a_coupled_batch(zoo, flavor):
    """The CPU pass cap splits passes of per-sample objectives, never a batch whose samples
    are compared (diversity): only the memory budget may, and then it raises (above)."""
    x = zoo.x("small_cnn")
    backend = get_backend(zoo.model(flavor, "small_cnn"))
    for obj in (fv.diversity("conv2") + fv.channel("conv2", 1),
                fv.channel("conv2", [3, 1, 0]) + fv.class_prob([0, 1, 2], log=True)):
        whole, gw = evaluate(zoo, flavor, "small_cnn", obj, x)
        backend.pass_bytes = 1  # one sample per pass for anything that may be split
        try:
            capped, gc = evaluate(zoo, flavor, "small_cnn", obj, x)
        finally:
            backend.pass_bytes = "auto"
        np.testing.assert_allclose(capped, whole, rtol=1e-12)
        np.testing.assert_allclose(gc, gw, rtol=1e-12)


def test_keras_objective_is_traced_once_for_a_whole_run(zoo):
    """The objective's Python runs only while TensorFlow traces: once for 5 steps (and the
    final evaluation), not once per step."""
    calls = []

    def counted(ops, acts, outputs):
        calls.append(1)
        return ops.mean(acts["conv2"], axis=(1, 2, 3))

    model = zoo.build("keras", "small_cnn")  # a fresh model: its own function cache
    objective = fv.custom(counted, layers=["conv2"]) + 0.5 * fv.class_logit(1)
    fv.visualize(model, objective, size=16, steps=5, param="pixel", transforms=None, seed=0)
    assert len(calls) == 1
    fv.visualize(model, objective, size=16, steps=2, param="pixel", transforms=None, seed=1)
    assert len(calls) == 1  # the same objective structure reuses the trace across runs


def test_user_target_forms_become_objectives(zoo):
    x = zoo.x("small_cnn")
    logits, acts = forward(zoo.spec("small_cnn"), x, capture=("conv1",))
    for value, expected in [(2, logits[:, 2]), (Channel("conv1", 1), acts["conv1"][:, 1].mean((1, 2))),
                            (Neuron("conv1", (1, 3, 4)), acts["conv1"][:, 1, 3, 4]),
                            ("conv1", (acts["conv1"] ** 2).mean((1, 2, 3))),
                            (lambda out: out[:, 0] * 2, 2 * logits[:, 0])]:
        scores, _ = evaluate(zoo, "torch", "small_cnn", value, x)
        np.testing.assert_allclose(scores, expected, rtol=1e-10)


def test_custom_objective_sees_named_activations(zoo):
    x = zoo.x("small_cnn")
    _, acts = forward(zoo.spec("small_cnn"), x, capture=("conv1", "conv2"))
    obj = fv.custom(lambda ops, a, out: ops.mean(a["conv1"], axis=(1, 2, 3))
                    - ops.max(ops.reshape(a["conv2"], (-1, 16 * 8 * 8)), axis=1),
                    layers=["conv1", "conv2"], name="mine")
    for flavor in FLAVORS:
        scores, _ = evaluate(zoo, flavor, "small_cnn", obj, x)
        np.testing.assert_allclose(scores, acts["conv1"].mean((1, 2, 3))
                                   - acts["conv2"].reshape(3, -1).max(1), rtol=1e-10)
    assert str(obj) == "mine"


def test_objective_descriptions():
    obj = fv.channel("a", 3) - 0.5 * (fv.layer("b") + fv.class_logit(2))
    assert str(obj) == "channel(a, 3) - 0.5 * (layer(b) + class_logit(2))"
    assert str(fv.class_prob([1, 2], log=True)) == "class_logprob([1, 2])"


def test_objective_errors(zoo):
    x = zoo.x("small_cnn")
    with pytest.raises(OptionError, match="one per image"):
        evaluate(zoo, "torch", "small_cnn", fv.channel("conv2", [1, 2]), x)
    with pytest.raises(TargetError, match="out of range"):
        evaluate(zoo, "torch", "small_cnn", fv.channel("conv2", [1, 2, 99]), x)
    with pytest.raises(TargetError, match="direction has 3"):
        evaluate(zoo, "keras", "small_cnn", fv.direction("conv2", [1, 2, 3]), x)
    with pytest.raises(OptionError, match="cannot make an objective"):
        as_objective(1.5)
    with pytest.raises(LookupError, match="conv9"):
        evaluate(zoo, "torch", "small_cnn", fv.layer("conv9"), x)
