"""onnx2torch import with missing / broken / healthy torchvision, and load_onnx()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {src!r})
    before = set(sys.modules)
    from crosslens.translate._torchvision import import_onnx2torch, torchvision_status, TorchvisionUnavailableError
    import_onnx2torch()
    import onnx2torch.node_converters.nms as nms_mod
    import onnx2torch.node_converters.roialign as roi_mod
    leftover = sorted(k for k in sys.modules if k == "torchvision" or k.startswith("torchvision."))
    result = {{"status": torchvision_status(), "leftover": leftover,
              "nms_tv": getattr(nms_mod.torchvision, "__version__", None)}}
    try:
        roi_mod.roi_align(None, None, (1, 1))
        result["roi_align"] = "called"
    except TorchvisionUnavailableError as e:
        result["roi_align"] = "error: " + str(e)
    except Exception as e:
        result["roi_align"] = type(e).__name__
    try:
        from crosslens.translate._torchvision import import_zennit
        z = import_zennit()
        import zennit.torchvision as ztv
        result["zennit"] = ztv.ResNetBottleneck.__module__
    except ModuleNotFoundError as e:
        result["zennit"] = "missing: " + str(e)
    result["leftover_after_zennit"] = sorted(k for k in sys.modules if k == "torchvision" or k.startswith("torchvision."))
    try:
        import torchvision
        result["later_import"] = "ok " + getattr(torchvision, "__version__", "?")
    except Exception as e:
        result["later_import"] = type(e).__name__ + ": " + str(e)
    print("RESULT" + json.dumps(result))
    """
)


def _run(tmp_path, fake_torchvision: str | None):
    env = dict(os.environ)
    if fake_torchvision is not None:
        pkg = tmp_path / "fake" / "torchvision"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / "__init__.py").write_text(fake_torchvision)
        env["PYTHONPATH"] = str(tmp_path / "fake") + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(src=SRC)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def _real_torchvision_works() -> bool:
    r = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, timeout=300)
    return r.returncode == 0


def test_torchvision_broken(tmp_path):
    """A torchvision that raises on import (ABI mismatch) -> scoped stub, process left clean."""
    res = _run(tmp_path, "raise RuntimeError('operator torchvision::nms does not exist')\n")
    print(res)
    assert res["status"]["available"] is False
    assert "torchvision::nms" in res["status"]["error"]
    assert res["leftover"] == []  # stub removed from sys.modules
    assert res["nms_tv"] == "0.0.0+crosslens-stub"
    if not res["zennit"].startswith("missing"):
        assert res["zennit"] == "torchvision.models.resnet"  # placeholder classes from the stub
    assert res["leftover_after_zennit"] == []
    assert res["roi_align"].startswith("error:") and "torchvision::nms does not exist" in res["roi_align"]
    # the user's own import behaves as without crosslens
    assert res["later_import"].startswith("RuntimeError")


def test_torchvision_healthy_fake(tmp_path):
    """A working torchvision is used as is."""
    fake = textwrap.dedent(
        """
        __version__ = "9.9.9-fake"
        from . import ops
        from . import models
        """
    )
    models = tmp_path / "fake" / "torchvision" / "models"
    models.mkdir(parents=True)
    (models / "__init__.py").write_text("from . import resnet\n")
    (models / "resnet.py").write_text("class Bottleneck: pass\nclass BasicBlock: pass\n")
    pkg_ops = "def nms(*a, **k): return 'nms'\ndef box_convert(*a, **k): return 'bc'\ndef roi_align(*a, **k): return 'called'\n"
    (tmp_path / "fake" / "torchvision" / "ops.py").write_text(pkg_ops)
    res = _run(tmp_path, fake)
    print(res)
    assert res["status"]["available"] is True
    assert res["nms_tv"] == "9.9.9-fake"
    assert res["roi_align"] == "called"
    assert res["later_import"] == "ok 9.9.9-fake"


def test_torchvision_as_installed(tmp_path):
    """Whatever this environment has (here: not installed) works."""
    res = _run(tmp_path, None)
    print(res)
    if _real_torchvision_works():
        assert res["status"]["available"] is True
    else:
        assert res["status"]["available"] is False and res["leftover"] == []


def test_nms_graph_needs_torchvision_clear_error():
    import onnx
    from onnx import TensorProto, helper

    from crosslens.translate import load_onnx
    from crosslens.translate._torchvision import TorchvisionUnavailableError, import_onnx2torch, torchvision_status

    import_onnx2torch()
    if torchvision_status()["available"]:
        pytest.skip("torchvision works here")
    g = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["idx"], name="my_nms")],
        "nms",
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 4]),
        ],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [None, 3])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(TorchvisionUnavailableError, match="my_nms"):
        load_onnx(model)


# ------------------------------------------------------------------- load_onnx
def test_load_onnx_module_names(tmp_path):
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from crosslens.translate import load_onnx

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="features.conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="features/relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name=""),
        helper.make_node("MatMul", ["f", "fc"], ["y"], name="head"),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")],
    )
    path = tmp_path / "m.onnx"
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnxruntime here reads IR <= 13
    onnx.save(model, str(path))
    mod = load_onnx(path)
    names = [n for n, _ in mod.named_modules()]
    print(names)
    for expected in ("features/conv", "features/relu", "pool", "Flatten", "head"):
        assert expected in names
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = mod(x)
    y[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    import onnxruntime as ort

    ref = ort.InferenceSession(str(path)).run(None, {"x": x.detach().numpy()})[0]
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_load_onnx_unsupported_op():
    from onnx import TensorProto, helper

    from crosslens.translate import UnsupportedOpError, load_onnx

    g = helper.make_graph(
        [helper.make_node("Det", ["x"], ["y"], name="the_det")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(UnsupportedOpError, match="'Det'.*the_det"):
        load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
