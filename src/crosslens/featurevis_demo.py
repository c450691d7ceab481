"""Feature-visualization demo on the pretrained EfficientNet-Lite0 (PyTorch, CPU-friendly).

    python -m crosslens.featurevis_demo --out DIR

Optimizes one image per ImageNet class from noise (the class logit; Fourier
parameterization with color decorrelation, Lucid's standard transforms, Adam) and writes ``DIR/featurevis.png`` (the
grid, titled with the probability each image reaches) and ``DIR/featurevis.json`` (the
probabilities, spectral slopes and timings). The image is optimized at a lower resolution
and upsampled to the model's 224x224 input, which keeps the step count small.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .featurevis.objectives import class_logit, class_prob
from .featurevis.render import visualize
from .featurevis.spectrum import spectral_slope

#: macaw, bell pepper, volcano: classes with distinctive colors and textures
DEFAULT_CLASSES = (88, 945, 980)
#: 32 Adam steps on a 128x128 Fourier image (upsampled to 224x224 for the model): the
#: probabilities pass 0.99 and the images show the classes' colors and textures, in about
#: a minute on 2 CPU cores (the model's forward-backward pass is ~95% of the time)
DEFAULTS = dict(size=128, steps=32, lr=0.1, objective="logit")


def run_demo(out: str | None = None, classes: Sequence[int] = DEFAULT_CLASSES, *,
             size: int = DEFAULTS["size"], steps: int = DEFAULTS["steps"],
             lr: float = DEFAULTS["lr"], objective: str = DEFAULTS["objective"], seed: int = 0,
             progress: bool = False) -> dict[str, Any]:
    """Class visualizations of EfficientNet-Lite0; returns the metrics (and writes files
    to ``out`` when given)."""
    from . import zoo
    from .backends import get_backend

    model, labels = zoo.efficientnet_lite0(), zoo.imagenet_labels()
    classes = [int(c) for c in classes]
    make = {"logprob": lambda: class_prob(classes, log=True), "logit": lambda: class_logit(classes)}
    start = time.perf_counter()
    result = visualize(model, make[objective](), batch=len(classes), size=size, model_size=224,
                       steps=steps, lr=lr, seed=seed, mean=zoo.LITE_MEAN, std=zoo.LITE_STD,
                       progress=progress)
    seconds = time.perf_counter() - start
    backend = get_backend(model)
    with backend.session():  # the probabilities of the final, untransformed images
        logits = backend.ops.to_numpy(backend.forward(backend.ops.asarray(result.inputs)))
    logits = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    metrics = {
        "classes": classes, "labels": [labels[c] for c in classes],
        "probabilities": [float(probs[i, c]) for i, c in enumerate(classes)],
        "top1": [int(i) for i in probs.argmax(axis=1)],
        "spectral_slopes": [spectral_slope(image) for image in result.images],
        "seconds": seconds, "backend_seconds": result.info["backend_seconds"],
        "host_seconds": result.info["host_seconds"], "steps": steps, "size": size, "lr": lr,
        "objective": result.objective, "param": result.info["param"],
        "transforms": result.info["transforms"]}
    if out is not None:
        os.makedirs(out, exist_ok=True)
        titles = [f"{labels[c].split(',')[0]}\np={p:.3f}, slope {s:.1f}" for c, p, s in
                  zip(classes, metrics["probabilities"], metrics["spectral_slopes"])]
        metrics["figure"] = result.save(os.path.join(out, "featurevis.png"), titles=titles,
                                        cell_size=3.0)
        with open(os.path.join(out, "featurevis.json"), "w") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="featurevis_demo", help="output folder")
    parser.add_argument("--classes", type=int, nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--size", type=int, default=DEFAULTS["size"])
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--objective", choices=("logprob", "logit"), default=DEFAULTS["objective"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    metrics = run_demo(args.out, args.classes, size=args.size, steps=args.steps, lr=args.lr,
                       objective=args.objective, seed=args.seed, progress=not args.no_progress)
    for label, p, s in zip(metrics["labels"], metrics["probabilities"],
                           metrics["spectral_slopes"]):
        print(f"{label:40s} p={p:.3f}  spectral slope {s:.2f}")
    print(f"{metrics['steps']} steps at {metrics['size']}x{metrics['size']} -> 224x224 in "
          f"{metrics['seconds']:.1f} s (model {metrics['backend_seconds']:.1f} s); "
          f"wrote {metrics.get('figure')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
