"""Speed of the inspection page's data (issue 18); not a timed test.

Measures, on this machine, what the page waits for:

- *page ready*: a fresh :class:`crosslens.inspector.Inspector` over the 1,797 bundled
  digits whose store already exists (the tiny 8x8 digit CNN of ``tests/reference``), then
  the first page's data as JSON: session, graph, subsets, the matrix (variance order), the
  PCA projection of the default layer, the first 100 thumbnails and instance 0 (< 2 s);
- *switching layer*: matrix and projection of another layer, not yet cached (< 300 ms);
- *saliency on EfficientNet-Lite0*: an on-demand attribution of one of the demo's photos
  (224², PyTorch), not cached, after one warm-up attribution of the other (< 1 s);
- *projection of 10,000 instances*: ``Inspector.projection`` over a store of 10,000
  digit-like images (the digits shifted and noised), as JSON, and PCA of a 10,000 x 1280
  matrix (Lite0's head width) (< 5 s);
- the feature-visualization cost per channel at the default 512 steps on Lite0 (the
  page's estimate: steps x one forward-backward pass).

Usage::

    python benchmarks/inspector.py [--threads 1] [--tmp DIR]

prints a markdown table (median of ``--repeats`` runs, default 3; store creation is not
timed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def timed(fn, repeats):
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def digit_model():
    import torch

    from reference.builders import build_torch
    from reference.nets import make_small_cnn
    return build_torch(make_small_cnn(0, in_channels=1, size=8, n_classes=10),
                       dtype=torch.float32)


def digits(n=None):
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    if n is None:
        return x, y
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(x), n)
    shifted = np.roll(x[pick], rng.integers(-1, 2, (n, 2)).tolist()[0], axis=(2, 3))
    noisy = np.clip(shifted + rng.normal(0, 0.05, shifted.shape), 0, 1).astype(np.float32)
    return noisy, y[pick]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args(argv)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from crosslens.inspector import Inspector
    from crosslens.inspector.views import pca

    tmp = Path(tempfile.mkdtemp(prefix="inspector-bench-", dir=args.tmp))
    rows = []
    model, (x, y) = digit_model(), digits()
    Inspector(model, x, tmp / "digits", labels=y, progress=False)  # the store, not timed

    def page_ready():
        ins = Inspector(model, x, tmp / "digits", labels=y, progress=False)
        for payload in (ins.session(), ins.graph(), ins.subsets.list(),
                        ins.matrix(ins.default_layer), ins.projection(ins.default_layer),
                        ins.instance_list("all", 0, 100), ins.instance(0)):
            json.dumps(payload)  # what the server sends
        return ins

    rows.append(("page ready, 1,797 digits (store exists)", timed(page_ready, args.repeats),
                 2.0))
    ins = page_ready()
    others = [l for l in ins.layers if l != ins.default_layer]

    def switch():
        layer = others.pop(0)
        json.dumps([ins.matrix(layer), ins.projection(layer)])
    rows.append(("switching layer (matrix + projection)", timed(switch, min(args.repeats,
                                                                          len(others))), 0.3))

    big_x, big_y = digits(10_000)
    big = Inspector(model, big_x, tmp / "digits10k", labels=big_y, progress=False)

    def project():
        big._projections.clear()
        json.dumps(big.projection(big.default_layer))
    rows.append((f"projection of 10,000 instances ({big.default_layer}, "
                 f"{big.channel_count(big.default_layer)} channels)",
                 timed(project, args.repeats), 5.0))
    wide = np.random.default_rng(0).normal(size=(10_000, 1280)).astype(np.float32)
    rows.append(("PCA of 10,000 x 1280 (Lite0 head width)", timed(lambda: pca(wide),
                                                                  args.repeats), 5.0))

    from crosslens import zoo
    lite = Inspector(zoo.efficientnet_lite0(), "photos", tmp / "lite", preprocess="lite",
                     layers=["_blocks.15", "_conv_head"], class_names=list(zoo.imagenet_labels()),
                     progress=False)
    warm, key = lite.attribution_request(0, "saliency", {}, "predicted")
    lite.attribution(warm, key)
    seconds = []
    for _ in range(args.repeats):
        request, key = lite.attribution_request(1, "saliency", {}, "predicted")
        for kind in ("json", "npz"):
            stale = lite.cache.root / "attributions" / f"{key}.{kind}"
            stale.unlink(missing_ok=True)
        start = time.perf_counter()
        lite.attribution(request, key)
        seconds.append(time.perf_counter() - start)
    rows.append(("saliency on EfficientNet-Lite0, 224² (not cached)",
                 statistics.median(seconds), 1.0))
    estimate = lite.featurevis.seconds_per_channel_estimate()

    print(f"\n{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, median of "
          f"{args.repeats}\n")
    print("| what | seconds | target | met |\n|---|---:|---:|---|")
    for name, value, target in rows:
        print(f"| {name} | {value:.3f} | < {target:g} | {'yes' if value < target else 'NO'} |")
    print(f"| feature visualization, Lite0, 512 steps, one channel (estimate) | "
          f"{estimate:.0f} | - | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
