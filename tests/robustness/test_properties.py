"""Property-based calls: methods, shapes, dtypes, targets, layers and option values drawn
at random (from the method registry) on tiny models of both frameworks.

The only outcomes allowed are a :class:`crosslens.CrosslensError` or a finite answer —
equal to the closed-form reference where one exists (the linear models) — and in every
case the model is unchanged. Examples are derandomized, so CI runs the same ones.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import crosslens as cl
from crosslens.core.arrays import to_numpy
from crosslens.core.registry import all_methods

from . import models as M
from .catalogue import to_nchw
from .fingerprint import assert_unchanged, fingerprint

METHODS = [spec.name for spec in all_methods()]
KINDS = ("linear", "cnn", "mlp", "series", "tokens", "two_inputs")
SHARED = dict(deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))

MODELS = {
    "torch": {"linear": M.torch_linear, "cnn": lambda: M.torch_cnn("train"), "mlp": M.torch_mlp,
              "series": M.torch_conv1d, "tokens": M.torch_tokens,
              "two_inputs": M.torch_two_inputs},
    "keras": {"linear": M.keras_linear, "cnn": M.keras_cnn, "mlp": M.keras_mlp,
              "series": M.keras_conv1d, "tokens": M.keras_tokens,
              "two_inputs": M.keras_two_inputs},
}
LAYERS = {
    "torch": {"linear": ["1"], "cnn": ["0", "2", "4"], "mlp": ["0", "1"], "series": ["0", "1"],
              "tokens": ["emb", "fc"], "two_inputs": ["a", "b"]},
    "keras": {"linear": ["fc", "to_nchw"], "cnn": ["conv", "relu", "gap"], "mlp": ["hidden"],
              "series": ["conv"], "tokens": ["emb", "fc"], "two_inputs": ["fa", "perm"]},
}


def make_input(fw: str, kind: str, n: int, dtype: str, seed: int):
    r = M.rng(seed)
    if kind in ("linear", "cnn"):
        x = r.standard_normal((n,) + M.IMAGE)
        x = x if fw == "torch" else np.moveaxis(x, 1, -1)
    elif kind == "mlp":
        x = r.standard_normal((n, 6))
    elif kind == "series":
        x = r.standard_normal((n, 3, 10) if fw == "torch" else (n, 10, 3))
    elif kind == "tokens":
        return r.integers(0, 20, (n, 6))
    else:
        a, b = r.standard_normal((n,) + M.IMAGE).astype(dtype), r.standard_normal((n, 4))
        return (a, b.astype(dtype)) if fw == "torch" else {"a": np.moveaxis(a, 1, -1),
                                                            "b": b.astype(dtype)}
    return np.ascontiguousarray(x).astype(dtype)


def option_values(annotation: str, default, clean: bool):
    """Values of the annotated type (in range when ``clean``), else also of the wrong
    type and out of range."""
    text = annotation if isinstance(annotation, str) else ""
    first = text.split("|")[0].strip()
    if clean:
        if first == "int":
            return st.integers(1, 4)
        if first == "float":
            return st.floats(0.05, 1.0)
        if first == "bool":
            return st.booleans()
        return st.just(default)
    wrong = st.sampled_from(["x", None, [1, 2], float("nan"), -3])
    if first == "int":
        return st.one_of(st.integers(-1, 6), st.floats(0.5, 4.5), wrong)
    if first == "float":
        return st.one_of(st.floats(-1.0, 2.0, allow_nan=False), wrong)
    if first == "bool":
        return st.one_of(st.booleans(), wrong)
    return st.one_of(st.just(default), wrong, st.sampled_from(["zeros", "blur", 0.0, 2, (2, 2)]))


#: The methods with a closed form on the linear models are drawn more often.
REFERENCED = ["saliency", "gradient_x_input", "integrated_gradients", "smoothgrad"]


@st.composite
def calls(draw, fw: str, focused: bool = False):
    """A call; ``focused``: a well-formed call of a method with a closed form on the linear
    model (so the answer is compared with it)."""
    clean = focused or draw(st.booleans())
    kind = "linear" if focused else draw(st.sampled_from(KINDS + ("linear",) * 2))
    method = draw(st.sampled_from(REFERENCED if focused else METHODS + REFERENCED * 2))
    n = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float32", "float32", "float64", "float16"]))
    x = make_input(fw, kind, n, dtype, draw(st.integers(0, 3)))
    valid_targets = [st.just("predicted"), st.integers(0, 1),
                     st.lists(st.integers(0, 1), min_size=n, max_size=n),
                     st.just(lambda out: out[:, 0] - out[:, 1])]
    target = draw(st.one_of(*valid_targets) if clean else st.one_of(
        *valid_targets, st.integers(-1, 6), st.sampled_from(["nope", 2.5, None])))
    options = {}
    spec = next(s for s in all_methods() if s.name == method)
    params = inspect.signature(spec.fn).parameters
    for name in spec.options:
        if draw(st.integers(0, 3)) == 0:
            options[name] = draw(option_values(params[name].annotation, params[name].default,
                                               clean))
    # keep sampling methods cheap: their defaults evaluate thousands of points
    if "samples" in spec.options and "samples" not in options:
        options["samples"] = 3
    if "steps" in spec.options and "steps" not in options:
        options["steps"] = 4
    if focused:
        return kind, method, x, draw(st.one_of(st.integers(0, 4), st.lists(
            st.integers(0, 4), min_size=n, max_size=n))), {
            k: v for k, v in options.items() if k in ("samples", "steps")}
    if draw(st.integers(0, 2)) == 0:
        layers = LAYERS[fw][kind] + ([] if clean else ["nope", "fc#1"])
        options["layer"] = draw(st.sampled_from(layers))
    for name, values in (("reduce_channels", [None, "sum", "l2", "bad"]),
                         ("normalize", [None, "max_abs", "minmax", "odd"]),
                         ("abs", [False, True]), ("seed", [None, 0, 7, -1])):
        if draw(st.integers(0, 4)) == 0:
            options[name] = draw(st.sampled_from(values[:-1] if clean and name != "abs"
                                                 else values))
    return kind, method, x, target, options


def linear_reference(method: str, x, target, options):
    """Closed-form answer on the linear model, or ``None`` when there is none to compare."""
    # IG on a linear model is exact for any rule and number of steps whose weights sum to
    # 1; SmoothGrad of a linear model is its gradient whatever the noise
    if method not in REFERENCED or set(options) - {"seed", "samples", "steps"} \
            or isinstance(target, str) or callable(target) or target is None:
        return None
    return method


def check(fw: str, kind: str, method: str, x, target, options,
          require_reference: bool = False) -> None:
    model = MODELS[fw][kind]()
    before = fingerprint(model)
    try:
        exp = cl.explain(model, x, method, target=target, **options)
    except cl.CrosslensError as error:
        assert not require_reference, error
        event(f"error: {type(error).__name__}")
        assert_unchanged(model, before)
        return
    event(f"answer: {method}")
    values = exp.numpy()
    leaves = list(values.values()) if isinstance(values, dict) else (
        list(values) if isinstance(values, (tuple, list)) else [values])
    for leaf in leaves:
        assert np.isfinite(np.asarray(leaf, np.float64)).all(), (method, options)
    assert_unchanged(model, before)
    referenced = kind == "linear" and linear_reference(method, x, target, options)
    assert referenced or not require_reference
    if referenced:
        xs = to_nchw(fw, np.asarray(to_numpy(x), np.float64))
        w, _ = M.linear_weights()
        c = np.broadcast_to(np.asarray(target), (len(xs),))
        grad = w[c].reshape(xs.shape)
        want = grad * xs if method in ("gradient_x_input", "integrated_gradients") else grad
        got = to_nchw(fw, np.asarray(values, np.float64))
        event("compared with the closed form")
        tol = 2e-2 if np.asarray(x).dtype == np.float16 else 1e-4
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


@settings(max_examples=300, **SHARED)
@given(call=calls("torch"))
def test_torch_calls_raise_a_crosslens_error_or_answer_right(call):
    check("torch", *call)


@settings(max_examples=220, **SHARED)
@given(call=calls("keras"))
def test_keras_calls_raise_a_crosslens_error_or_answer_right(call):
    check("keras", *call)


@settings(max_examples=60, **SHARED)
@given(call=calls("torch", focused=True))
def test_torch_linear_answers_equal_the_closed_form(call):
    check("torch", *call, require_reference=True)


@settings(max_examples=60, **SHARED)
@given(call=calls("keras", focused=True))
def test_keras_linear_answers_equal_the_closed_form(call):
    check("keras", *call, require_reference=True)


def test_properties_cover_every_method_and_kind():
    """The strategies can reach every registered method and model kind."""
    assert set(METHODS) == {spec.name for spec in all_methods()} and len(METHODS) >= 20
    assert math.prod(len(v) for v in (KINDS, METHODS)) > 100
    assert pytest  # noqa: the module imports pytest for the marker machinery
