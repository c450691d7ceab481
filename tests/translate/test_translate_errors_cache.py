"""Cache behaviour and clear errors (unsupported op, tolerance, bad arguments)."""

from __future__ import annotations

import time

import numpy as np
import pytest

import _translate_models as M

from crosslens.translate import (
    TranslationMismatchError,
    clear_memory_cache,
    UnsupportedOpError,
    translate,
)


def _print(tr, title):
    print(f"\n===== {title} =====\n{tr.report}", flush=True)
    return tr


# ------------------------------------------------------------------------ cache
def test_cache_torch_to_keras_hit_and_invalidation(cache_dir):
    import torch

    m = M.torch_small_cnn()
    x = M.example_nchw()
    first = _print(translate(m, to="keras", example=x, cache_dir=cache_dir), "torch -> keras (cold)")
    assert not first.report.cache_hit
    clear_memory_cache()  # force the on-disk path
    t0 = time.perf_counter()
    second = _print(translate(m, to="keras", example=x, cache_dir=cache_dir), "torch -> keras (disk cache)")
    dt = time.perf_counter() - t0
    print(f"disk cache hit took {dt:.3f} s")
    assert second.report.cache_hit and dt < 1.0
    t0 = time.perf_counter()
    again = translate(m, to="keras", example=x, cache_dir=cache_dir)
    dt = time.perf_counter() - t0
    print(f"in-process cache hit took {dt:.3f} s")
    assert again.report.cache_hit and again.translated is second.translated and dt < 0.5
    assert second.report.verification.from_cache and second.report.verification.passed
    out1 = np.asarray(first.translated(first.convert_input(x)))
    out2 = np.asarray(second.translated(second.convert_input(x)))
    np.testing.assert_array_equal(out1, out2)
    assert second.layer("conv2") == first.layer("conv2")
    # change one weight -> new translation
    with torch.no_grad():
        m.fc2.bias[0] += 1.0
    third = _print(translate(m, to="keras", example=x, cache_dir=cache_dir), "torch -> keras (weight changed)")
    assert not third.report.cache_hit
    assert third.report.cache_key != first.report.cache_key
    with torch.no_grad():
        ref = m(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(third.translated(third.convert_input(x))), ref, rtol=1e-5, atol=1e-5)


def test_cache_keras_to_torch_hit_and_invalidation(cache_dir, monkeypatch):
    import torch

    monkeypatch.setenv("CROSSLENS_CACHE", str(cache_dir))  # cache_dir=None -> $CROSSLENS_CACHE
    m = M.keras_small_resnet()
    x = M.example_nhwc()
    first = _print(translate(m, to="torch", example=x), "keras -> torch (cold)")
    assert not first.report.cache_hit and str(cache_dir) in first.report.cache_path
    clear_memory_cache()
    t0 = time.perf_counter()
    second = _print(translate(m, to="torch", example=x), "keras -> torch (cache)")
    dt = time.perf_counter() - t0
    print(f"cache hit took {dt:.3f} s")
    assert second.report.cache_hit and dt < 1.0
    xt = torch.as_tensor(second.convert_input(x))
    with torch.no_grad():
        np.testing.assert_allclose(second.translated(xt).numpy(), first.translated(xt).numpy(), rtol=0, atol=0)
    assert second.layer("b1_add") == first.layer("b1_add")
    w = m.get_layer("logits").get_weights()
    w[1][0] += 1.0
    m.get_layer("logits").set_weights(w)
    third = translate(m, to="torch", example=x)
    assert not third.report.cache_hit
    with torch.no_grad():
        out = third.translated(xt).numpy()
    np.testing.assert_allclose(out, np.asarray(m(x)), rtol=1e-5, atol=1e-6)


def test_cache_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSLENS_CACHE", str(tmp_path / "c"))
    m = M.keras_small_cnn()
    tr = translate(m, to="torch", example=M.example_nhwc(), cache_dir=False)
    assert tr.report.cache_key is None and not (tmp_path / "c").exists()


# ----------------------------------------------------------------------- errors
def test_mismatch_error_and_accept(cache_dir):
    m = M.torch_small_cnn()
    x = M.example_nchw()
    with pytest.raises(TranslationMismatchError) as ei:
        translate(m, to="keras", example=x, tolerance={"output": 1e-12, "gradient": 1e-12}, cache_dir=cache_dir)
    msg = str(ei.value)
    print(msg)
    assert "exceeds the tolerance" in msg and "outputs: max|Δ|=" in msg and "rel=" in msg and "accept_mismatch" in msg
    assert ei.value.report.verification is not None and not ei.value.report.verification.passed
    assert not list(cache_dir.glob("*/meta.json"))  # a failed translation is not cached
    tr = _print(
        translate(m, to="keras", example=x, tolerance=1e-12, accept_mismatch=True, cache_dir=cache_dir),
        "accepted mismatch",
    )
    assert not tr.report.verification.passed
    assert any("above tolerance" in w for w in tr.report.warnings)


def test_mismatch_is_real_not_only_tolerance(cache_dir):
    """A model whose exported graph differs from eager execution is caught by verification."""
    import torch
    from torch import nn

    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            if torch.onnx.is_in_onnx_export():  # export sees a different function
                y = y * 1.01
            return self.fc(y)

    m = Sneaky().eval()
    with pytest.raises(TranslationMismatchError, match="outputs"):
        translate(m, to="keras", example=M.example_nchw(), cache_dir=cache_dir)


def test_unsupported_op_torch_to_keras(cache_dir):
    from torch import nn

    class WithCumsum(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).cumsum(dim=3).mean((2, 3))

    with pytest.raises(UnsupportedOpError) as ei:
        translate(WithCumsum().eval(), to="keras", example=M.example_nchw(), cache_dir=cache_dir)
    msg = str(ei.value)
    print(msg)
    assert ei.value.op_type == "CumSum" and ei.value.node_name and ei.value.node_name in msg
    assert "'CumSum'" in msg and "crosslens.onnx_to_keras" in msg


def test_unsupported_op_keras_to_torch(cache_dir):
    import keras

    inp = keras.Input((4, 4), name="mat")
    y = keras.layers.Dense(4, name="dense")(inp)
    y = keras.layers.Lambda(lambda t: keras.ops.expand_dims(keras.ops.linalg.det(t), -1), name="det")(y)
    m = keras.Model(inp, y, name="with_det")
    x = np.random.default_rng(0).random((2, 4, 4), dtype=np.float32)
    with pytest.raises(UnsupportedOpError) as ei:
        translate(m, to="torch", example=x, cache_dir=cache_dir)
    msg = str(ei.value)
    print(msg)
    assert ei.value.op_type == "Det" and "onnx2torch" in msg and ei.value.node_name in msg


def test_bad_arguments():
    m = M.torch_small_cnn()
    with pytest.raises(ValueError, match="to must be"):
        translate(m, to="jax", example=M.example_nchw())
    with pytest.raises(ValueError, match="already"):
        translate(m, to="torch", example=M.example_nchw())
    with pytest.raises(TypeError):
        translate(object(), to="torch", example=M.example_nchw())
