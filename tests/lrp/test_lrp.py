"""Native LRP and Deep Taylor: the numpy reference from the rules' formulas (float64, both
frameworks), zennit per composite, PyTorch == Keras, conservation, user rule mappings,
errors naming the layer, and the model unchanged."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
from crosslens.core import relevance
from crosslens.core.errors import CrosslensError, OptionError, UnsupportedError
from reference.lrp_numpy import COMPOSITES, lrp as lrp_numpy
from reference.nets import SMALL_CNN, SMALL_RESNET
from robustness.fingerprint import assert_unchanged, fingerprint

TARGET = np.array([1, 3, 0])
FLAVORS = ("torch", "keras", "keras_fused", "torch_functional")


def _explain(zoo, flavor, kind, x, **options):
    model = zoo.model(flavor, kind)
    out = cl.explain(model, zoo.to_model(flavor, x), "lrp", target=TARGET, **options)
    values = np.asarray(out.attributions)
    return (zoo.nchw(values) if zoo.is_keras(flavor) and values.ndim == 4 else values), out


@pytest.mark.parametrize("composite", sorted(COMPOSITES))
@pytest.mark.parametrize("flavor,kind", [("torch", SMALL_CNN), ("keras", SMALL_CNN),
                                         ("keras_fused", SMALL_CNN),
                                         ("torch_functional", SMALL_CNN),
                                         ("torch", SMALL_RESNET), ("keras", SMALL_RESNET)])
def test_every_composite_equals_the_numpy_rules(zoo, flavor, kind, composite):
    x = zoo.x(kind)
    want = lrp_numpy(zoo.spec(kind), x, TARGET, composite)["input"]
    got, out = _explain(zoo, flavor, kind, x, composite=composite)
    assert zoo.rel_err(got, want) < 1e-8
    assert out.info["composite"] == composite


@pytest.mark.parametrize("flavor", ("torch", "keras"))
def test_rule_options_and_user_mappings_follow_the_reference(zoo, flavor):
    kind = SMALL_CNN
    x = zoo.x(kind)
    spec = zoo.spec(kind)
    cases = [
        (dict(composite="epsilon_gamma_box", gamma=0.7, low=-3.0, high=3.0, stabilizer=1e-3),
         dict(composite="epsilon_gamma_box", gamma=0.7, low=-3.0, high=3.0, stabilizer=1e-3)),
        (dict(composite="epsilon_plus", epsilon=0.3),
         dict(composite="epsilon_plus", epsilon=0.3)),
        # by layer name and by layer type
        (dict(composite="epsilon_plus", rules={"fc": "zplus", "conv1": "wsquare"}),
         dict(composite="epsilon_plus", overrides={"fc": "zplus", "conv1": "wsquare"})),
        (dict(composite="epsilon_plus",
              rules={("Conv2d" if flavor == "torch" else "Conv2D"): "gamma"}),
         dict(composite="epsilon_plus", overrides={"conv1": "gamma", "conv2": "gamma"})),
        (dict(composite="epsilon_plus", rules={"conv2": relevance.alpha_beta_rule(3.0, 2.0)}),
         None),
    ]
    for ours, theirs in cases:
        got, _ = _explain(zoo, flavor, kind, x, **ours)
        if theirs is None:  # alpha 3 beta 2: the reference's alpha_beta with those values
            from reference import lrp_numpy as ref
            want = _alpha3_beta2(spec, x, ref)
        else:
            want = lrp_numpy(spec, x, TARGET, **theirs)["input"]
        assert zoo.rel_err(got, want) < 1e-8, ours


def _alpha3_beta2(spec, x, ref):
    original = ref.rule_table

    def table(name, **kw):
        return original(name, alpha=3.0, beta=2.0) if name == "alpha_beta" else original(name, **kw)
    ref.rule_table = table
    try:
        return ref.lrp(spec, x, TARGET, "epsilon_plus", overrides={"conv2": "alpha_beta"})["input"]
    finally:
        ref.rule_table = original


@pytest.mark.parametrize("flavor", ("torch", "keras"))
def test_relevance_at_a_layer_is_the_reference_relevance_there(zoo, flavor):
    kind = SMALL_RESNET
    x = zoo.x(kind)
    want = lrp_numpy(zoo.spec(kind), x, TARGET, "epsilon_plus")
    layer = "relu"
    got = cl.explain(zoo.model(flavor, kind), zoo.to_model(flavor, x), "lrp", target=TARGET,
                     layer=layer, composite="epsilon_plus")
    values = np.asarray(got.attributions)
    values = zoo.nchw(values) if flavor == "keras" else values
    assert zoo.rel_err(values, want[layer]) < 1e-8


@pytest.mark.parametrize("composite", sorted(set(COMPOSITES) - {"deep_taylor"}))
@pytest.mark.parametrize("kind", (SMALL_CNN, SMALL_RESNET))
def test_equals_zennit_per_composite_with_canonizers(zoo, kind, composite):
    x = zoo.x(kind)
    model = zoo.model("torch", kind)
    ours = cl.explain(model, x, "lrp", target=TARGET, composite=composite)
    theirs = cl.explain(model, x, "lrp", target=TARGET, composite=composite,
                        implementation="zennit")
    assert zoo.rel_err(ours.attributions, theirs.attributions) < 1e-10


def test_float32_twins_agree_across_frameworks(zoo):
    for kind in (SMALL_CNN, SMALL_RESNET):
        x = zoo.x(kind, dtype=np.float32)
        for composite in ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"):
            t = cl.explain(zoo.model("torch", kind, "float32"), x, "lrp", target=TARGET,
                           composite=composite).attributions
            k = cl.explain(zoo.model("keras", kind, "float32"), zoo.nhwc(x), "lrp",
                           target=TARGET, composite=composite).attributions
            assert zoo.rel_err(zoo.nchw(np.asarray(k)), np.asarray(t)) < 1e-5, (kind, composite)


def _bias_free_twins(seed: int = 0):
    import keras
    import torch
    rng = np.random.default_rng(seed)
    w1, w2, w3 = (rng.standard_normal(s) * 0.5 for s in ((4, 3, 3, 3), (5, 4, 3, 3), (3, 5)))
    torch_model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 5, 3, padding=1, bias=False), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 3, bias=False)
    ).double()
    with torch.no_grad():
        for module, weight in zip((torch_model[0], torch_model[2], torch_model[6]), (w1, w2, w3)):
            module.weight.copy_(torch.from_numpy(weight))
    inp = keras.Input((8, 8, 3), dtype="float64")
    c1 = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, activation="relu",
                             dtype="float64")
    c2 = keras.layers.Conv2D(5, 3, padding="same", use_bias=False, dtype="float64")
    fc = keras.layers.Dense(3, use_bias=False, dtype="float64")
    out = fc(keras.layers.GlobalAveragePooling2D(dtype="float64")(
        keras.layers.ReLU(dtype="float64")(c2(c1(inp)))))
    keras_model = keras.Model(inp, out)
    c1.set_weights([w1.transpose(2, 3, 1, 0)])
    c2.set_weights([w2.transpose(2, 3, 1, 0)])
    fc.set_weights([w3.T])
    return torch_model, keras_model


def test_lrp_zero_conserves_the_score_on_bias_free_nets():
    torch_model, keras_model = _bias_free_twins()
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8))
    for model, data in ((torch_model, x), (keras_model, x.transpose(0, 2, 3, 1))):
        out = cl.explain(model, data, "lrp", target=[0, 1, 2, 0], composite="epsilon",
                         epsilon=1e-12, stabilizer=1e-12)
        scores = np.asarray(cl.explain(model, data, "saliency", target=[0, 1, 2, 0]).outputs
                            )[np.arange(4), [0, 1, 2, 0]]
        sums = np.asarray(out.attributions).reshape(4, -1).sum(axis=1)
        np.testing.assert_allclose(sums, scores, rtol=1e-8)
        np.testing.assert_allclose(out.info["conservation"], 1.0, rtol=1e-8)


def test_results_do_not_depend_on_the_batch(zoo):
    x = zoo.x(SMALL_RESNET)
    model = zoo.model("torch", SMALL_RESNET)
    batch = cl.explain(model, x, "deep_taylor", target=TARGET).attributions
    for i in range(len(x)):
        one = cl.explain(model, x[i:i + 1], "deep_taylor", target=int(TARGET[i])).attributions
        np.testing.assert_allclose(np.asarray(one)[0], np.asarray(batch)[i], rtol=1e-10,
                                   atol=1e-14)


def test_deep_taylor_is_zplus_with_zbox_at_the_input(zoo):
    x = zoo.x(SMALL_CNN)
    want = lrp_numpy(zoo.spec(SMALL_CNN), x, TARGET, "deep_taylor", low=-2.0, high=2.0)["input"]
    for flavor in ("torch", "keras"):
        got = cl.explain(zoo.model(flavor, SMALL_CNN), zoo.to_model(flavor, x), "deep_taylor",
                         target=TARGET, low=-2.0, high=2.0).attributions
        got = zoo.nchw(np.asarray(got)) if flavor == "keras" else np.asarray(got)
        assert zoo.rel_err(got, want) < 1e-8


def _layer_norm_models():
    import keras
    import torch
    torch_model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5),
                                      torch.nn.ReLU(), torch.nn.Linear(5, 2))
    inp = keras.Input((6,))
    h = keras.layers.LayerNormalization(name="norm")(keras.layers.Dense(5)(inp))
    keras_model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.ReLU()(h)))
    return (torch_model, "1", "LayerNorm"), (keras_model, "norm", "LayerNormalization")


def test_a_layer_without_rule_is_named_and_can_be_given_one():
    x = np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)
    for model, name, kind in _layer_norm_models():
        before = fingerprint(model)
        with pytest.raises(UnsupportedError, match=f"'{name}' \\({kind}\\) has no rule"):
            cl.explain(model, x, "lrp", target=0)
        assert_unchanged(model, before)
        out = cl.explain(model, x, "lrp", target=0, rules={name: "pass"})
        assert np.isfinite(np.asarray(out.attributions)).all()
        assert out.info["rules"][name] == "pass"
        assert_unchanged(model, before)


def test_bad_options_are_specific_errors(zoo):
    model, x = zoo.model("torch", SMALL_CNN), zoo.x(SMALL_CNN)
    for options, match in ((dict(composite="nope"), "LRP composite"),
                           (dict(rules={"conv1": "nope"}), "LRP rule"),
                           (dict(rules={"nope": "epsilon"}), "nope"),
                           (dict(rules={"relu1": "epsilon"}), "dense, convolution"),
                           (dict(composite="epsilon_gamma_box", low="x"), "bounds")):
        with pytest.raises(OptionError, match=match):
            cl.explain(model, x, "lrp", target=TARGET, **options)
    with pytest.raises(OptionError, match="alpha - beta = 1"):
        relevance.alpha_beta_rule(2.0, 2.0)


@pytest.mark.parametrize("flavor", ("torch", "keras"))
def test_the_model_is_unchanged_and_other_methods_unaffected(zoo, flavor):
    model = zoo.build(flavor, SMALL_RESNET)
    x = zoo.to_model(flavor, zoo.x(SMALL_RESNET))
    before = fingerprint(model)
    plain = np.asarray(cl.explain(model, x, "saliency", target=TARGET).attributions)
    cl.explain(model, x, "lrp", target=TARGET, composite="epsilon_gamma_box")
    assert_unchanged(model, before)
    again = np.asarray(cl.explain(model, x, "saliency", target=TARGET).attributions)
    np.testing.assert_array_equal(plain, again)


def test_gradient_composites_are_the_modified_gradients(zoo):
    model, x = zoo.model("torch", SMALL_CNN), zoo.x(SMALL_CNN)
    for composite, method in (("guided_backprop", "guided_backprop"), ("deconvnet", "deconvnet")):
        a = cl.explain(model, x, "lrp", target=TARGET, composite=composite).attributions
        b = cl.explain(model, x, method, target=TARGET).attributions
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_errors_are_crosslens_errors_for_unsupported_models():
    import torch
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 2)))
    with pytest.raises(CrosslensError, match="TorchScript"):
        cl.explain(scripted, np.ones((1, 3), np.float32), "lrp", target=0)


def _same_padding_net():
    """EfficientNet-style: convolutions with a "same"-padding submodule and their own
    forward, batch norms, ReLU6, a residual addition."""
    import torch

    class SameConv(torch.nn.Conv2d):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, padding=0, **kwargs)
            self.static_padding = torch.nn.ZeroPad2d(1)

        def forward(self, x):
            return torch.nn.functional.conv2d(self.static_padding(x), self.weight, self.bias,
                                              self.stride, 0, self.dilation, self.groups)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn0 = SameConv(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4)
            self.dw, self.bn1 = SameConv(4, 4, 3, groups=4, bias=False), torch.nn.BatchNorm2d(4)
            self.act0, self.act1 = torch.nn.ReLU6(), torch.nn.ReLU6()
            self.pool, self.fc = torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.act0(self.bn0(self.stem(x)))
            h = self.act1(self.bn1(self.dw(h))) + h
            return self.fc(self.pool(h).flatten(1))

    torch.manual_seed(3)
    net = Net().double().eval()
    with torch.no_grad():
        for bn in (net.bn0, net.bn1):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 3.0)
            bn.bias.uniform_(-0.5, 0.5)
    return net


@pytest.mark.parametrize("composite", sorted(set(COMPOSITES) - {"deep_taylor"}))
def test_convolutions_with_their_own_forward_equal_zennit(composite):
    model = _same_padding_net()
    x = np.random.default_rng(0).uniform(-2, 8, (2, 3, 8, 8))  # ReLU6 saturates
    before = fingerprint(model)
    ours = cl.explain(model, x, "lrp", target=[0, 2], composite=composite).attributions
    theirs = cl.explain(model, x, "lrp", target=[0, 2], composite=composite,
                        implementation="zennit").attributions
    assert_unchanged(model, before)
    scale = np.abs(np.asarray(theirs)).max()
    assert np.abs(np.asarray(ours) - np.asarray(theirs)).max() < 1e-10 * scale


RULE_NAMES = ("epsilon", "zplus", "alpha_beta", "gamma", "zbox", "flat", "wsquare")


def _mlp_twins(seed: int = 0):
    import keras
    import torch
    rng = np.random.default_rng(seed)
    shapes = ((5, 6), (4, 5), (3, 4))
    weights = [(rng.standard_normal(s), rng.standard_normal(s[0]) * 0.3) for s in shapes]
    torch_model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(),
                                      torch.nn.Linear(5, 4), torch.nn.ReLU(),
                                      torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        for module, (w, b) in zip(torch_model[::2], weights):
            module.weight.copy_(torch.from_numpy(w))
            module.bias.copy_(torch.from_numpy(b))
    inp = keras.Input((6,), dtype="float64")
    dense = [keras.layers.Dense(s[0], activation=act, dtype="float64")
             for s, act in zip(shapes, ("relu", "relu", None))]
    h = inp
    for layer in dense:
        h = layer(h)
    keras_model = keras.Model(inp, h)
    for layer, (w, b) in zip(dense, weights):
        layer.set_weights([w.T, b])
    return torch_model, keras_model, weights


def _mlp_numpy(weights, x, target, rule, low, high):
    from reference.lrp_numpy import _dense, _dense_t, linear_relevance
    acts = [x]
    for i, (w, b) in enumerate(weights):
        z = acts[-1] @ w.T + b
        acts.append(np.maximum(z, 0) if i < len(weights) - 1 else z)
    r = np.zeros_like(acts[-1])
    r[np.arange(len(x)), target] = acts[-1][np.arange(len(x)), target]
    for a, (w, b) in zip(acts[-2::-1], weights[::-1]):
        r = linear_relevance(rule, a, w, b, r, _dense, _dense_t, 1e-6, low, high)
    return r


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_every_rule_on_a_dense_net_equals_numpy(rule):
    torch_model, keras_model, weights = _mlp_twins()
    x = np.random.default_rng(1).standard_normal((4, 6))
    target = [0, 1, 2, 1]
    want = _mlp_numpy(weights, x, np.array(target), rule, -3.0, 3.0)
    for model, kind in ((torch_model, "Linear"), (keras_model, "Dense")):
        out = cl.explain(model, x, "lrp", target=target, composite="epsilon", low=-3.0,
                         high=3.0, rules={kind: relevance.layer_rule(rule)
                                          if rule != "zbox" else relevance.zbox_rule(-3.0, 3.0)})
        got = np.asarray(out.attributions)
        assert np.abs(got - want).max() <= 1e-8 * np.abs(want).max(), (rule, kind)


def test_a_batch_norm_without_running_statistics_is_named_not_merged():
    import torch
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(
        2, track_running_stats=False), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(72, 2)).eval()
    with pytest.raises(UnsupportedError, match=r"'1' \(BatchNorm2d\) has no rule"):
        cl.explain(model, np.ones((2, 1, 8, 8), np.float32), "lrp", target=0)
