"""The inspection page in headless Chromium on a text, a tabular and a series model: the
instance view shows tokens / feature rows / a series plot, an attribution comes back as
coloured tokens / sorted feature bars / a shaded plot equal to the API's answer, markup in
tokens and names stays text, and the views that need images say so (no request, no error).

Screenshots go to ``out/screenshots/inspector/`` (git-ignored), as test_browser.py's.
"""
from __future__ import annotations

import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from browser import chromium_page  # noqa: E402
from inspector.modal_models import FEATURES, VOCAB, inspector  # noqa: E402
from inspector.test_browser import VIEWPORT, Page, Server  # noqa: E402

VIEWS = ("graph", "matrix", "projection", "instance", "channel", "blocks", "live")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    running: dict = {}

    def start(kind: str) -> Server:
        if kind not in running:
            made, _, _ = inspector(kind, tmp_path_factory.mktemp("browser-modal") / kind)
            running[kind] = Server(made)
        return running[kind]

    yield start
    for server in running.values():
        server.stop()


def open_instance(page: Page, url: str, index: int) -> None:
    """The page on ``url`` with every view ready, then instance ``index`` opened."""
    page.open(url)
    for view in VIEWS:
        page.ready(view)
    page.page.fill("[data-testid=live-index]", str(index))
    page.page.dispatch_event("[data-testid=live-index]", "change")
    page.page.wait_for_selector(f"[data-testid=instance][data-index='{index}']")
    page.ready("instance")


def explain(page: Page, method: str) -> None:
    page.page.select_option("[data-testid=method-select-0]", method)
    page.page.click("[data-testid=explain-button-0]")
    page.page.wait_for_selector("[data-testid=explain-0][data-state=done]")


def rgba(text: str) -> list[float]:
    values = [float(v) for v in re.findall(r"[\d.]+", text)]
    return values + [1.0] * (4 - len(values))


def assert_image_only_views_explain_themselves(page: Page, kind: str) -> None:
    for view in ("channel", "blocks"):
        note = page.page.inner_text(f"[data-testid={view}-na]")
        assert f"this data set is {kind}" in note
    assert page.page.is_disabled("[data-testid=upload]")
    assert not [u for u in page.requests if "/api/channel" in u or "/api/groups" in u]


def test_text_tokens_are_coloured_by_their_attribution(servers, tmp_path):
    server = servers("text")
    with chromium_page(viewport=VIEWPORT) as raw:
        page = Page(raw, server.url)
        open_instance(page, server.url, 4)
        p = page.page
        inst = server.get("/api/instance?index=4")
        shown = p.locator("[data-testid=instance-tokens] .tok").all_inner_texts()
        assert shown == inst["tokens"] and "<b>bold</b>" in VOCAB
        # Markup in tokens is text: no element was made from it.
        assert p.locator("[data-testid=instance-tokens] .tok *").count() == 0
        explain(page, "integrated_gradients")
        result = server.get("/api/attribution?index=4&method=integrated_gradients"
                            "&target=predicted")
        spans = p.locator("[data-testid=attribution-tokens-0] [data-testid=token]")
        assert spans.all_inner_texts() == [t["token"] for t in result["tokens"]]
        assert p.locator("[data-testid=attribution-tokens-0] .tok *").count() == 0
        scores = [float(s.get_attribute("data-score")) for s in spans.all()]
        assert scores == pytest.approx([t["score"] for t in result["tokens"]], rel=1e-9)
        backgrounds = spans.evaluate_all("els => els.map(e => getComputedStyle(e)"
                                         ".backgroundColor)")
        for got, token in zip(backgrounds, result["tokens"]):  # alpha in steps of 1/255
            assert rgba(got) == pytest.approx(rgba(token["color"]), abs=4e-3)
        strongest = max(range(len(scores)), key=lambda i: abs(scores[i]))
        assert rgba(backgrounds[strongest])[3] == pytest.approx(0.75, abs=4e-3)
        assert "red raises" in p.inner_text("[data-testid=attribution-legend-0]")
        assert_image_only_views_explain_themselves(page, "text")
        page.shot("text_instance", "instance")
        page.check_clean()
    # The static export shows the same tokens offline.
    from crosslens.inspector.export import export_html
    path = export_html(server.inspector, tmp_path / "text.html", instances=2,
                       methods=("saliency",))
    with chromium_page(viewport=VIEWPORT) as raw:
        page = Page(raw, path.as_uri())
        page.page.goto(path.as_uri())
        page.page.wait_for_selector("body[data-ready='1']")
        page.ready("instance")
        assert page.page.locator("[data-testid=instance-tokens] .tok").count() == 8
        explain(page, "saliency")
        assert page.page.locator("[data-testid=attribution-tokens-0] [data-testid=token]"
                                 ).count() == 8
        assert "image inputs" in page.page.inner_text("[data-testid=channel-na]")
        page.check_clean()


def test_tabular_attributions_are_sorted_feature_bars(servers):
    server = servers("tabular")
    with chromium_page(viewport=VIEWPORT) as raw:
        page = Page(raw, server.url)
        open_instance(page, server.url, 5)
        p = page.page
        rows = p.locator("[data-testid=instance-features] tr").all_inner_texts()
        assert [r.split("\t")[0] for r in rows] == FEATURES  # "income <usd>" as text
        explain(page, "saliency")
        result = server.get("/api/attribution?index=5&method=saliency&target=predicted")
        bars = p.locator("[data-testid=attribution-bars-0] [data-testid=feature-bar]")
        assert [b.get_attribute("data-feature") for b in bars.all()] == \
            [f["name"] for f in result["features"]]
        widths = bars.evaluate_all("els => els.map(e => e.querySelector('.fill')"
                                   ".getBoundingClientRect().width)")
        magnitudes = [abs(f["attribution"]) for f in result["features"]]
        assert widths == sorted(widths, reverse=True) and widths[0] > 0
        assert widths[-1] / widths[0] == pytest.approx(magnitudes[-1] / magnitudes[0],
                                                       abs=0.02)
        first = result["features"][0]
        assert bars.first.inner_text().startswith(first["name"] + " = ")
        side = bars.first.evaluate("e => { const t = e.querySelector('.track')"
                                   ".getBoundingClientRect(), f = e.querySelector('.fill')"
                                   ".getBoundingClientRect(); return f.left + f.width / 2 "
                                   "> t.left + t.width / 2; }")
        assert side == (first["attribution"] > 0)  # right of the zero line when positive
        assert_image_only_views_explain_themselves(page, "tabular")
        page.shot("tabular_instance", "instance")
        page.check_clean()


def test_series_attribution_is_a_shaded_plot(servers):
    server = servers("series")
    with chromium_page(viewport=VIEWPORT) as raw:
        page = Page(raw, server.url)
        open_instance(page, server.url, 2)
        p = page.page
        inst = server.get("/api/instance?index=2")
        assert p.get_attribute("[data-testid=instance-series]", "src") == inst["image"]
        assert p.evaluate("document.querySelector('[data-testid=instance-series]')"
                          ".naturalWidth") > 200
        explain(page, "integrated_gradients")
        result = server.get("/api/attribution?index=2&method=integrated_gradients"
                            "&target=predicted")
        assert p.get_attribute("[data-testid=attribution-image-0]", "src") == result["image"]
        assert p.evaluate("document.querySelector('[data-testid=attribution-image-0]')"
                          ".naturalWidth") > 200
        assert_image_only_views_explain_themselves(page, "series")
        page.shot("series_instance", "instance")
        page.check_clean()
