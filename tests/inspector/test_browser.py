"""The inspection page end to end in headless Chromium: the real server (``create_app`` under
uvicorn on 127.0.0.1) on the tiny digit CNN of conftest.py, driven like a user would, with
every view's content checked against the API's own answers; and the static export opened
from ``file://`` without a single network request.

Screenshots of each view go to ``out/screenshots/inspector/`` (git-ignored).
"""
from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from browser import chromium_page  # noqa: E402

SHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots" / "inspector"
VIEWS = ("graph", "matrix", "projection", "instance", "channel", "blocks", "live")
WAIT_MS = 20_000  # every wait is bounded
VIEWPORT = {"width": 1440, "height": 1000}


# --- the server ---------------------------------------------------------------------------

class Server:
    """uvicorn serving ``create_app(inspector)`` on a free 127.0.0.1 port, in a thread."""

    def __init__(self, inspector) -> None:
        from crosslens.inspector import create_app
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.inspector = inspector
        self.url = f"http://127.0.0.1:{port}/"
        config = uvicorn.Config(create_app(inspector), host="127.0.0.1", port=port,
                                log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)

    def get(self, path: str):
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.inspector.jobs.stop()


@pytest.fixture(scope="module")
def server(torch_model, digits, tmp_path_factory):
    from crosslens.inspector import Inspector
    x, y = digits
    inspector = Inspector(torch_model, np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
                          tmp_path_factory.mktemp("browser") / "store", labels=y,
                          progress=False, name="tiny_cnn")
    running = Server(inspector)
    yield running
    running.stop()


class Page:
    """A page on the server with its requests and console errors recorded."""

    def __init__(self, page, base: str) -> None:
        self.page, self.base = page, base
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.set_default_timeout(WAIT_MS)
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        # The browser logs each 4xx answer as an error; those the page expects are shown inline.
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                and not m.text.startswith("Failed to load resource") else None)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']")

    def ready(self, view: str) -> None:
        self.page.wait_for_selector(f"#view-{view}[data-state=ready]")

    def shot(self, name: str, view: str | None = None) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        # The sticky header would cover a view scrolled under it.
        self.page.add_style_tag(content=".top { position: static !important; }")
        target = self.page.locator(f"#view-{view}") if view else self.page
        target.screenshot(path=str(SHOTS / f"{name}.png"))

    def check_clean(self) -> None:
        assert not self.errors, self.errors
        foreign = [u for u in self.requests if not u.startswith((self.base, "data:"))]
        assert not foreign, foreign


@pytest.fixture
def page(server):
    with chromium_page(viewport=VIEWPORT) as raw:
        p = Page(raw, server.url)
        yield p
        p.check_clean()


def layer_of(server, kind: str) -> str:
    return next(l["name"] for l in server.get("/api/session")["layers"] if l["type"] == kind)


# --- live page ------------------------------------------------------------------------------

def test_page_shows_every_view_with_legends(server, page):
    page.open(server.url)
    p = page.page
    session = server.get("/api/session")
    for view in VIEWS:
        page.ready(view)
    header = p.inner_text("[data-testid=header]")
    assert "tiny_cnn" in header and "120 instances" in header
    assert p.input_value("[data-testid=layer-select]") == session["default_layer"]
    # Graph: every layer is a selectable node showing its type and output shape.
    for layer in session["layers"]:
        node = p.locator(f"[data-testid=graph-node][data-layer='{layer['name']}']")
        assert layer["type"] in node.inner_text()
        assert "×".join(map(str, layer["shape"])) in node.inner_text()
    selected = p.locator("[data-testid=graph-node].selected")
    assert selected.get_attribute("data-layer") == session["default_layer"]
    # Matrix: one row per subset, in the API's order, columns in the API's order, colour bar.
    matrix = server.get(f"/api/matrix?layer={session['default_layer']}&sort=variance")
    rows = p.locator("[data-testid=matrix-row]")
    assert [rows.nth(i).get_attribute("data-subset") for i in range(rows.count())] == \
        [r["subset"] for r in matrix["rows"]]
    canvas = p.locator("[data-testid=matrix-canvas]")
    assert canvas.get_attribute("data-columns") == ",".join(map(str, matrix["order"]))
    bar = p.inner_text("[data-testid=matrix-colorbar]")
    assert "mean activation" in bar
    # Projection: every instance a point, a legend entry per label with its count.
    assert p.get_attribute("[data-testid=projection-canvas]", "data-points") == "120"
    labels = np.asarray(server.get("/api/projection?layer="
                                   f"{session['default_layer']}&method=pca")["label"])
    legend = p.locator("[data-testid=legend-item]").all_inner_texts()
    assert legend == [f"{c} ({(labels == c).sum()})" for c in sorted(set(labels.tolist()))]
    # Instance: its image decoded, the label and five predictions.
    assert p.evaluate("document.querySelector('[data-testid=instance-image]').naturalWidth") > 0
    assert p.locator("[data-testid=top5] .bar").count() == 5
    inst = server.get("/api/instance?index=0")
    assert p.inner_text("[data-testid=instance-label]") == inst["label_name"]
    # One page that fits the screen's width (no sideways scrolling), also on a small screen.
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.shot("page")
    p.set_viewport_size({"width": 900, "height": 900})
    p.wait_for_timeout(400)  # the views redraw after a resize (debounced)
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.shot("page-900px")
    p.set_viewport_size(VIEWPORT)
    p.wait_for_timeout(400)
    for view in VIEWS:
        page.shot(view, view)


def test_selecting_a_layer_in_the_graph_changes_the_matrix(server, page):
    page.open(server.url)
    p = page.page
    layer = layer_of(server, "Conv2d")
    assert layer != p.input_value("[data-testid=layer-select]")
    before = p.get_attribute("[data-testid=matrix-canvas]", "data-columns")
    p.click(f"[data-testid=graph-node][data-layer='{layer}']")
    p.wait_for_selector(f"[data-testid=matrix-canvas][data-layer='{layer}']")
    page.ready("matrix")
    page.ready("projection")
    expected = server.get(f"/api/matrix?layer={layer}&sort=variance")
    after = p.get_attribute("[data-testid=matrix-canvas]", "data-columns")
    assert after == ",".join(map(str, expected["order"])) and after != before
    # Linked: the header, the graph and the channel view follow, on the layer's top channel.
    assert p.input_value("[data-testid=layer-select]") == layer
    assert p.get_attribute("[data-testid=graph-node].selected", "data-layer") == layer
    p.wait_for_selector(f"[data-testid=channel][data-layer='{layer}']"
                        f"[data-channel='{expected['order'][0]}']")
    # Sorting by the difference of two subsets asks the server for that order.
    a, b = server.get("/api/session")["default_difference"]
    p.select_option("[data-testid=matrix-sort]", "difference")
    diff = server.get(f"/api/matrix?a={a}&b={b}&layer={layer}&sort=difference")
    p.wait_for_selector("[data-testid=matrix-canvas][data-columns='"
                        + ",".join(map(str, diff["order"])) + "']")
    # The colour of a cell is the matrix value on the colour bar's scale (spot check).
    colour = p.evaluate("""() => {
        const c = document.querySelector('[data-testid=matrix-canvas]');
        const r = devicePixelRatio, w = c.width / c.dataset.columns.split(',').length;
        return Array.from(c.getContext('2d').getImageData(Math.floor(w / 2), Math.floor(8 * r), 1, 1).data);
    }""")
    assert colour[3] == 255 and colour[:3] != [255, 255, 255]
    page.shot("layer-switch", "matrix")


def test_box_and_lasso_selection_make_subset_rows(server, page):
    page.open(server.url)
    p = page.page
    overlay = p.locator("[data-testid=projection-overlay]")
    overlay.scroll_into_view_if_needed()
    box = overlay.bounding_box()
    screen = np.asarray(p.evaluate("crosslens.projectionScreen()")).reshape(-1, 2)
    x0, y0, x1, y1 = 0.15 * box["width"], 0.15 * box["height"], 0.65 * box["width"], 0.85 * box["height"]
    inside = np.flatnonzero((screen[:, 0] >= x0) & (screen[:, 0] <= x1)
                            & (screen[:, 1] >= y0) & (screen[:, 1] <= y1))
    assert 0 < len(inside) < 120
    before = {s["id"] for s in server.get("/api/subsets")}
    p.mouse.move(box["x"] + x0, box["y"] + y0)
    p.mouse.down()
    p.mouse.move(box["x"] + x1, box["y"] + y1, steps=6)
    p.mouse.up()
    note = p.wait_for_selector("[data-testid=subset-created]")
    new = note.get_attribute("data-subset")
    assert new not in before and new.startswith("user:")
    # The new subset holds exactly the points inside the box, and it is a row of the matrix.
    items = server.get(f"/api/instances?subset={new}&limit=1000")["items"]
    assert sorted(i["index"] for i in items) == inside.tolist()
    row = p.wait_for_selector(f"[data-testid=matrix-row][data-subset='{new}']")
    assert row.inner_text().split()[-1] == str(len(inside))
    page.shot("box-selection", "projection")
    # A shift-drag lasso (a triangle) makes another one (the new row moved the view down).
    overlay.scroll_into_view_if_needed()
    box = overlay.bounding_box()
    tri = [(0.1, 0.9), (0.5, 0.1), (0.9, 0.9)]
    pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in tri]
    p.keyboard.down("Shift")
    p.mouse.move(*pts[0])
    p.mouse.down()
    for x, y in pts[1:] + pts[:1]:
        p.mouse.move(x, y, steps=5)
    p.mouse.up()
    p.keyboard.up("Shift")
    p.wait_for_function(f"document.querySelector('[data-testid=subset-created]')"
                        f" && document.querySelector('[data-testid=subset-created]').dataset.subset !== '{new}'")
    lasso = p.get_attribute("[data-testid=subset-created]", "data-subset")
    p.wait_for_selector(f"[data-testid=matrix-row][data-subset='{lasso}']")
    poly = np.asarray([(fx * box["width"], fy * box["height"]) for fx, fy in tri])
    got = sorted(i["index"] for i in server.get(f"/api/instances?subset={lasso}&limit=1000")["items"])
    strictly = [i for i, (x, y) in enumerate(screen) if _in_triangle(x, y, poly, margin=2)]
    loosely = [i for i, (x, y) in enumerate(screen) if _in_triangle(x, y, poly, margin=-2)]
    assert set(strictly) <= set(got) <= set(loosely) and got
    # A click on a point (the most isolated one, so the click is unambiguous) opens it.
    gaps = np.linalg.norm(screen[:, None] - screen[None], axis=-1) + np.eye(len(screen)) * 1e9
    lone = int(gaps.min(axis=1).argmax())
    overlay.scroll_into_view_if_needed()
    box = overlay.bounding_box()
    p.mouse.click(box["x"] + screen[lone, 0], box["y"] + screen[lone, 1])
    p.wait_for_selector(f"[data-testid=instance][data-index='{lone}']")


def _in_triangle(x, y, tri, margin):
    """Inside the triangle by more than ``margin`` pixels (a negative margin: near it)."""
    (ax, ay), (bx, by), (cx, cy) = tri
    sign = np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))
    for (px, py), (qx, qy) in (((ax, ay), (bx, by)), ((bx, by), (cx, cy)), ((cx, cy), (ax, ay))):
        cross = sign * ((qx - px) * (y - py) - (qy - py) * (x - px)) / np.hypot(qx - px, qy - py)
        if cross < margin:
            return False
    return True


def test_attributions_side_by_side_with_progress_and_cache(server, page):
    page.open(server.url)
    p = page.page
    page.ready("instance")
    p.select_option("[data-testid=method-select-0]", "saliency")
    p.click("[data-testid=explain-button-0]")
    img = p.wait_for_selector("[data-testid=attribution-image-0]")
    expected = server.get("/api/attribution?index=0&method=saliency&target=predicted")
    assert img.get_attribute("src") == expected["image"]
    assert p.evaluate("document.querySelector('[data-testid=attribution-image-0]').naturalWidth") > 0
    assert "attribution" in p.inner_text("[data-testid=attribution-colorbar-0]")
    # The second panel: integrated gradients with a changed option, shown next to the first.
    p.select_option("[data-testid=method-select-1]", "integrated_gradients")
    p.fill("[data-testid=option-1-steps]", "8")
    p.click("[data-testid=explain-button-1]")
    img1 = p.wait_for_selector("[data-testid=attribution-image-1]")
    ig = server.get("/api/attribution?index=0&method=integrated_gradients&"
                    "options=%7B%22steps%22%3A8%7D&target=predicted")
    assert img1.get_attribute("src") == ig["image"]
    assert img.is_visible() and img1.is_visible()
    # Asked again, the same result at once (the server's job / cache).
    p.click("[data-testid=explain-button-0]")
    p.wait_for_selector("[data-testid=explain-0][data-state=done]")
    assert p.get_attribute("[data-testid=attribution-image-0]", "src") == expected["image"]
    page.shot("attributions", "instance")
    # A bad option comes back as the server's message, inline.
    p.fill("[data-testid=option-1-steps]", "-3")
    p.click("[data-testid=explain-button-1]")
    err = p.wait_for_selector("[data-testid=explain-error-1]")
    assert "steps" in err.inner_text()


def test_channel_view_opens_the_top9_of_a_clicked_column(server, page):
    page.open(server.url)
    p = page.page
    layer = layer_of(server, "Conv2d")
    p.select_option("[data-testid=layer-select]", layer)
    p.wait_for_selector(f"[data-testid=matrix-canvas][data-layer='{layer}']")
    page.ready("matrix")
    order = [int(c) for c in p.get_attribute("[data-testid=matrix-canvas]", "data-columns").split(",")]
    canvas = p.locator("[data-testid=matrix-canvas]")
    width = canvas.bounding_box()["width"]
    column = 2
    canvas.click(position={"x": (column + 0.5) * width / len(order), "y": 5})
    channel = order[column]
    p.wait_for_selector(f"[data-testid=channel][data-channel='{channel}'][data-layer='{layer}']")
    page.ready("channel")
    expected = server.get(f"/api/channel?channel={channel}&index=0&layer={layer}")
    tiles = p.locator("[data-testid=top9-tile]")
    assert tiles.count() == len(expected["top"]) == 9
    assert [int(tiles.nth(i).get_attribute("data-index")) for i in range(9)] == \
        [t["index"] for t in expected["top"]]
    # Each tile is the instance drawn with its box outlined in orange.
    orange = p.evaluate("""() => Array.from(document.querySelectorAll('[data-testid=top9-tile] canvas')).map(c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] > 90 && d[i+1] < 160 && d[i+2] < 60) n++;
        return n; })""")
    assert all(n > 0 for n in orange), orange
    assert p.locator("[data-testid=activation-map]").count() == 1
    page.shot("channel", "channel")
    # A tile selects its instance everywhere.
    first = expected["top"][0]["index"]
    tiles.nth(0).click()
    p.wait_for_selector(f"[data-testid=instance][data-index='{first}']")
    assert p.input_value("[data-testid=live-index]") == str(first)


def test_building_blocks_dictionary_groups_and_flow(server, page):
    page.open(server.url)
    p = page.page
    layer = layer_of(server, "Conv2d")
    p.select_option("[data-testid=layer-select]", layer)
    page.ready("blocks")
    shape = next(l for l in server.get("/api/session")["layers"] if l["name"] == layer)["shape"]
    h, w = shape[1:]
    pick = p.locator("[data-testid=blocks-input]")
    size = pick.bounding_box()
    y, x = h // 2, w // 3
    pick.click(position={"x": (x + 0.5) * size["width"] / w, "y": (y + 0.5) * size["height"] / h})
    p.wait_for_selector("[data-testid=dictionary][data-state=ready]")
    expected = server.get(f"/api/dictionary?index=0&k=6&layer={layer}&x={x}&y={y}")
    entries = p.locator("[data-testid=dictionary-entry]")
    assert [int(entries.nth(i).get_attribute("data-channel")) for i in range(entries.count())] == \
        [c["channel"] for c in expected["channels"]]
    # Neuron groups with the k the user picks.
    p.fill("[data-testid=groups-k]", "2")
    p.press("[data-testid=groups-k]", "Enter")
    p.wait_for_function("document.querySelectorAll('[data-testid=group]').length === 2")
    page.ready("blocks")
    groups = server.get(f"/api/groups?index=0&k=2&layer={layer}")
    texts = p.locator("[data-testid=group] .attr").all_inner_texts()
    assert len(texts) == 2 and all(t.startswith("attr") for t in texts)
    assert np.allclose([float(t.split()[-1]) for t in texts],
                       [g["attribution"] for g in groups["groups"]], rtol=0.01, atol=1e-3)
    if p.locator("[data-testid=flow-to] option").count():
        p.click("[data-testid=flow-button]")
        shown = p.wait_for_selector("[data-testid=flow-matrix], [data-testid=flow-error]")
        assert shown.get_attribute("data-testid") == "flow-matrix", shown.inner_text()
        assert p.locator("[data-testid=flow-matrix] td").count() == 4
    # A dictionary entry selects its channel.
    chosen = expected["channels"][0]["channel"]
    entries.nth(0).click()
    p.wait_for_selector(f"[data-testid=channel][data-channel='{chosen}']")
    page.shot("blocks", "blocks")


def test_live_stepping_and_upload_update_every_view(server, page):
    from PIL import Image
    page.open(server.url)
    p = page.page
    p.click("[data-testid=live-next]")
    p.wait_for_selector("[data-testid=instance][data-index='1']")
    # The channel view follows the instance (its activation map is on instance 1 now).
    p.wait_for_function("document.querySelector('#view-channel').dataset.state === 'ready'"
                        " && document.querySelector('#view-channel').innerText.includes('instance #1')")
    p.keyboard.press("ArrowLeft")
    p.wait_for_selector("[data-testid=instance][data-index='0']")
    # An uploaded image becomes a new instance, stepped to at once.
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(buffer, "PNG")
    p.set_input_files("[data-testid=upload]", files=[{"name": "seven.png", "mimeType": "image/png",
                                                       "buffer": buffer.getvalue()}])
    msg = p.wait_for_selector("[data-testid=live-msg][data-index]")
    index = int(msg.get_attribute("data-index"))
    assert index >= 120
    p.wait_for_selector(f"[data-testid=instance][data-index='{index}']")
    page.ready("instance")
    p.wait_for_selector(f"[data-testid=frame][data-index='{index}'].current")
    p.wait_for_function("document.querySelector('#view-channel').dataset.state === 'ready'"
                        f" && document.querySelector('#view-channel').innerText.includes('instance #{index}')")
    page.shot("live", "live")


def test_api_errors_are_shown_inline(server, page):
    page.open(server.url)
    p = page.page
    # A file that is not an image: the server refuses it and says why, next to the control.
    p.set_input_files("[data-testid=upload]", files=[{"name": "notes.png", "mimeType": "image/png",
                                                       "buffer": b"not an image at all"}])
    p.wait_for_selector("[data-testid=live-msg].error")
    assert "image" in p.inner_text("[data-testid=live-msg]").lower()
    # More neuron groups than the layer has positions / channels: the limit is named inline.
    layer = layer_of(server, "Conv2d")
    p.select_option("[data-testid=layer-select]", layer)
    page.ready("blocks")
    p.fill("[data-testid=groups-k]", "12")
    p.press("[data-testid=groups-k]", "Enter")
    p.wait_for_selector("#view-blocks[data-state=error]")
    message = p.inner_text("[data-testid=groups-error]")
    expected = urllib.request.Request(server.url + f"api/groups?index=0&k=12&layer={layer}")
    try:
        urllib.request.urlopen(expected, timeout=30)
        raise AssertionError("k=12 was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 400 and message == json.loads(error.read())["error"]


# --- static export ----------------------------------------------------------------------------

def test_static_export_opens_offline_with_the_views(server, tmp_path):
    from crosslens.inspector.export import export_html
    path = export_html(server.inspector, tmp_path / "page.html", instances=2, channels=2)
    with chromium_page(viewport=VIEWPORT) as raw:
        p = Page(raw, path.as_uri())
        p.page.goto(path.as_uri())
        p.page.wait_for_selector("body[data-ready='1']")
        for view in ("graph", "matrix", "projection", "instance", "channel"):
            p.ready(view)
        assert p.page.locator("[data-testid=export-badge]").count() == 1
        assert p.page.locator("[data-testid=matrix-row]").count() == len(server.get("/api/subsets"))
        assert p.page.get_attribute("[data-testid=projection-canvas]", "data-points") == "120"
        assert p.page.locator("[data-testid=top9-tile]").count() == 9
        # An exported attribution is shown; anything else says it is not in the export.
        p.page.select_option("[data-testid=method-select-0]", "saliency")
        p.page.click("[data-testid=explain-button-0]")
        p.page.wait_for_selector("[data-testid=attribution-image-0]")
        p.page.select_option("[data-testid=method-select-1]", "smoothgrad")
        p.page.click("[data-testid=explain-button-1]")
        missing = p.page.wait_for_selector("[data-testid=explain-error-1]")
        assert "not part of this export" in missing.inner_text().lower()
        # Neuron groups are exported for the first layer; a dictionary position is not.
        p.ready("blocks")
        assert p.page.locator("[data-testid=group]").count() > 0
        p.page.locator("[data-testid=blocks-input]").click(position={"x": 5, "y": 5})
        missing = p.page.wait_for_selector("[data-testid=dictionary] .missing")
        assert "not part of this export" in missing.inner_text().lower()
        # Another layer switches from the embedded data too.
        layer = layer_of(server, "Conv2d")
        p.page.select_option("[data-testid=layer-select]", layer)
        p.page.wait_for_selector(f"[data-testid=matrix-canvas][data-layer='{layer}']")
        p.ready("projection")
        p.page.wait_for_selector(f"[data-testid=channel][data-layer='{layer}']")
        p.shot("export")
        assert p.requests and all(u.startswith(("file:", "data:")) for u in p.requests), \
            [u for u in p.requests if not u.startswith(("file:", "data:"))]
        assert not p.errors, p.errors


# --- a Keras model (channels-last layers) -------------------------------------------------------

@pytest.fixture
def keras_model_or_skip(request):
    pytest.importorskip("keras")
    return request.getfixturevalue("keras_model")


def test_keras_model_views_read_channels_last_layers(keras_model_or_skip, digits, tmp_path):
    from crosslens.inspector import Inspector
    keras_model = keras_model_or_skip
    x, y = digits
    inspector = Inspector(keras_model, x, tmp_path / "store", labels=y, progress=False,
                          name="tiny_keras_cnn")
    server = Server(inspector)
    try:
        with chromium_page(viewport=VIEWPORT) as raw:
            page = Page(raw, server.url)
            page.open(server.url)
            p = page.page
            for view in VIEWS:
                page.ready(view)
            assert "keras" in p.inner_text("[data-testid=header]")
            # A position of a channels-last map: the picker's grid is (H, W) of (H, W, C).
            layer = next(l for l in server.get("/api/session")["layers"]
                         if l["type"] == "Conv2D")
            p.select_option("[data-testid=layer-select]", layer["name"])
            page.ready("blocks")
            h, w, _ = layer["shape"]
            assert f"({h}×{w} positions)" in p.inner_text("#view-blocks")
            pick = p.locator("[data-testid=blocks-input]")
            size = pick.bounding_box()
            pick.click(position={"x": (w - 0.5) * size["width"] / w, "y": 0.5 * size["height"] / h})
            p.wait_for_selector("[data-testid=dictionary][data-state=ready]")
            expected = server.get(f"/api/dictionary?index=0&k=6&layer={layer['name']}&x={w - 1}&y=0")
            got = p.locator("[data-testid=dictionary-entry]")
            assert [int(got.nth(i).get_attribute("data-channel")) for i in range(got.count())] == \
                [c["channel"] for c in expected["channels"]]
            page.ready("channel")
            assert p.locator("[data-testid=top9-tile]").count() == 9
            page.shot("keras")
            page.check_clean()
    finally:
        server.stop()


def test_clicking_a_matrix_row_marks_its_instances_in_the_projection(server, page):
    page.open(server.url)
    p = page.page
    subset = "label:3"
    p.click(f"[data-testid=matrix-row][data-subset='{subset}']")
    p.wait_for_selector("[data-testid=highlight]")
    expected = sorted(i["index"] for i in server.get(f"/api/instances?subset={subset}&limit=1000")["items"])
    assert sorted(p.evaluate("crosslens.state.selection")) == expected
    assert "on" in p.get_attribute(f"[data-testid=matrix-row][data-subset='{subset}']", "class")
    p.click(f"[data-testid=matrix-row][data-subset='{subset}']")  # a second click clears it
    p.wait_for_function("crosslens.state.selection === null")
