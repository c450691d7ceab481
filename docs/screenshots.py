"""Screenshots of the inspection page's views for the README (issue 18).

Trains the demo's Clever-Hans digits CNN (PyTorch, :func:`crosslens.evaluate.clever_hans.
train_models`, a short training) on scikit-learn's digits with a watermark on every image
of class "5-9", starts the inspection server over all 1,797 images (plus a few frames with
and without the watermark for the Live view), drives headless Chromium through each view
the way a user would, and saves one PNG per view, cropped to the view and palette-
compressed (< 150 kB each), as ``docs/images/inspect_<view>.png``.

Usage::

    python docs/screenshots.py [--out docs/images] [--store DIR] [--epochs 5]

Needs Debian's ``chromium`` and Playwright for Python (the browser tests' setup).
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

VIEWPORT = {"width": 1440, "height": 1000}
MAX_BYTES = 150_000
WAIT_MS = 120_000


def save_small(png: bytes, path: Path, scale: float = 1.0) -> int:
    """``png`` as a palette PNG (optionally scaled) at ``path``; returns its size."""
    from PIL import Image

    image = trim(Image.open(io.BytesIO(png)).convert("RGB"))
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.LANCZOS)
    colors = 256
    while True:
        buffer = io.BytesIO()
        image.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, "PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES or colors <= 32:
            break
        colors //= 2
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def trim(image):
    """The image without the empty bottom of a view's panel (rows that hold only the
    panel's background between its side borders), keeping a small margin."""
    pixels = np.asarray(image).astype(np.int16)
    inner = pixels[:-4, 4:-4]  # without the panel's border
    busy = np.flatnonzero(np.abs(inner - inner[-1:, :1]).max(axis=(1, 2)) > 12)
    if len(busy) == 0:
        return image
    bottom = min(image.height, int(busy[-1]) + 14)
    return image.crop((0, 0, image.width, bottom))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(url: str, out: Path, inspector) -> list[tuple[Path, int]]:
    from browser import chromium_page

    saved = []
    with chromium_page(viewport=VIEWPORT) as page:
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        # The sticky header would sit on top of views scrolled under it.
        page.add_style_tag(content=".top { position: static !important; }")

        def ready(view):
            page.wait_for_selector(f"#view-{view}[data-state=ready]")

        def snap(view, name=None, scale=1.0):
            element = page.locator(f"#view-{view}")
            element.scroll_into_view_if_needed()
            path = out / f"inspect_{name or view}.png"
            saved.append((path, save_small(element.screenshot(), path, scale)))

        # Matrix and projection on the last conv block, sorted by the two classes' difference.
        layer = "relu3"
        page.select_option("[data-testid=layer-select]", layer)
        page.wait_for_selector(f"[data-testid=matrix-canvas][data-layer='{layer}']")
        page.select_option("[data-testid=matrix-sort]", "difference")
        page.select_option("[data-testid=matrix-a]", "label:0")
        page.select_option("[data-testid=matrix-b]", "label:1")
        page.wait_for_function("crosslens.state.matrix && crosslens.state.matrix.sort === 'difference'"
                               " && crosslens.state.matrix.a === 'label:0' && crosslens.state.matrix.b === 'label:1'")
        ready("matrix")
        ready("projection")
        # Box-select the densest part of the watermarked class in the projection.
        screen = np.asarray(page.evaluate("crosslens.projectionScreen()")).reshape(-1, 2)
        labels = np.asarray(page.evaluate("crosslens.state.projection.label"))
        ones = screen[labels == 1]
        centre = np.median(ones, axis=0)
        near = ones[np.argsort(np.linalg.norm(ones - centre, axis=1))[: len(ones) // 3]]
        (x0, y0), (x1, y1) = near.min(axis=0) - 3, near.max(axis=0) + 3
        overlay = page.locator("[data-testid=projection-overlay]")
        overlay.scroll_into_view_if_needed()
        box = overlay.bounding_box()
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        page.mouse.move(box["x"] + x1, box["y"] + y1, steps=8)
        page.mouse.up()
        page.wait_for_selector("[data-testid=subset-created]")
        page.wait_for_selector("[data-testid=matrix-row][data-subset^='user:']")
        ready("matrix")
        snap("matrix")
        snap("projection")

        # Channel: the column that separates the classes most, its top-9 and feature vis.
        order = page.get_attribute("[data-testid=matrix-canvas]", "data-columns").split(",")
        canvas = page.locator("[data-testid=matrix-canvas]")
        width = canvas.bounding_box()["width"]
        canvas.click(position={"x": 0.5 * width / len(order), "y": 5})
        page.wait_for_selector(f"[data-testid=channel][data-channel='{order[0]}']")
        ready("channel")
        if page.locator("[data-testid=featurevis-compute]").count():
            page.click("[data-testid=featurevis-compute]")
            page.wait_for_selector("[data-testid=featurevis-image]")
        snap("channel")

        # Instance: a watermarked "5-9" digit, two attribution methods side by side.
        index = int(np.flatnonzero(labels == 1)[0])
        page.fill("[data-testid=live-index]", str(index))
        page.press("[data-testid=live-index]", "Enter")
        page.wait_for_selector(f"[data-testid=instance][data-index='{index}']")
        ready("instance")
        page.select_option("[data-testid=method-select-0]", "saliency")
        page.click("[data-testid=explain-button-0]")
        page.select_option("[data-testid=method-select-1]", "integrated_gradients")
        page.fill("[data-testid=option-1-steps]", "32")
        page.click("[data-testid=explain-button-1]")
        page.wait_for_selector("[data-testid=attribution-image-0]")
        page.wait_for_selector("[data-testid=attribution-image-1]")
        snap("instance")

        # Building blocks on relu2 (8x8 positions): the corner patch's dictionary, groups, flow.
        page.select_option("[data-testid=layer-select]", "relu2")
        page.wait_for_selector("[data-testid=matrix-canvas][data-layer='relu2']")
        ready("blocks")
        pick = page.locator("[data-testid=blocks-input]")
        pick.scroll_into_view_if_needed()
        size = pick.bounding_box()
        pick.click(position={"x": 0.5 * size["width"] / 8, "y": 0.5 * size["height"] / 8})
        page.wait_for_selector("[data-testid=dictionary][data-state=ready]")
        for button in ("dictionary-featurevis",):
            if page.locator(f"[data-testid={button}]").count():
                page.click(f"[data-testid={button}]")
                page.wait_for_selector(f"[data-testid={button}]", state="detached")
        page.wait_for_selector("[data-testid=dictionary][data-state=ready]")
        ready("blocks")
        page.click("[data-testid=flow-button]")
        page.wait_for_selector("[data-testid=flow-matrix]")
        snap("blocks")

        # Live: step to the first frame (watermarked), then to its clean twin.
        frames = page.locator("[data-testid=frame]")
        if frames.count():
            frames.nth(0).click()
            page.click("[data-testid=live-next]")
            second = frames.nth(1).get_attribute("data-index")
            page.wait_for_selector(f"[data-testid=instance][data-index='{second}']")
            ready("instance")
        snap("live")
        snap("graph")
        page.evaluate("window.scrollTo(0, 0)")
        path = out / "inspect_page.png"
        saved.append((path, save_small(page.screenshot(full_page=True), path, scale=0.6)))
    return saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--store", default=None, help="store folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)

    from crosslens.demo_inspect import CLASS_NAMES, clever_hans_setup, write_frames
    from crosslens.inspector import Inspector, inspect

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model, x, y, data = clever_hans_setup(args.epochs)
        frames = write_frames(data, Path(tmp) / "frames")
        inspector = Inspector(model, x, args.store or Path(tmp) / "store", labels=y,
                              class_names=CLASS_NAMES, frames=frames, progress=False,
                              name="Clever-Hans digits CNN")
        print(f"model and store: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        server = inspect(inspector, None, port=free_port())
        try:
            url = server.url.replace("localhost", "127.0.0.1")
            for path, size in shoot(url, out, inspector):
                print(f"{path} {size / 1000:.0f} kB")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
