"""The main job: explain the pretrained EfficientNet-Lite0 on two real photos, then look
at two models over data sets in the inspection page.

Runs every registered attribution method that the PyTorch backend supports on the cat
(``chelsea.png``) and coffee (``coffee.png``) photos shipped with scikit-image, prints
the top-5 labels, and writes a grid of methods side by side (``methods.png``), the
activations of a late layer (``activations.png``), class visualizations optimized from
noise (``featurevis.png``) and an HTML page with all of them (``methods.html``). Then
(:mod:`crosslens.demo_inspect`) it trains the Clever-Hans digits CNN, explains all 1,797
digits into a dataset store and writes its inspection page (``report.html``), and the
inspection page of EfficientNet-Lite0 over scikit-image's photos (``photos.html``).
Nothing is downloaded.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

#: Per-method options that keep the demo to a few minutes on a laptop CPU.
DEMO_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 64},
    "smoothgrad": {"samples": 25, "seed": 0},
    "squaregrad": {"samples": 25, "seed": 0},
    "vargrad": {"samples": 25, "seed": 0},
    "occlusion": {"patch": 32, "stride": 16},
    "rise": {"samples": 400, "seed": 0},
    "kernel_shap": {"samples": 256, "seed": 0},  # 16 grid features
    "shapley_value_sampling": {"samples": 10, "seed": 0},
    "lime": {"samples": 256, "seed": 0},  # 16 grid features, as kernel_shap
    "gradient_shap": {"samples": 25, "seed": 0},
    "feature_permutation": {"seed": 0},  # 16 grid features, permuted across the 2 photos
    # 320 channels at 7x7 instead of the 1280 of the head: one forward pass per channel
    "score_cam": {"layer": "_blocks.15"},
}
#: Methods that do not make an input-attribution map for this grid.
NOT_IN_GRID = {"activations", "feature_ablation", "internal_influence", "conductance",
               "channel_mask"}
ACTIVATION_LAYER = "_blocks.15"
GRID_COLUMNS = 6
SAMPLE_NAMES = ("chelsea.png", "coffee.png")
REPORT_STYLE = ("table.crosslens-legend{border-collapse:collapse;font:13px sans-serif;"
                "margin:1em 0}table.crosslens-legend td,table.crosslens-legend th{border:1px "
                "solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}")


def demo_methods() -> list[str]:
    """Registered methods shown in the demo grid (those the PyTorch backend runs)."""
    import crosslens as cl

    return [row["name"] for row in cl.methods()
            if "torch" in row["backends"] and row["name"] not in NOT_IN_GRID
            and row["family"] not in ("layer",)]


def method_grid(display: np.ndarray, maps: dict[str, np.ndarray], photo_titles: list[str],
                columns: int = GRID_COLUMNS):
    """The grid of overlays (one block of rows per photo) and the scale of each map.

    Parameters
    ----------
    display
        Photos ``(N, H, W, 3)`` in ``[0, 1]``.
    maps
        Per method, its ``(N, H, W)`` maps (``Explanation.image_maps()``).
    photo_titles
        Title of each photo's first cell.
    columns
        Cells per row.

    Returns
    -------
    (matplotlib.figure.Figure, dict[str, list[crosslens.viz.DisplayScale]])
        The figure, with a colour bar per overlay, and per method the display scale
        of each photo's map (``scale="auto"``: min-max for maps with an offset such as
        RISE's, Captum's percentile clipping otherwise), for the report's legend.
    """
    from crosslens.viz import Cell, cell_scale, figure_grid

    # Resolve each map's scale once, so the grid and the legend show the same one.
    scales = {m: [cell_scale(Cell("overlay", image=image, attribution=maps[m][i]))
                  for i, image in enumerate(display)] for m in maps}
    cells, titles = [], []
    for i, image in enumerate(display):
        block = [image] + [Cell("overlay", image=image, attribution=maps[m][i], scale=scales[m][i])
                           for m in maps]
        names = [photo_titles[i]] + list(maps)
        padding = -len(block) % columns
        cells += block + [None] * padding
        titles += names + [None] * padding
    return figure_grid(cells, titles=titles, ncols=columns, colorbar=True), scales


def run(out_dir: str = "out/demo", methods: list[str] | None = None, log=print,
        featurevis: bool = True, pages: bool = True) -> dict[str, Any]:
    """Run the demo; returns what it computed (for tests and notebooks). ``pages=False``
    skips the two inspection pages."""
    import torch

    import crosslens as cl
    from crosslens import zoo
    from crosslens.featurevis_demo import run_demo
    from crosslens.viz import figure_html, png_data_uri, save_figure, scale_legend_html

    os.makedirs(out_dir, exist_ok=True)
    model = zoo.efficientnet_lite0()
    labels = zoo.imagenet_labels()
    x, display = zoo.sample_images()
    with torch.no_grad():
        probabilities = torch.softmax(model(torch.as_tensor(x)), dim=1).numpy()
    top1 = probabilities.argmax(axis=1)
    for name, row in zip(SAMPLE_NAMES, probabilities):
        top5 = row.argsort()[::-1][:5]
        log(f"{name}: " + ", ".join(f"{i} {labels[i]!r} {row[i]:.3f}" for i in top5))

    maps, timings, skipped, info = {}, {}, {}, {}
    for method in methods or demo_methods():
        start = time.perf_counter()
        options = dict(DEMO_OPTIONS.get(method, {}))
        try:
            exp = cl.explain(model, x, method, target=top1.tolist(), **options)
        except cl.UnsupportedError as error:  # e.g. CAM: this model's head is not GAP + dense
            skipped[method] = str(error)
            log(f"  {method:<24} skipped: {error}")
            continue
        timings[method] = time.perf_counter() - start
        maps[method], info[method] = exp.image_maps(), exp.info
        log(f"  {method:<24} {timings[method]:6.1f} s")

    # One block of rows per photo, GRID_COLUMNS cells wide: the photo, then each method.
    photo_titles = [f"{top1[i]} {labels[top1[i]].split(',')[0]} ({probabilities[i, top1[i]]:.2f})"
                    for i in range(len(x))]
    figure, scales = method_grid(display, maps, photo_titles)
    grid_path = save_figure(figure, os.path.join(out_dir, "methods.png"))
    acts = cl.explain(model, x, "activations", layer=ACTIVATION_LAYER)
    act_path = acts.save(os.path.join(out_dir, "activations.png"))

    if featurevis:
        start = time.perf_counter()
        featurevis = run_demo(out_dir)
        log("feature visualization from noise: " + ", ".join(
            f"{label.split(',')[0]} p={p:.3f}" for label, p in
            zip(featurevis["labels"], featurevis["probabilities"]))
            + f" ({time.perf_counter() - start:.0f} s)")

    report = os.path.join(out_dir, "methods.html")
    with open(report, "w") as handle:
        handle.write("<!doctype html><meta charset='utf-8'><title>crosslens demo</title>"
                     f"<style>{REPORT_STYLE}</style>"
                     "<h1>crosslens demo: EfficientNet-Lite0</h1>")
        handle.write(figure_html(figure, caption="Attributions for the top-1 class. Each map "
                                 "is scaled on its own; its colour bar shows the value range "
                                 "mapped, and the legend below what the colours mean."))
        handle.write(scale_legend_html(scales, sample_names=SAMPLE_NAMES[:len(x)],
                                       caption="What the colours mean, per method"))
        handle.write(figure_html(acts.figure(), caption=f"Activations of {ACTIVATION_LAYER}"))
        if featurevis:
            with open(featurevis["figure"], "rb") as png:
                handle.write(f"<figure><img src='{png_data_uri(png.read())}'><figcaption>"
                             "Class visualizations optimized from noise (Fourier "
                             "parameterization, Lucid's transforms)</figcaption></figure>")
    log(f"wrote {grid_path}, {act_path}" + (f", {featurevis['figure']}" if featurevis else "")
        + f" and {report}")
    result = {"top1": top1, "probabilities": probabilities, "maps": maps, "timings": timings,
              "skipped": skipped, "info": info, "scales": scales, "grid": str(grid_path),
              "report": report, "featurevis": featurevis}
    if pages:
        from .demo_inspect import digits_page, photos_page
        result["digits"] = digits_page(out_dir, log)
        result["photos"] = photos_page(out_dir, model, log,
                                       **({} if featurevis else {"featurevis_channels": 0}))
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="crosslens demo", description=__doc__)
    parser.add_argument("--out", default="out/demo", help="output folder")
    parser.add_argument("--methods", nargs="*", help="subset of methods (default: all)")
    parser.add_argument("--no-featurevis", action="store_true",
                        help="skip the feature-visualization panel")
    args = parser.parse_args(argv)
    run(args.out, args.methods, featurevis=not args.no_featurevis)
    return 0


if __name__ == "__main__":
    sys.exit(main())
