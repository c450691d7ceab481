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
    result = demo.run(str(tmp_path), methods=["saliency", "grad_cam", "cam", "rise"],
                      log=lines.append, featurevis=False, pages=False)
    np.testing.assert_array_equal(result["top1"], [285, 967])  # Egyptian cat, espresso
    np.testing.assert_allclose(result["probabilities"].max(axis=1), [0.771, 0.900], atol=2e-3)
    assert "Egyptian cat" in lines[0] and "espresso" in lines[1]  # the printed top-5
    # CAMs default to the head's post-activation output, the last call of the shared ReLU6
    # module "_swish" (the pre-activation _bn1 is 93 % negative: all-zero maps), where the
    # head is GAP + dense, so CAM applies
    assert not result["skipped"]
    assert set(result["maps"]) == {"saliency", "grad_cam", "cam", "rise"}
    assert result["info"]["grad_cam"]["cam_layer"] == result["info"]["cam"]["cam_layer"] \
        == "_swish#1"
    for name in ("methods.png", "activations.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (tmp_path / "methods.html").read_text()
    # Grad-CAM puts the cat's evidence on the cat: more mass in the central region
    for name in ("grad_cam", "cam"):
        cam = result["maps"][name][0]
        assert (cam > 0).mean() > 0.5 and cam[56:168, 56:168].mean() > cam.mean(), name

    # What a user sees: RISE sits on an offset (about the mean score), so it is shown
    # min-max and spans the whole colour range; saliency keeps zero at white.
    rise, rise_scales = result["maps"]["rise"], result["scales"]["rise"]
    for amap, scale in zip(rise, rise_scales):
        assert amap.min() > 0 and scale.mode == "minmax"
        assert (scale.vmin, scale.vmax) == (amap.min(), amap.max())
        position = scale.position(amap)
        assert position.min() == 0.0 and position.max() == 1.0
    assert all(s.signed and s.vmin == -s.vmax for s in result["scales"]["saliency"])
    # the report has one legend with a row per method and the ranges the bars show
    report = (tmp_path / "methods.html").read_text()
    assert report.count('<table class="crosslens-legend">') == 1
    for name, scales in result["scales"].items():
        row = report.split(f"<tr><td>{name}</td>")[1].split("</tr>")[0]
        assert ("signed, diverging" if scales[0].signed else "unsigned, sequential") in row
        for scale in scales:
            assert f"<td>{scale.range_text()}</td>" in row
