"""The method registry's contract, checked for every registered method on every installed
backend: adding a method means its file, its entry in ``DECLARED`` (cheap options, where
its numpy reference or closed form is tested, its peers), and nothing else — these tests
then run it on both frameworks.

For every method: PyTorch == Keras on the twin reference CNN (float64), the same seed
gives the same result, the model is unchanged, one sample alone equals the same sample in a
batch (unless the registry flags the method's ``batch_coupling``), and (where declared) the
attributions sum to ``f(x) - f(baseline)``.
A method missing from ``DECLARED`` fails here, naming it.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import crosslens as cl
from crosslens.core.registry import all_methods
from reference.nets import SMALL_CNN
from reference.numpy_nets import forward
from robustness.fingerprint import assert_unchanged, fingerprint

TESTS = Path(__file__).resolve().parents[1]
TARGET = np.array([1, 3, 0])
LAYER = "conv2"
MASK = (np.arange(16)[:, None] // 8 * 2 + np.arange(16)[None, :] // 8).reshape(1, 1, 16, 16)


@dataclass(frozen=True)
class Declared:
    """What a method declares for the generic tests."""

    reference: str  # test module (under tests/) holding its numpy reference / closed form
    options: dict = field(default_factory=dict)  # cheap options for the small CNN
    peers: tuple[str, ...] = ()  # toolsets mapping it (checked: the adapter lists it)
    layer: bool = False  # runs at layer="conv2"
    completeness: bool = False  # sum(attributions) == f(x) - f(baseline 0)


CAM = dict(layer=True)
DECLARED: dict[str, Declared] = {
    "saliency": Declared("methods/test_methods_reference.py", peers=("captum", "tf-keras-vis")),
    "gradient_x_input": Declared("methods/test_methods_reference.py", peers=("captum",)),
    "integrated_gradients": Declared("methods/test_methods_reference.py", {"steps": 8},
                                     peers=("captum",)),
    "smoothgrad": Declared("methods/test_methods_reference.py", {"samples": 3},
                           peers=("captum", "tf-keras-vis")),
    "squaregrad": Declared("methods/test_methods_reference.py", {"samples": 3},
                           peers=("captum",)),
    "vargrad": Declared("methods/test_methods_reference.py", {"samples": 3},
                        peers=("captum",)),
    "guided_backprop": Declared("methods/test_methods_reference.py",
                                peers=("captum", "zennit")),
    "deconvnet": Declared("methods/test_methods_reference.py", peers=("captum", "zennit")),
    "activations": Declared("methods/test_methods_reference.py", **CAM),
    "grad_cam": Declared("cam/test_cam_reference.py", peers=("captum", "tf-keras-vis"), **CAM),
    "grad_cam_plus_plus": Declared("cam/test_cam_reference.py", peers=("tf-keras-vis",), **CAM),
    "layer_cam": Declared("cam/test_cam_reference.py", peers=("tf-keras-vis",), **CAM),
    "hires_cam": Declared("cam/test_cam_reference.py", **CAM),
    "grad_cam_elementwise": Declared("cam/test_cam_reference.py", **CAM),
    "xgrad_cam": Declared("cam/test_cam_reference.py", **CAM),
    "guided_grad_cam": Declared("cam/test_cam_reference.py", peers=("captum",), **CAM),
    "cam": Declared("cam/test_cam_reference.py", {"layer": "relu2"}),
    "score_cam": Declared("cam/test_cam_reference.py", peers=("tf-keras-vis",), **CAM),
    "ablation_cam": Declared("cam/test_cam_reference.py", **CAM),
    "eigen_cam": Declared("cam/test_cam_reference.py", **CAM),
    "eigen_grad_cam": Declared("cam/test_cam_reference.py", **CAM),
    "kpca_cam": Declared("cam/test_cam_reference.py", **CAM),
    "channel_mask": Declared("cam/test_cam_reference.py", {"channel": 2}, **CAM),
    "occlusion": Declared("perturbation/test_perturbation.py", {"patch": 8},
                          peers=("captum",)),
    "feature_ablation": Declared("perturbation/test_perturbation.py", {"feature_mask": MASK},
                                 peers=("captum",)),
    "rise": Declared("perturbation/test_perturbation.py", {"samples": 16}),
    "conductance": Declared("layer/test_layer.py", {"steps": 8}, peers=("captum",), **CAM),
    "internal_influence": Declared("influence/test_influence.py", {"cut": LAYER}),
    "kernel_shap": Declared("shapley/test_shapley.py", {"feature_mask": MASK},
                            peers=("captum",), completeness=True),
    "shapley_value_sampling": Declared("shapley/test_shapley.py",
                                       {"feature_mask": MASK, "samples": 3},
                                       peers=("captum",), completeness=True),
    "gradient_shap": Declared("shapley/test_gradient_shap.py", {"samples": 4},
                              peers=("captum",)),
    "lime": Declared("shapley/test_lime_permutation.py", {"feature_mask": MASK, "samples": 20},
                     peers=("captum",)),
    "feature_permutation": Declared("shapley/test_lime_permutation.py",
                                    {"feature_mask": MASK}, peers=("captum",)),
    "lrp": Declared("lrp/test_lrp.py", {"composite": "epsilon_gamma_box"}, peers=("zennit",)),
    "deep_taylor": Declared("lrp/test_lrp.py"),
    "deeplift": Declared("deeplift/test_deeplift.py", peers=("captum",)),
    "deeplift_shap": Declared("deeplift/test_deeplift.py", peers=("captum",)),
    "taylor": Declared("deeplift/test_taylor.py"),
}


METHODS = [spec.name for spec in all_methods()]


def test_every_registered_method_declares_its_tests():
    missing = sorted(set(METHODS) - set(DECLARED))
    assert not missing, f"declare these methods in DECLARED: {missing}"
    assert not sorted(set(DECLARED) - set(METHODS)), "DECLARED names unregistered methods"


@pytest.mark.parametrize("method", METHODS)
def test_declared_reference_and_peers_exist(method):
    declared = DECLARED[method]
    path = TESTS / declared.reference
    tree = ast.parse(path.read_text())
    assert any(isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
               for node in ast.walk(tree)), path
    spec = next(s for s in all_methods() if s.name == method)
    text = path.read_text()
    assert any(f'"{name}"' in text for name in (method,) + tuple(spec.aliases)), \
        f"{path} never names {method!r} (or an alias)"
    from crosslens.toolsets import toolset
    for peer in declared.peers:
        _, adapter = toolset(peer)
        assert method in adapter.methods(), f"{peer} does not map {method!r}"


def _run(zoo, flavor, method, x, seed=0, target=TARGET, **extra):
    declared = DECLARED[method]
    options = {**declared.options, **extra}
    if declared.layer:
        options.setdefault("layer", LAYER)
    data = zoo.to_model(flavor, x)
    for key, value in list(options.items()):
        if isinstance(value, np.ndarray) and value.ndim == 4:
            options[key] = zoo.to_model(flavor, value)
    target = None if method in ("activations", "eigen_cam", "kpca_cam", "channel_mask") \
        else target
    kwargs = {} if target is None else {"target": target}
    out = cl.explain(zoo.model(flavor, SMALL_CNN), data, method, seed=seed, **kwargs,
                     **options)
    values = np.asarray(out.attributions, dtype=np.float64)
    return zoo.nchw(values) if zoo.is_keras(flavor) and values.ndim == 4 else values


@pytest.mark.parametrize("method", METHODS)
def test_frameworks_agree_and_seeds_repeat(zoo, method):
    x = zoo.x(SMALL_CNN)
    torch_values = _run(zoo, "torch", method, x)
    keras_values = _run(zoo, "keras", method, x)
    assert zoo.rel_err(keras_values, torch_values) < 1e-8
    np.testing.assert_array_equal(_run(zoo, "torch", method, x), torch_values)


@pytest.mark.parametrize("method", [s.name for s in all_methods() if s.batch_coupling is None])
def test_one_sample_alone_equals_it_in_a_batch(zoo, method):
    """Every method not flagged ``batch_coupling`` (the dataset engine batches those)."""
    x = zoo.x(SMALL_CNN)
    batch = _run(zoo, "torch", method, x)
    alone = _run(zoo, "torch", method, x[1:2], target=TARGET[1:2])
    np.testing.assert_allclose(alone[0], batch[1], rtol=1e-9,
                               atol=1e-12 * max(np.abs(batch).max(), 1e-300))


@pytest.mark.parametrize("method", [m for m in METHODS if DECLARED[m].completeness])
def test_attributions_sum_to_the_score_difference(zoo, method):
    x = zoo.x(SMALL_CNN)
    values = _run(zoo, "torch", method, x)
    spec = zoo.spec(SMALL_CNN)
    want = forward(spec, x)[np.arange(3), TARGET] - forward(spec, 0 * x)[np.arange(3), TARGET]
    # per-element values repeat their feature's value: sum each feature once
    ids = np.unique(MASK)
    first = [np.argwhere(MASK[0, 0] == i)[0] for i in ids]
    sums = sum(values[:, 0, r, c] for r, c in first)
    np.testing.assert_allclose(sums, want, rtol=1e-10)


@pytest.mark.parametrize("flavor", ("torch", "keras"))
def test_no_method_changes_the_model(zoo, flavor):
    model = zoo.model(flavor, SMALL_CNN)
    before = fingerprint(model)
    x = zoo.x(SMALL_CNN)[:2]
    for method in METHODS:
        _run(zoo, flavor, method, x, target=TARGET[:2])
    assert_unchanged(model, before)
