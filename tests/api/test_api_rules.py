"""Backward rules are objects from one registry; each backend registers how it applies
them in its own file."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import crosslens as cl
from crosslens.backends import get_backend
from crosslens.backends.torch import TorchBackend
from crosslens.core.rules import DECONV, GUIDED, Rule, all_rules, get_rule


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 3)).eval()


def test_registry_and_names():
    assert [r.name for r in all_rules()][:2] == ["guided", "deconv"]
    assert get_rule("guided") is GUIDED and get_rule(DECONV) is DECONV
    with pytest.raises(cl.OptionError, match="unknown backward rule 'guidance'.*guided"):
        get_rule("guidance")


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_both_backends_apply_the_relu_rules(framework):
    import importlib

    from crosslens.backends import BACKENDS
    cls = getattr(importlib.import_module(BACKENDS[framework].module), BACKENDS[framework].cls)
    assert {"guided", "deconv"} <= set(cls.rules())


def test_a_rule_object_and_its_name_give_the_same_gradient():
    model = _model()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    backend = get_backend(model)
    with backend.session():
        native = backend.prepare(x)
        target = cl.core.targets.ClassTarget(np.array([1, 2]))
        by_object = backend.gradient(native, target, rule=GUIDED).grad
        by_name = backend.gradient(native, target, rule="guided").grad
        plain = backend.gradient(native, target).grad
    assert torch.equal(by_object, by_name) and not torch.equal(by_object, plain)
    np.testing.assert_array_equal(
        by_object.numpy(), cl.explain(model, x, "guided_backprop", target=[1, 2]).numpy())


def test_a_backend_registers_a_new_rule_in_its_own_class():
    """A rule the backend does not apply is a clear error; registering it on a backend
    class makes it available there only."""
    silence = Rule("silence", "every ReLU passes no gradient", ("ReLU",))
    model = _model()
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((1, 3, 6, 6)),
                        dtype=torch.float32)
    backend = get_backend(model)
    with backend.session(), pytest.raises(cl.UnsupportedError, match="'silence'.*guided"):
        backend.gradient(backend.prepare(x), cl.core.targets.ClassTarget(np.array([0])),
                         rule=silence)

    class Silenced(TorchBackend):
        pass

    applied = []

    @contextlib.contextmanager
    def apply(backend, rule):
        applied.append(rule.name)
        yield

    Silenced.register_rule(silence, apply)
    assert "silence" in Silenced.rules() and "silence" not in TorchBackend.rules()
    other = Silenced(model)
    with other.session():
        other.gradient(other.prepare(x), cl.core.targets.ClassTarget(np.array([0])),
                       rule=silence)
    assert applied == ["silence"]
