"""Translation errors: every one a CrosslensError whose FIRST line names the user's layer and
the cause, raised before any export where the arguments are wrong, with the model unchanged.

Tiny models (8x8 inputs, a few units). Failing translations are computed once per module
(fixtures) and several properties asserted on each.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from crosslens.core.errors import (
    CrosslensError,
    DisconnectedError,
    InputError,
    LayerNotFoundError,
    OptionError,
    UnsupportedError,
)
from crosslens.translate import (
    ConversionError,
    MissingDependencyError,
    PrunedLayerError,
    TranslationError,
    TranslationInputError,
    TranslationOptionError,
    UnknownLayerError,
    UnsupportedModelError,
    UnsupportedOpError,
    translate,
)

_spec = importlib.util.spec_from_file_location(
    "crosslens_test_fingerprint", Path(__file__).resolve().parents[1] / "robustness" / "fingerprint.py")
_fp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fp)
fingerprint, assert_unchanged = _fp.fingerprint, _fp.assert_unchanged

RNG = np.random.default_rng(0)
X_NCHW = RNG.random((2, 3, 8, 8), dtype=np.float32)
X_NHWC = np.ascontiguousarray(X_NCHW.transpose(0, 2, 3, 1))


# ------------------------------------------------------------------------------ models
def torch_lstm_net():
    """Conv -> rows as a sequence -> ``encoder.lstm`` (nn.LSTM, nested) -> Linear."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(16, 4, batch_first=True)

        def forward(self, seq):
            out, _ = self.lstm(seq)
            return out[:, -1]

    class LstmNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3, padding=1)
            self.encoder = Encoder()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.conv(x).permute(0, 2, 1, 3).reshape(x.shape[0], 8, 16)
            return self.fc(self.encoder(y))

    return LstmNet()


def keras_lstm_net():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    y = keras.layers.Reshape((8, 24), name="rows")(inp)
    y = keras.layers.LSTM(4, name="lstm")(y)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(y), name="keras_lstm")


def torch_tiny_cnn(fragile=False):
    """conv1 -> relu -> pool -> flatten -> fc; ``unused`` never runs; ``fragile`` refuses export."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Fragile(nn.Module):
        def forward(self, x):
            if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling() or torch.jit.is_tracing():
                raise RuntimeError("this block cannot be exported")  # by any exporter strategy
            return x

    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 2, 3, padding=1)
            self.relu = nn.ReLU()
            self.guard = Fragile() if fragile else nn.Identity()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(2, 3)
            self.unused = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(self.flatten(self.pool(self.guard(self.relu(self.conv1(x))))))

    return TinyCNN().eval()


def first_line(error) -> str:
    return str(error).splitlines()[0]


def failing(call):
    """``(exception, seconds)`` of a call that must raise."""
    import time

    start = time.perf_counter()
    with pytest.raises(Exception) as info:
        call()
    return info.value, time.perf_counter() - start


# --------------------------------------------------------------- unsupported layers
@pytest.fixture(scope="module")
def torch_lstm_failure():
    model = torch_lstm_net()
    model.train()
    model.fc.eval()  # mixed modes: each module's own flag must come back
    before = fingerprint(model)
    error, _ = failing(lambda: translate(model, to="keras", example=X_NCHW, cache_dir=False))
    return model, before, error


def test_torch_lstm_to_keras_names_the_lstm(torch_lstm_failure):
    model, before, error = torch_lstm_failure
    print(error)
    assert isinstance(error, UnsupportedOpError) and isinstance(error, TranslationError)
    assert isinstance(error, CrosslensError) and isinstance(error, UnsupportedError)
    line = first_line(error)
    assert line.startswith("layer 'encoder.lstm' (LSTM) cannot be translated to Keras: ONNX op ")
    assert "is not supported by crosslens.onnx_to_keras" in line
    assert error.layer == "encoder.lstm" and error.layer_type == "LSTM"
    assert error.op_type in line and error.node_name in line
    assert "source: `out, _ = self.lstm(seq)` (test_translate_messages.py:" in str(error)  # the user's own code line
    assert "fix: " in str(error)
    assert len(line) < 250 and len(str(error)) < 1000  # no dump ahead of (or after) the cause
    assert isinstance(error.__cause__, UnsupportedOpError)  # the converter's own error, chained
    assert_unchanged(model, before)


@pytest.fixture(scope="module")
def keras_lstm_failure():
    model = keras_lstm_net()
    before = fingerprint(model)
    error, _ = failing(lambda: translate(model, to="torch", example=X_NHWC, cache_dir=False))
    return model, before, error


def test_keras_lstm_to_torch_names_the_lstm(keras_lstm_failure):
    model, before, error = keras_lstm_failure
    print(error)
    assert isinstance(error, UnsupportedOpError) and isinstance(error, CrosslensError)
    line = first_line(error)
    # tf2onnx's LSTM rewriter names the node after the op (LSTM__123), not after the layer
    assert line.startswith("layer 'lstm' (LSTM) cannot be translated to PyTorch: ONNX op 'LSTM' ")
    assert "is not supported by onnx2torch" in line and error.node_name in line
    assert error.layer == "lstm" and error.layer_type == "LSTM"
    assert len(str(error)) < 1000 and error.__cause__ is not None
    assert_unchanged(model, before)


def test_exporter_failure_names_the_module_and_the_cause():
    model = torch_tiny_cnn(fragile=True)
    before = fingerprint(model)
    error, _ = failing(lambda: translate(model, to="keras", example=X_NCHW, cache_dir=False))
    print(error)
    assert isinstance(error, ConversionError) and isinstance(error, CrosslensError)
    line = first_line(error)
    assert line == ("layer 'guard' (Fragile) cannot be translated to Keras: the PyTorch → ONNX export "
                    "failed: RuntimeError: this block cannot be exported")
    assert error.layer == "guard" and error.stage == "export"
    assert isinstance(error.__cause__, Exception) and not isinstance(error.__cause__, CrosslensError)
    assert len(str(error)) < 1500
    assert_unchanged(model, before)


def test_converter_crash_names_the_module(monkeypatch):
    """An exception inside crosslens.onnx_to_keras (not an UnsupportedOpError) still names the layer."""
    from crosslens.translate import onnx_to_keras as o2k

    def broken(self, node, ins, attrs):
        raise ValueError("broken converter")

    monkeypatch.setattr(o2k._Converter, "op_Relu", broken)
    model = torch_tiny_cnn()
    error, _ = failing(lambda: translate(model, to="keras", example=X_NCHW, cache_dir=False))
    print(error)
    assert isinstance(error, TranslationError) and isinstance(error, CrosslensError)
    line = first_line(error)
    assert line.startswith("layer 'relu' (ReLU) cannot be translated to Keras: ONNX op 'Relu'")
    assert "ValueError: broken converter" in str(error)
    chain = []
    cause = error
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__
    assert any(isinstance(c, ValueError) and str(c) == "broken converter" for c in chain)


def test_mismatch_names_the_first_layer_that_differs():
    """A model whose export differs from eager execution after ``conv``: the first line of the
    TranslationMismatchError names ``fc``, the first layer whose activation differs."""
    import torch
    from torch import nn

    from crosslens.translate import TranslationMismatchError

    class Sneaky(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            if torch.onnx.is_in_onnx_export():  # the exported graph computes something else
                y = y * 1.05
            return self.fc(y)

    model = Sneaky().eval()
    before = fingerprint(model)
    error, _ = failing(lambda: translate(model, to="keras", example=X_NCHW, cache_dir=False))
    print(error)
    assert isinstance(error, TranslationMismatchError) and isinstance(error, CrosslensError)
    line = first_line(error)
    assert line.startswith("layer 'fc' (Linear) is translated inexactly: its activation differs by rel=")
    assert "exceeds the tolerance: outputs: max|Δ|=" in line
    assert error.layer == "fc" and "accept_mismatch=True" in str(error)
    assert_unchanged(model, before)


# ------------------------------------------------------------- wrong-layout examples
def test_nhwc_example_for_torch_model_says_transpose_before_exporting():
    model = torch_lstm_net().eval()
    before = fingerprint(model)
    error, seconds = failing(lambda: translate(model, to="keras", example=X_NHWC, cache_dir=False))
    print(error)
    assert isinstance(error, TranslationInputError) and isinstance(error, InputError)
    assert isinstance(error, CrosslensError)
    line = first_line(error)
    assert "does not fit this PyTorch model" in line and "looks channels-last" in line
    assert "x.permute(0, 3, 1, 2)" in line  # the fix, on the first line
    assert "export" not in str(error).lower() and isinstance(error.__cause__, InputError)
    assert seconds < 10  # refused before the (slow) export
    assert_unchanged(model, before)


def test_nchw_example_for_keras_model_says_transpose_before_exporting():
    model = keras_lstm_net()
    before = fingerprint(model)
    error, _ = failing(lambda: translate(model, to="torch", example=X_NCHW, cache_dir=False))
    print(error)
    assert isinstance(error, TranslationInputError) and isinstance(error, CrosslensError)
    line = first_line(error)
    assert "does not fit this Keras model" in line and "looks channels-first" in line
    assert "np.transpose(x, (0, 2, 3, 1))" in line
    assert "tf2onnx" not in str(error)
    assert_unchanged(model, before)


# ------------------------------------------------- layers of a finished translation
@pytest.fixture(scope="module")
def tiny_translation(tmp_path_factory):
    model = torch_tiny_cnn()
    return model, translate(model, to="keras", example=X_NCHW, cache_dir=tmp_path_factory.mktemp("c"))


def test_unknown_layer_name(tiny_translation):
    model, tr = tiny_translation
    with pytest.raises(UnknownLayerError) as info:
        tr.layer("conv9")
    error = info.value
    assert isinstance(error, LayerNotFoundError) and isinstance(error, CrosslensError)
    assert isinstance(error, KeyError)  # as before
    assert first_line(error) == "unknown layer 'conv9' in the original model; closest valid names: 'conv1'"
    assert tr.layer("conv1") == "conv1"  # the known name still maps


def test_layer_without_counterpart(tiny_translation):
    model, tr = tiny_translation
    with pytest.raises(PrunedLayerError) as info:
        tr.layer("unused")
    assert isinstance(info.value, DisconnectedError) and isinstance(info.value, CrosslensError)
    assert first_line(info.value).startswith("layer 'unused' does not influence the model output")


# ------------------------------------------------------ arguments, before any export
def test_unsupported_model_types():
    for model, expected in ((object(), "cannot translate a builtins.object"),
                            ("net.onnx", "load_onnx"), (Path("m.keras"), "load_model")):
        error, seconds = failing(lambda: translate(model, to="torch", example=X_NCHW))
        assert isinstance(error, UnsupportedModelError) and isinstance(error, UnsupportedError)
        assert isinstance(error, CrosslensError) and isinstance(error, TypeError)
        assert expected in first_line(error), error
        assert seconds < 5


@pytest.mark.parametrize("kwargs, expected", [
    ({"to": "jax"}, "to must be 'torch' or 'keras', got 'jax'"),
    ({"to": None}, "to must be 'torch' or 'keras', got None"),
    ({"to": "torch"}, "model is already a PyTorch model"),
    ({"tolerance": {"outputs": 1e-3}}, "unknown tolerance keys ['outputs']"),
    ({"tolerance": "tight"}, "tolerance 'output' must be a finite number, got 'tight'"),
    ({"tolerance": float("nan")}, "tolerance 'output' must be a finite number"),
    ({"tolerance": -1e-3}, "tolerance 'output' bounds a relative error and must be >= 0"),
    ({"tolerance": {"cosine": 2}}, "tolerance 'cosine' is a minimum cosine in [-1, 1], got 2"),
    ({"probes": -1}, "probes must be an integer >= 0, got -1"),
    ({"probes": 2.5}, "probes must be an integer >= 0, got 2.5"),
    ({"seed": "a"}, "seed must be an integer >= 0, got 'a'"),
    ({"cache_dir": 3}, "cache_dir must be a folder path"),
    ({"accept_mismatch": "yes"}, "accept_mismatch must be True or False"),
])
def test_bad_options_are_option_errors(kwargs, expected):
    model = torch_tiny_cnn()
    before = fingerprint(model)
    kwargs = {"to": "keras", "example": X_NCHW, **kwargs}
    error, seconds = failing(lambda: translate(model, **kwargs))
    assert isinstance(error, TranslationOptionError) and isinstance(error, OptionError), error
    assert isinstance(error, CrosslensError) and isinstance(error, ValueError)  # ValueError as before
    assert expected in first_line(error), error
    assert seconds < 5
    assert_unchanged(model, before)


@pytest.mark.parametrize("example, expected", [
    (None, "needs an example input batch"),
    ("an image", "must be a numeric array"),
    ({"image": X_NCHW}, "takes one input array"),
    (X_NCHW[0, 0, 0], "must be a non-empty batch with a leading batch axis"),
    (X_NCHW[:0], "must be a non-empty batch"),
    (X_NCHW[:, :2], "expects 3 input channels"),  # the backend's own message
])
def test_bad_examples_are_input_errors(example, expected):
    model = torch_tiny_cnn()
    error, _ = failing(lambda: translate(model, to="keras", example=example, cache_dir=False))
    assert isinstance(error, TranslationInputError) and isinstance(error, InputError), error
    assert expected in first_line(error), error


def test_models_translation_does_not_cover():
    """Several inputs (both frameworks) and integer token inputs: refused before exporting."""
    import keras
    import torch
    from torch import nn

    from crosslens.translate import TranslationUnsupportedError

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, a, b):
            return self.fc(a + b)

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.fc = nn.Linear(4, 2)

        def forward(self, t):
            return self.fc(self.emb(t).mean(1))

    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    keras_two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    x = np.zeros((2, 4), np.float32)
    tokens = torch.tensor([[1, 2, 3], [4, 5, 6]])
    for model, example, expected in ((TwoInputs(), x, "PyTorch models with several inputs"),
                                     (keras_two, x, "Keras models with several inputs"),
                                     (Tokens(), tokens, "layer 'emb' (Embedding) takes integer tokens")):
        before = fingerprint(model)
        to = "keras" if isinstance(model, nn.Module) else "torch"
        error, seconds = failing(lambda: translate(model, to=to, example=example, cache_dir=False))
        assert isinstance(error, TranslationUnsupportedError) and isinstance(error, UnsupportedError)
        assert expected in first_line(error), error
        assert "implementation='crosslens'" in first_line(error) and seconds < 5
        assert_unchanged(model, before)


def test_layout_helpers_reject_bad_arguments(tiny_translation):
    from crosslens.translate import to_layout

    with pytest.raises(TranslationOptionError, match="unknown layout 'NWCH'"):
        to_layout(X_NCHW, "NWCH", "NHWC")
    _, tr = tiny_translation
    with pytest.raises(TranslationInputError, match=r"shape \(2, 8, 8\).*needs rank 4"):
        tr.activation_to_original("conv1", np.zeros((2, 8, 8)))


def test_missing_converter_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "onnx2torch" else real(name, *a, **k))
    model = keras_lstm_net()
    error, _ = failing(lambda: translate(model, to="torch", example=X_NHWC, cache_dir=False))
    assert isinstance(error, MissingDependencyError) and isinstance(error, ImportError)
    assert isinstance(error, CrosslensError)
    assert "needs the package 'onnx2torch'" in first_line(error)
    assert "pip install --no-deps onnx2torch" in first_line(error)


# ---------------------------------------------------------------------------- CLI
def test_cli_prints_translation_error_without_traceback(tmp_path, capsys):
    """``explain --implementation captum`` on a Keras LSTM goes through translation."""
    from crosslens.cli import main

    spec = str(tmp_path / "lstm.keras")
    keras_lstm_net().save(spec)
    code = main(["explain", spec, "chelsea", "--size", "8", "--preprocess", "unit",
                 "--implementation", "captum", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    print(err)
    assert code == 2
    assert err.startswith("crosslens: error: layer 'lstm' (LSTM) cannot be translated to PyTorch")
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_cli_torch_lstm_through_tf_keras_vis(tmp_path, capsys, monkeypatch):
    from crosslens.cli import main

    pytest.importorskip("tf_keras_vis")
    (tmp_path / "lstm_factory.py").write_text(textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from test_translate_messages import torch_lstm_net

        def build():
            return torch_lstm_net().eval()
    """ % str(Path(__file__).resolve().parent)))
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["explain", "lstm_factory:build", "chelsea", "--size", "8", "--preprocess", "unit",
                 "--implementation", "tf-keras-vis", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    print(err)
    assert code == 2
    assert err.startswith("crosslens: error: layer 'encoder.lstm' (LSTM) cannot be translated to Keras")
    assert "Traceback" not in err


def test_python_m_crosslens_exit_code_and_no_traceback(tmp_path):
    """The real command line: ``python -m crosslens explain`` with a translation error."""
    spec = str(tmp_path / "lstm.keras")
    keras_lstm_net().save(spec)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "crosslens", "explain", spec, "chelsea", "--size", "8", "--preprocess",
         "unit", "--implementation", "captum", "--out", str(tmp_path / "x.png")],
        capture_output=True, text=True, env=env, timeout=300)
    print(result.stderr[-3000:])
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("crosslens: error:")]
    assert lines and lines[0].startswith("crosslens: error: layer 'lstm' (LSTM) cannot be translated")
    assert "Traceback" not in result.stderr
