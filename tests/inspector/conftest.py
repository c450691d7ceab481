"""Tiny digit CNNs (PyTorch and Keras, the same weights) over the first 120 bundled
digits, with their inspection stores built once per session in a temporary folder."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reference.builders import build_keras, build_torch  # noqa: E402
from reference.nets import make_small_cnn, make_small_resnet  # noqa: E402

N = 120


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.images[:N] / 16.0).astype(np.float32)[..., None]  # NHWC
    return x, data.target[:N].astype(np.int64)


@pytest.fixture(scope="session")
def spec():
    return make_small_cnn(0, in_channels=1, size=8, n_classes=10)


@pytest.fixture(scope="session")
def torch_model(spec):
    import torch
    return build_torch(spec, dtype=torch.float32)


@pytest.fixture(scope="session")
def keras_model(spec):
    return build_keras(spec, dtype="float32")


@pytest.fixture(scope="session")
def torch_inspector(torch_model, digits, tmp_path_factory):
    from crosslens.inspector import Inspector
    x, y = digits
    return Inspector(torch_model, np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
                     tmp_path_factory.mktemp("inspect") / "torch", labels=y, progress=False)


@pytest.fixture(scope="session")
def keras_inspector(keras_model, digits, tmp_path_factory):
    from crosslens.inspector import Inspector
    x, y = digits
    return Inspector(keras_model, x, tmp_path_factory.mktemp("inspect") / "keras", labels=y,
                     progress=False)


@pytest.fixture(scope="session")
def static_dir(tmp_path_factory):
    """A stand-in front end (the real one is the front-end engineer's)."""
    root = tmp_path_factory.mktemp("static")
    (root / "index.html").write_text(
        "<!doctype html><html><head><link rel=\"stylesheet\" href=\"app.css\"></head><body>"
        "<div id=app></div><script type=\"module\" src=\"app.js\"></script></body></html>")
    (root / "app.js").write_text("document.getElementById('app').textContent = "
                                 "Object.keys(window.CROSSLENS_EXPORT || {}).length;\n")
    (root / "app.css").write_text("body { font: 14px sans-serif; }\n")
    return root


@pytest.fixture(scope="session")
def torch_client(torch_inspector, static_dir):
    from starlette.testclient import TestClient

    from crosslens.inspector import create_app
    with TestClient(create_app(torch_inspector, static_dir)) as client:
        yield client


@pytest.fixture(scope="session")
def resnet_spec():
    return make_small_resnet(1, in_channels=1, size=8, n_classes=10)

