"""LRP through ``implementation="zennit"`` on residual networks (issue 15, part 14).

torchvision is not installable here, so zennit's ``ResNetCanonizer`` (which matches
torchvision's block classes) can never apply to a model. The reference is zennit's own
canonizer pointed at the test's hand-written ``BasicBlock``: ``SequentialMergeBatchNorm``
plus an ``AttributeCanonizer`` installing zennit's ``ResNetBasicBlockCanonizer.forward``
(``torch.stack`` + a hooked ``zennit.layer.Sum``), exactly what zennit does for
torchvision's ResNet-18. The bridge finds the residual additions itself.

Measured (ResNet-18 shape, widths 64-512, random weights, 1x3x32x32 / 2x3x32x32, CPU):

- no BN shifts, no fc bias: sum(R)/score = 0.9998 (epsilon_plus_flat and
  epsilon_alpha2_beta1), bridge = reference bitwise; = zennit's unmodified canonizer to
  2.8e-6 - 1e-5 relative (its merge leaves x / sqrt(1 + eps) per batch norm, which the
  bridge makes exact);
- random BN shifts: -0.129, 0.230 for both (biases absorb relevance);
- the previous bridge (``SequentialMergeBatchNorm`` only): 255.93 without BN shifts (each of
  the eight residual additions doubles the relevance);
- the structural check (bias-free z+ rules): 0.9999-1.0000 with the fix, 255.98 = 2^8
  (eight residual additions each copying relevance) without; on the reference CNN / ResNet
  of tests/reference 1.0000 with canonization, 2.0 without (one addition); 3.03 / 0.32 for
  a head written as ``mean(...) @ w`` (no module, so no rule).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import crosslens as cl  # noqa: E402
from crosslens.toolsets import ConservationWarning  # noqa: E402
from crosslens.translate._torchvision import import_with_torchvision  # noqa: E402
from reference.builders import build_torch  # noqa: E402
from reference.nets import make_small_resnet  # noqa: E402
from robustness.fingerprint import assert_unchanged, fingerprint  # noqa: E402

nn = torch.nn
try:  # zennit imports torchvision: crosslens imports it with its scoped stub
    import_with_torchvision("zennit")
except ImportError:
    pytest.skip("zennit is not installed", allow_module_level=True)
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import (AttributeCanonizer, CompositeCanonizer,  # noqa: E402
                               SequentialMergeBatchNorm)
from zennit.composites import COMPOSITES  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit.torchvision import ResNetBasicBlockCanonizer  # noqa: E402


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, written out (same attribute names, ``out += identity``)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], 64
        for i, c in enumerate((64, 128, 256, 512)):
            stages.append(nn.Sequential(BasicBlock(cin, c, 1 if i == 0 else 2), BasicBlock(c, c)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(shift: bool, seed: int = 0) -> ResNet18:
    """Random ResNet-18; BN statistics random. ``shift=False``: zero BN means and biases and
    no fc bias, so no bias absorbs relevance and LRP must conserve the score exactly."""
    torch.manual_seed(seed)
    model = ResNet18()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1 * shift)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1 * shift)
        if not shift:
            model.fc.bias.zero_()
    return model.eval()


def exact(merge: type) -> type:
    """zennit's batch-norm merge made exact, as the bridge does: zennit leaves the merged
    batch norm computing x / sqrt(1 + eps); a variance of 1 - eps makes it the identity."""
    class Exact(merge):
        @staticmethod
        def merge_batch_norm(modules, batch_norm):
            merge.merge_batch_norm(modules, batch_norm)
            batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data,
                                                          1.0 - batch_norm.eps)
    return Exact


def zennit_resnet_canonizer(exact_merge: bool = True):
    """zennit's ResNetCanonizer, with its BasicBlock check pointed at the test's class
    (and, by default, its batch-norm merge made exact)."""
    def attributes(name, module):
        if isinstance(module, BasicBlock):
            return {"forward": ResNetBasicBlockCanonizer.forward.__get__(module),
                    "canonizer_sum": Sum()}
        return None
    merge = exact(SequentialMergeBatchNorm) if exact_merge else SequentialMergeBatchNorm
    return CompositeCanonizer([merge(), AttributeCanonizer(attributes)])


def zennit_lrp(model, x, target, composite, canonizers, **options):
    """Relevance of the target score straight from zennit (the reference)."""
    with torch.no_grad():
        out = model(x)
    seed = torch.zeros_like(out)
    seed[torch.arange(len(x)), target] = out[torch.arange(len(x)), target]
    composite = COMPOSITES[composite](canonizers=canonizers, **options)
    with Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(x.clone(), seed)
    return relevance, out[torch.arange(len(x)), target]


def ratio(relevance, scores):
    return (torch.as_tensor(relevance).reshape(len(scores), -1).sum(1) / scores).numpy()


X = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def models():
    return {True: resnet18(shift=True), False: resnet18(shift=False)}


@pytest.mark.parametrize("shift,composite", [(False, "epsilon_plus_flat"),
                                             (True, "epsilon_plus_flat"),
                                             (False, "epsilon_alpha2_beta1")])
def test_lrp_on_resnet18_equals_zennit_with_its_resnet_canonizer(models, shift, composite):
    model = models[shift]
    target = [3, 7]
    reference, scores = zennit_lrp(model, X, target, composite, [zennit_resnet_canonizer()])
    before = fingerprint(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        exp = cl.explain(model, X, "lrp", target=target, implementation="zennit",
                         composite=composite)
    assert_unchanged(model, before)
    ours = torch.as_tensor(exp.attributions)
    # same rules, same canonical form (measured: bitwise equal)
    assert float((ours - reference).abs().max() / reference.abs().max()) < 1e-6
    # zennit's own merge, x / sqrt(1 + eps) per batch norm: measured 2.8e-6 - 1e-5
    own, _ = zennit_lrp(model, X, target, composite, [zennit_resnet_canonizer(False)])
    assert float((ours - own).abs().max() / own.abs().max()) < 1e-4
    expected = ratio(reference, scores)
    np.testing.assert_allclose(exp.info["conservation"], expected, atol=1e-5)
    if not shift:  # nothing absorbs relevance: the score is conserved (measured 0.9998)
        np.testing.assert_allclose(expected, 1.0, atol=1e-3)
    # (with BN shifts biases absorb relevance: measured -0.129, 0.230 for both)
    assert exp.info["residual_sums"] == 8  # two blocks per stage, four stages
    assert exp.info["merged_batch_norms"] == 20  # 17 conv -> BN + 3 downsample conv -> BN
    np.testing.assert_allclose(exp.info["structural_conservation"], 1.0, atol=1e-3)


def test_without_residual_routing_relevance_is_copied_through_every_addition(models):
    model = models[False]
    # the previous bridge: zennit with SequentialMergeBatchNorm only. Nothing absorbs
    # relevance in this model, so each of the eight additions doubles it: 2^8
    broken, scores = zennit_lrp(model, X, [3, 7], "epsilon_plus_flat",
                                [SequentialMergeBatchNorm()])
    print("previous bridge sum(R)/score:", ratio(broken, scores))
    np.testing.assert_allclose(ratio(broken, scores), 256, rtol=0.02)
    before = fingerprint(model)
    with pytest.warns(ConservationWarning, match="does not conserve relevance"):
        exp = cl.explain(model, X, "lrp", target=[3, 7], implementation="zennit",
                         canonize=False)
    assert_unchanged(model, before)
    # eight residual additions, each copying relevance to both branches: 2^8 (measured 255.98)
    np.testing.assert_allclose(exp.info["structural_conservation"], 256, rtol=0.01)


def test_plain_addition_in_forward_code_is_routed_too():
    """tests/reference small_resnet: ``relu_out(y + x)`` in its forward, no block class.
    Reference: zennit with a canonizer giving that block a Sum module."""
    spec = make_small_resnet(0).astype(np.float32)
    model = build_torch(spec, dtype=torch.float32)
    x = torch.as_tensor(spec.random_input(1, batch=3).astype(np.float32))
    target = [0, 1, 2]

    def forward(self, inp):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(inp)))))
        return self.relu_out(self.canonizer_sum(torch.stack([inp, y], dim=-1)))

    block = type(model.block)
    canonizer = CompositeCanonizer([exact(SequentialMergeBatchNorm)(), AttributeCanonizer(
        lambda name, m: {"forward": forward.__get__(m), "canonizer_sum": Sum()}
        if isinstance(m, block) else None)])
    reference, scores = zennit_lrp(model, x, target, "epsilon_plus", [canonizer])
    before = fingerprint(model)
    exp = cl.explain(model, x, "lrp", target=target, implementation="zennit",
                     composite="epsilon_plus")
    assert_unchanged(model, before)
    ours = torch.as_tensor(exp.attributions)
    assert float((ours - reference).abs().max() / reference.abs().max()) < 1e-4
    np.testing.assert_allclose(exp.info["conservation"], ratio(reference, scores), atol=1e-4)
    assert exp.info["residual_sums"] == 1 and exp.info["merged_batch_norms"] == 3
    # measured 1.0000 over all classes of the three reference seeds; 2.0 unrouted
    np.testing.assert_allclose(exp.info["structural_conservation"], 1.0, atol=1e-3)


def test_batch_norms_are_merged_by_data_flow_not_registration_order():
    """BN registered before its conv: zennit's SequentialMergeBatchNorm misses the pair,
    the bridge merges it (and the relevance equals zennit's NamedMergeBatchNorm)."""
    from zennit.canonizers import NamedMergeBatchNorm

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3, bias=False)

        def forward(self, x):
            return self.fc(self.pool(self.relu(self.bn(self.conv(x)))).flatten(1))

    torch.manual_seed(1)
    model = Net().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.uniform_(0.5, 1.5)
    x = torch.rand(2, 3, 8, 8)
    reference, scores = zennit_lrp(model, x, [0, 2], "epsilon_plus",
                                   [exact(NamedMergeBatchNorm)([(("conv",), "bn")])])
    exp = cl.explain(model, x, "lrp", target=[0, 2], implementation="zennit",
                     composite="epsilon_plus")
    assert exp.info["merged_batch_norms"] == 1
    np.testing.assert_allclose(exp.attributions, reference.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(exp.info["conservation"], ratio(reference, scores), atol=1e-5)
    # no biases: conserved up to the fc's epsilon on a small score (measured 0.99996, 0.9988)
    np.testing.assert_allclose(exp.info["conservation"], 1.0, atol=5e-3)


class _Exploding(ResNet18):
    """Raises inside the attribution's forward pass, while the canonizers are applied
    (batch norms merged: their weights all ones)."""

    def forward(self, x):
        if bool((self.bn1.weight == 1).all()):
            raise RuntimeError("boom")
        return super().forward(x)


def test_model_is_restored_when_the_call_raises(models):
    model = _Exploding()
    model.load_state_dict(models[True].state_dict())
    model.eval()
    before = fingerprint(model)
    with pytest.raises(RuntimeError, match="boom"):
        cl.explain(model, X, "lrp", target=[1, 2], implementation="zennit")
    assert_unchanged(model, before)


@pytest.mark.parametrize("options,error,match", [
    ({"epsilon": "big"}, cl.OptionError, "epsilon"),
    ({"composite": "epsilon_plus_flt"}, cl.OptionError, "epsilon_plus_flat"),
    ({"composite": 3}, cl.OptionError, "composite"),
    ({"canonize": "yes"}, cl.OptionError, "canonize"),
    ({"gamma": 0.5}, cl.OptionError, "no option 'gamma'"),
    ({"composite": "epsilon_gamma_box", "low": np.zeros(5)}, cl.OptionError, "low"),
    ({"layer": "layer1"}, cl.UnsupportedError, "input only"),
    ({"target": lambda out: out[:, 0]}, cl.UnsupportedError, "class targets"),
])
def test_bad_options_are_named_and_leave_the_model_alone(models, options, error, match):
    model = models[False]
    before = fingerprint(model)
    kwargs = {"target": [1, 2], **options}
    with pytest.raises(error, match=match):
        cl.explain(model, X, "lrp", implementation="zennit", **kwargs)
    assert_unchanged(model, before)


def test_model_is_restored_when_a_canonizer_fails_half_way(models, monkeypatch):
    """zennit keeps no handle of merges done before a failing one: the bridge's own
    snapshot puts those batch norms and convolutions back."""
    from zennit.canonizers import MergeBatchNorm

    model = models[True]
    before = fingerprint(model)
    original, calls = MergeBatchNorm.register, []

    def fail_on_the_third(self, linears, batch_norm):
        calls.append(batch_norm)
        if len(calls) == 3:
            raise RuntimeError("canonizer failed")
        return original(self, linears, batch_norm)

    monkeypatch.setattr(MergeBatchNorm, "register", fail_on_the_third)
    with pytest.raises(RuntimeError, match="canonizer failed"):
        cl.explain(model, X, "lrp", target=[1, 2], implementation="zennit")
    assert len(calls) == 3
    assert_unchanged(model, before)


def test_operations_without_a_rule_are_caught_by_the_structural_check():
    """A head written as ``x.mean(...) @ w`` is no module zennit can give a rule: the
    gradient passes through it instead of relevance. The composite's own ratio cannot tell
    (biases), the bias-free z+ check can, and warns."""

    class FunctionalHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.relu = nn.ReLU()
            self.w = nn.Parameter(torch.randn(6, 4))

        def forward(self, x):
            return self.relu(self.conv(x)).mean((2, 3)) @ self.w

    torch.manual_seed(2)
    model = FunctionalHead().eval()
    x = torch.rand(2, 3, 8, 8)
    before = fingerprint(model)
    with pytest.warns(ConservationWarning, match="structural_conservation"):
        exp = cl.explain(model, x, "lrp", target=[0, 1], implementation="zennit")
    assert_unchanged(model, before)
    print("functional head:", exp.info["structural_conservation"])
    assert all(abs(r - 1) > 0.25 for r in exp.info["structural_conservation"])
    # the same net with module layers conserves (bias-free z+ check = 1)
    modules = nn.Sequential(model.conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(6, 4, bias=False)).eval()
    with torch.no_grad():
        modules[4].weight.copy_(model.w.T)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConservationWarning)
        same = cl.explain(modules, x, "lrp", target=[0, 1], implementation="zennit")
    np.testing.assert_allclose(same.info["structural_conservation"], 1.0, atol=1e-3)


def test_merged_batch_norms_compute_the_models_own_function(zoo):
    """zennit's merge changes the float64 reference ResNet's logits by 2.4e-4 (x / sqrt(1 +
    eps) per merged batch norm); the bridge's canonical form must reproduce the outputs
    to 1000 ulps, or it raises."""
    from zennit.core import Composite

    model, x = zoo.model("torch", "small_resnet"), torch.as_tensor(zoo.x("small_resnet"))
    with torch.no_grad():
        out = model(x)
        with Composite(canonizers=[SequentialMergeBatchNorm()]).context(model):
            zennit_out = model(x)
    assert float((zennit_out - out).abs().max() / out.abs().max()) > 1e-5  # measured 3e-4
    exp = cl.explain(model, x.numpy(), "lrp", target=[0, 1, 2], implementation="zennit")
    assert exp.info["merged_batch_norms"] == 3


def test_a_merge_that_would_change_the_outputs_is_refused():
    """The conv's output feeds its batch norm and a second branch: merging the batch norm
    into the conv would change that branch, and the bridge says so."""

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            y = self.conv(x)
            both = torch.cat([self.pool(torch.relu(self.bn(y))), self.pool(torch.relu(y))], 1)
            return self.fc(both.flatten(1))

    torch.manual_seed(3)
    model = Shared().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.running_mean.uniform_(-0.2, 0.2)
    x = torch.rand(2, 3, 8, 8)
    before = fingerprint(model)
    with pytest.raises(cl.ModelError, match="canonize=False"):
        cl.explain(model, x, "lrp", target=[0, 1], implementation="zennit")
    assert_unchanged(model, before)
    exp = cl.explain(model, x, "lrp", target=[0, 1], implementation="zennit", canonize=False)
    reference, _ = zennit_lrp(model, x, [0, 1], "epsilon_plus_flat", [])
    np.testing.assert_allclose(exp.attributions, reference.numpy(), rtol=1e-5, atol=1e-8)
