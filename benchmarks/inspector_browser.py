"""The inspection page's speed in the browser (issue 18); not a timed test.

Headless Chromium (Debian's, through Playwright) on the real server over the 1,797 bundled
digits (the tiny 8x8 digit CNN of ``tests/reference``), the store built beforehand (not
timed). Measured by the page itself (``window.crosslens.timings``):

- *page ready*: navigation start until every view of the first screen has drawn (header,
  graph, matrix, projection, instance, channel, building blocks). First load on a fresh
  server (its in-memory caches empty, the store on disk), then reloads (target < 2 s);
- *switching layer*: from choosing a layer until its matrix and projection are drawn, for
  every layer, first on a fresh server (each layer's pooled activations read from the store
  and projected), then again in a fresh page on the warm server (target < 300 ms).

Usage::

    python benchmarks/inspector_browser.py [--repeats 5] [--tmp DIR]

prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("OMP_NUM_THREADS", "1")
VIEWS = ("graph", "matrix", "projection", "instance", "channel", "blocks")


def digit_model():
    import torch

    from reference.builders import build_torch
    from reference.nets import make_small_cnn
    return build_torch(make_small_cnn(0, in_channels=1, size=8, n_classes=10),
                       dtype=torch.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(store: Path):
    from crosslens.inspector import Inspector, inspect
    inspector = Inspector(digit_model(), "digits", store, progress=False, name="digits CNN")
    server = inspect(inspector, None, port=free_port())
    return server, server.url.replace("localhost", "127.0.0.1")


def ready_ms(page, url, reload=False) -> float:
    """Navigation start until every view of the first screen has drawn (the page's own
    ``timings.ready``)."""
    page.reload() if reload else page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page.evaluate("crosslens.timings.ready")


def switch_ms(page) -> list[float]:
    layers = page.evaluate("crosslens.state.session.layers.map(l => l.name)")
    first = page.evaluate("crosslens.state.layer")
    times = []
    for layer in [l for l in layers if l != first] + [first]:
        before = page.evaluate("crosslens.timings.layerSwitch.length")
        page.select_option("[data-testid=layer-select]", layer)
        page.wait_for_function(f"crosslens.timings.layerSwitch.length > {before}",
                               timeout=60_000)
        times.append(page.evaluate("crosslens.timings.layerSwitch.at(-1)"))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args(argv)

    from browser import chromium_page

    viewport = {"width": 1440, "height": 1000}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        store = Path(tmp) / "store"
        server, _ = serve(store)  # builds the store (not timed)
        server.stop()

        server, url = serve(store)  # a fresh server on the existing store
        try:
            with chromium_page(viewport=viewport) as page:
                cold_ready = ready_ms(page, url)
                cold_switch = switch_ms(page)
                warm_ready = [ready_ms(page, url, reload=True) for _ in range(args.repeats)]
            with chromium_page(viewport=viewport) as page:
                ready_ms(page, url)
                warm_switch = switch_ms(page)
            size = server.inspector.instances.size
            layers = len(server.inspector.layers)
        finally:
            server.stop()
    print(f"| inspection page in Chromium, {size} digits, {layers} layers | median | max | target |")
    print("|---|---|---|---|")
    print(f"| page ready, first load on a fresh server | {cold_ready:.0f} ms | | < 2000 ms |")
    print(f"| page ready, reload ({args.repeats}x) | {statistics.median(warm_ready):.0f} ms | "
          f"{max(warm_ready):.0f} ms | < 2000 ms |")
    print(f"| layer switch, fresh server (each layer once) | {statistics.median(cold_switch):.0f} ms"
          f" | {max(cold_switch):.0f} ms | < 300 ms |")
    print(f"| layer switch, warm server, fresh page | {statistics.median(warm_switch):.0f} ms | "
          f"{max(warm_switch):.0f} ms | < 300 ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
