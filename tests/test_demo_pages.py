"""The demo's inspection pages: the shortcut of the Clever-Hans digits CNN is visible in
the matrix, the channel view and the projection; EfficientNet-Lite0 over the photos."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("starlette")


def _static_page_ok(page) -> str:
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") or html.lower().startswith("<!doctype html>")
    assert "src=\"http" not in html and "href=\"http" not in html  # nothing from a network
    return html


def test_digits_page_shows_the_watermark_shortcut(tmp_path):
    from crosslens.demo_inspect import CLASS_NAMES, digits_page

    result = digits_page(tmp_path, log=lambda line: None)
    inspector, store = result["inspector"], result["store"]
    assert len(store) == 1797 and store.complete
    assert inspector.class_names == CLASS_NAMES
    share = result["watermark_share"]
    # 6 % of the pixels carry a quarter of the saliency of the clean class (the missing
    # patch is evidence too) and more of the watermarked one's
    assert share[1] > share[0] > 3 * 0.0625
    # Matrix: the channel firing most more on the watermarked class than on the other
    # fires on the corner patch: its nine most activating digits are watermarked, the
    # region at the corner.
    labels = store.column("labels")
    layer = inspector.default_layer  # the last convolution's ReLU
    matrix = inspector.matrix(layer, "difference", a="label:0", b="label:1")
    rows = {row["subset"]: np.asarray(row["values"]) for row in matrix["rows"]}
    gain = rows["label:1"] - rows["label:0"]  # in the matrix's column order
    assert np.argmax(np.abs(gain)) == 0 and gain[0] > 0  # the first column
    top = inspector.channel(layer, matrix["order"][0], 0)["top"]
    assert len(top) == 9 and all(labels[t["index"]] == 1 for t in top)
    assert all(t["box"][:2] == [0, 0] for t in top)
    # Projection: the first principal component alone separates the two classes.
    projection = inspector.projection(inspector.default_layer, "pca")
    first = np.asarray(projection["points"])[:, 0]
    label = np.asarray(projection["label"])
    accuracy = max(np.mean((first > t) == label) for t in np.unique(first))
    assert max(accuracy, 1 - accuracy) > 0.95
    # Live: the frames (watermarked digit, then the same digit clean) follow the data set.
    assert [f["name"] for f in inspector.instances.frames()][:2] == ["0a_patch.png",
                                                                     "0b_clean.png"]
    html = _static_page_ok(result["page"])
    assert "Clever-Hans digits CNN" in html


def test_photos_page_of_the_pretrained_lite0(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("skimage")
    from crosslens.demo_inspect import PHOTOS, photos_page

    result = photos_page(tmp_path, log=lambda line: None, featurevis_channels=0)
    inspector = result["inspector"]
    predictions = inspector.store.column("predictions")
    assert len(predictions) == len(PHOTOS)
    assert predictions[PHOTOS.index("chelsea")] == 285  # Egyptian cat, as in the demo
    assert predictions[PHOTOS.index("coffee")] == 967  # espresso
    html = _static_page_ok(result["page"])
    assert "EfficientNet-Lite0" in html
