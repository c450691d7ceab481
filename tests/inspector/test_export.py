"""The static export: the front end inlined, the responses embedded under the canonical
keys of the contract; and ``crosslens inspect --export`` from the command line."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from crosslens.core.errors import InputError
from crosslens.inspector import export_html
from crosslens.inspector.app import STATIC


def read_export(html: str) -> dict:
    match = re.search(r"const R=(.*?);window\.CROSSLENS_EXPORT=\{(.*?)\};\}\)\(\);",
                      html, re.S)
    values = json.loads(match.group(1))
    out = {}
    for key, index in re.findall(r'("(?:[^"\\]|\\.)*"):R\[(\d+)\]', match.group(2)):
        out[json.loads(key)] = values[int(index)]
    return out


def test_export_inlines_the_front_end_and_embeds_the_views(torch_inspector, static_dir,
                                                           tmp_path):
    path = export_html(torch_inspector, tmp_path / "page.html", static_dir=static_dir,
                       instances=2, methods=("saliency",), channels=2)
    html = path.read_text()
    assert 'src="app.js"' not in html and 'href="app.css"' not in html
    assert "font: 14px sans-serif" in html and "document.getElementById('app')" in html
    assert html.index("window.CROSSLENS_EXPORT") < html.index("document.getElementById")
    data = read_export(html)
    assert data["GET /api/session"]["export"] is True
    layer = torch_inspector.default_layer
    assert data[f"GET /api/matrix?layer={layer}&sort=variance"] == \
        json.loads(json.dumps(torch_inspector.matrix(layer, "variance")))
    a, b = torch_inspector.default_pair()
    assert data[f"GET /api/matrix?a={a.replace(':', '%3A')}&b={b.replace(':', '%3A')}"
                f"&layer={layer}&sort=difference"]["order"] == \
        torch_inspector.matrix(layer, "difference", a, b)["order"]
    assert data[f"GET /api/projection?layer={layer}&method=pca"] is \
        data[f"GET /api/projection?layer={layer}"]  # one object, two keys
    assert data["GET /api/instances?limit=100&offset=0&subset=all"]["total"] == 120
    assert data["GET /api/attribution?index=0&method=saliency&target=predicted"]["method"] == \
        "saliency"
    channel = torch_inspector.matrix("conv2", "variance")["order"][0]
    assert data[f"GET /api/channel?channel={channel}&index=0&layer=conv2"]["top"]
    assert "GET /api/graph" in data and "GET /api/subsets" in data


def test_export_refuses_a_script_with_imports(torch_inspector, static_dir, tmp_path):
    for name in ("index.html", "app.css"):
        (tmp_path / name).write_text((static_dir / name).read_text())
    (tmp_path / "app.js").write_text("import { x } from './api.js';\nx();\n")
    with pytest.raises(InputError, match="app.js imports"):
        export_html(torch_inspector, tmp_path / "page.html", static_dir=tmp_path,
                    instances=1, methods=(), channels=1)


@pytest.mark.skipif(not (STATIC / "index.html").exists(), reason="front end not installed")
def test_cli_export_with_the_real_front_end(tmp_path, digits):
    from crosslens.cli import main
    x, _ = digits
    np.save(tmp_path / "x.npy", np.ascontiguousarray(x[:40].transpose(0, 3, 1, 2)))
    tests = Path(__file__).resolve().parents[1]
    (tmp_path / "model.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tests)!r})\nimport torch\n"
        "from reference.nets import make_small_cnn\nfrom reference.builders import build_torch\n"
        "def build():\n    return build_torch(make_small_cnn(0, in_channels=1, size=8, "
        "n_classes=10), dtype=torch.float32)\n")
    page = tmp_path / "page.html"
    assert main(["inspect", f"{tmp_path / 'model.py'}:build", "--data",
                 str(tmp_path / "x.npy"), "--store", str(tmp_path / "store"),
                 "--export", str(page)]) == 0
    html = page.read_text()
    assert re.search(r"<script[^>]*\bsrc=", html) is None
    assert re.search(r"<link[^>]*stylesheet", html) is None
    assert read_export(html)["GET /api/session"]["dataset"]["size"] == 40
