"""The main job on the real pretrained model: predictions and files, cheap methods only."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("skimage")


def test_demo_explains_the_pretrained_efficientnet_on_the_bundled_photos(tmp_path):
    from crosslens import demo

    lines = []
    result = demo.run(str(tmp_path), methods=["saliency", "grad_cam", "cam"], log=lines.append,
                      featurevis=False)
    np.testing.assert_array_equal(result["top1"], [285, 967])  # Egyptian cat, espresso
    np.testing.assert_allclose(result["probabilities"].max(axis=1), [0.771, 0.900], atol=2e-3)
    assert "Egyptian cat" in lines[0] and "espresso" in lines[1]  # the printed top-5
    # CAM cannot apply to this head (the GAP input is a shared ReLU6 module): skipped, said
    assert "cam" in result["skipped"] and "grad_cam" in result["skipped"]["cam"]
    assert set(result["maps"]) == {"saliency", "grad_cam"}
    for name in ("methods.png", "activations.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    # Grad-CAM puts the cat's evidence on the cat: more mass in the central region
    cam = result["maps"]["grad_cam"][0]
    assert cam[56:168, 56:168].mean() > cam.mean()
