"""The crosslens command: methods, explain on every loadable model kind, safe loading."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from crosslens.cli import main  # noqa: E402
from crosslens.core.errors import InputError  # noqa: E402
from crosslens.loading import load_model  # noqa: E402


def tiny_torch():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 5)).eval()


def tiny_keras():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(h))


def test_methods_lists_every_registered_method(capsys):
    import crosslens as cl

    assert main(["methods", "--markdown"]) == 0
    printed = capsys.readouterr().out
    for row in cl.methods():
        assert f"`{row['name']}`" in printed


@pytest.mark.parametrize("kind", ["torchscript", "keras", "callable"])
def test_explain_writes_png_and_the_same_attributions_as_the_api(kind, tmp_path, monkeypatch):
    import crosslens as cl
    from crosslens.cli import PREPROCESSING
    from crosslens.zoo import load_image

    if kind == "torchscript":
        model = torch.jit.script(tiny_torch())
        spec = str(tmp_path / "model.pt")
        model.save(spec)
    elif kind == "keras":
        model = tiny_keras()
        spec = str(tmp_path / "model.keras")
        model.save(spec)
    else:
        (tmp_path / "factory.py").write_text(textwrap.dedent("""
            import torch
            def build():
                torch.manual_seed(0)
                return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                           torch.nn.Linear(4, 5)).eval()
        """))
        monkeypatch.syspath_prepend(str(tmp_path))
        spec = "factory:build"
        model = tiny_torch()
    out, array = tmp_path / "out.png", tmp_path / "attr.npy"
    code = main(["explain", spec, "chelsea", "--method", "integrated_gradients", "--target", "2",
                 "--size", "32", "--preprocess", "unit", "--option", "steps=8",
                 "--out", str(out), "--save-array", str(array)])
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = load_image("chelsea", 32)[None].astype(np.float32)
    mean, std = PREPROCESSING["unit"]
    batch = (image - mean) / std
    if kind != "keras":
        batch = np.transpose(batch, (0, 3, 1, 2))
    expected = cl.explain(model, batch, "integrated_gradients", target=2, steps=8).numpy()
    np.testing.assert_allclose(np.load(array), expected, rtol=1e-5, atol=1e-7)


def test_pickled_full_model_is_refused(tmp_path):
    path = str(tmp_path / "pickled.pt")
    torch.save(tiny_torch(), path)  # a full pickle, not TorchScript
    from crosslens import LoadError
    with pytest.raises(LoadError, match="TorchScript"):
        load_model(path)


def test_cli_reports_errors_without_a_traceback(tmp_path):
    model = tiny_keras()
    spec = str(tmp_path / "model.keras")
    model.save(spec)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "crosslens", "explain", spec, "chelsea",
                             "--size", "32", "--layer", "conv9", "--out",
                             str(tmp_path / "x.png")], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "unknown layer 'conv9'" in result.stderr and "'conv'" in result.stderr
    assert "Traceback" not in result.stderr
