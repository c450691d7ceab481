"""The visual log: one self-contained file, rewritten whole at each entry, that opens in
headless Chromium with every entry and image present and no network request."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from browser import chromium_page  # noqa: E402
from monitor_helpers import PROBES, nchw, task, torch_net  # noqa: E402

from crosslens.monitor import HtmlLog, Monitor  # noqa: E402


def write_log(path) -> tuple[Monitor, list, list[str]]:
    """Two epochs, two pipeline stages and a step skipped for the time budget."""
    images, labels = task(1, PROBES)
    sink = HtmlLog(path)
    monitor = Monitor(nchw(images), labels,
                      methods=["saliency", ("grad_cam", {"layer": "relu2"})], layers=["relu1"],
                      featurevis={"layer": "conv2", "channels": [0], "steps": 3}, sinks=[sink])
    model = torch_net(0)
    entries = [monitor.log_images("raw", images),
               monitor.log_images("normalized", nchw(images) - 0.5)]
    pages = []
    for epoch in range(2):
        entries.append(monitor.step(model, epoch))
        pages.append(path.read_text())
    monitor.time_budget = 1e-9
    entries.append(monitor.step(model, 2))
    monitor.close()
    return monitor, entries, pages


def test_each_rewrite_is_a_whole_page_and_leaves_no_temporary_file(tmp_path):
    _, _, pages = write_log(tmp_path / "log.html")
    assert all(p.startswith("<!DOCTYPE html>") and p.endswith("</html>") for p in pages)
    assert pages[1].startswith(pages[0][:-len("</body></html>")])  # it grows
    assert [p.name for p in tmp_path.iterdir()] == ["log.html"]


def test_the_log_opens_offline_with_every_entry(tmp_path):
    path = tmp_path / "log.html"
    _, entries, _ = write_log(path)
    requests = []
    with chromium_page() as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.as_uri())
        titles = page.locator("section.entry h2").all_inner_texts()
        assert titles == [e.title for e in entries] == \
            ["raw", "normalized", "epoch 0", "epoch 1", "epoch 2"]
        kinds = [page.locator("section.entry").nth(i).get_attribute("data-kind")
                 for i in range(len(entries))]
        assert kinds == ["stage", "stage", "step", "step", "step"]
        shown = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        expected = [tag for e in entries for tag in e.images]
        assert [alt for alt, _ in shown] == expected and all(ok for _, ok in shown)
        assert "featurevis/conv2/channel 0 (3 steps)" in expected
        assert page.locator("figcaption", has_text="after 3 optimization steps").count() == 2
        assert "over the time budget" in page.locator("section.entry").nth(4).inner_text()
    assert requests == [path.as_uri()]  # the page itself; images are data URLs


def test_stage_images_are_shown_as_given_in_either_layout(tmp_path):
    images, labels = task(2, 4)
    monitor = Monitor(nchw(images), labels, sinks=[])
    first = monitor.log_images("a", images).images["stage/a"]
    second = monitor.log_images("b", nchw(images)).images["stage/b"]
    np.testing.assert_array_equal(first, second)
    grey = np.rint((images[0, ..., 0] - images[0].min()) / np.ptp(images[0]) * 255)
    np.testing.assert_array_equal(first[:, :16, 0], grey)
