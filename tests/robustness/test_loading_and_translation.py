"""Models given as paths, and calls that need a translation: every failure is a specific
CrosslensError naming cause and fix (the CLI prints it without a traceback)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import crosslens as cl
from crosslens.cli import main
from crosslens.loading import load_model

from . import models as M
from .catalogue import image
from .fingerprint import assert_unchanged, fingerprint


def _load_error(spec, *words):
    with pytest.raises(cl.LoadError) as raised:
        load_model(spec)
    message = str(raised.value).lower()
    assert all(word.lower() in message for word in words), raised.value
    return raised.value


def test_corrupt_keras_file(tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip archive")
    _load_error(str(path), "not a valid .keras archive", "corrupt")


def test_truncated_keras_file(tmp_path):
    model = M.keras_mlp()
    path = tmp_path / "net.keras"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _load_error(str(path), "net.keras")


def test_pickled_torch_model(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(M.torch_mlp(), path)
    _load_error(str(path), "not a torchscript archive", "torch.jit.script")


def test_unknown_file_kind_and_directory(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\x89HDF")
    _load_error(str(path), "unknown file kind", ".keras")
    _load_error(str(tmp_path), "is a directory")


def test_model_file_that_does_not_exist(tmp_path):
    _load_error(str(tmp_path / "nowhere:v2.keras"), "does not exist")


def test_factory_file_and_errors(tmp_path):
    source = tmp_path / "robust_factory.py"
    source.write_text(textwrap.dedent("""
        import torch

        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(6, 3)).eval()

        def broken():
            raise RuntimeError("weights missing")

        NOT_CALLABLE = 3
    """))
    model = load_model(f"{source}:build")
    x = M.rng(4).standard_normal((4, 6)).astype(np.float32)
    got = cl.explain(f"{source}:build", x, "saliency", target=1).numpy()
    np.testing.assert_allclose(got, np.tile(model[0].weight.detach().numpy()[1], (4, 1)),
                               rtol=1e-6)
    _load_error(f"{source}:broken", "raised runtimeerror", "weights missing")
    _load_error(f"{source}:missing", "has no attribute 'missing'", "build")


def test_torchscript_round_trip(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.script(M.torch_linear()).save(str(path))
    x = image("torch")
    np.testing.assert_allclose(cl.explain(str(path), x, "saliency", target=1).numpy(),
                               cl.explain(M.torch_linear(), x, "saliency", target=1).numpy(),
                               rtol=1e-6)


def test_cli_prints_load_errors_without_a_traceback(tmp_path, capsys):
    image_path = tmp_path / "x.png"
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image_path)
    code = main(["explain", "no_such_module_abc:build", str(image_path), "--size", "8"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("crosslens: error: cannot import")
    assert "Traceback" not in err
    (tmp_path / "notes.png").write_text("not an image")
    for picture in (str(tmp_path / "notes.png"), "no_such_sample"):
        code = main(["explain", f"{tmp_path / 'robust_cli.py'}:build", picture])
        err = capsys.readouterr().err
        assert code == 2 and "crosslens: error:" in err and "Traceback" not in err, err
        assert "image" in err


@pytest.fixture(autouse=True)
def _cli_factory(tmp_path):
    (tmp_path / "robust_cli.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(),"
        " torch.nn.Linear(3 * 224 * 224, 2)).eval()\n")


# --- translation --------------------------------------------------------------------------

def _torch_lstm_classifier():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lstm, self.fc = torch.nn.LSTM(3, 4, batch_first=True), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.lstm(x)[0][:, -1])
    return Net().eval()


def test_translation_failure_names_the_users_layer():
    model = _torch_lstm_classifier()
    x = M.rng(2).standard_normal((2, 7, 3)).astype(np.float32)
    before = fingerprint(model)
    with pytest.raises(cl.CrosslensError) as raised:
        cl.explain(model, x, "saliency", target=1, implementation="tf-keras-vis")
    first_line = str(raised.value).splitlines()[0]
    assert "'lstm'" in first_line and "LSTM" in first_line, first_line
    assert_unchanged(model, before)


def test_translation_with_a_wrong_layout_example_says_so_first():
    model = M.torch_cnn("eval")
    before = fingerprint(model)
    with pytest.raises(cl.InputError) as raised:
        cl.explain(model, image("keras"), "saliency", target=1, implementation="tf-keras-vis")
    assert "channels-last" in str(raised.value).splitlines()[0]
    assert_unchanged(model, before)
