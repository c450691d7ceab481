"""Time per image against the number of images in one pass, on the CPU.

The memory budget alone would put as many images in a pass as fit; on a CPU a large pass
of a memory-bound network streams its activations through RAM instead of cache. This
sweep measures the per-image time of forward and forward-backward passes of the benchmark
models for several pass sizes, next to crosslens' per-sample memory estimate, which is
what the CPU pass cap (``crosslens.core.chunking.CPU_PASS_BYTES``) was chosen from.

Run on a quiet machine::

    python benchmarks/chunk_sweep.py --threads 1 --out /tmp/sweep.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402
from run import set_threads  # noqa: E402

SIZES = (1, 2, 4, 8, 16, 32)


def _median_per_image(fn, batch: int, repeats: int) -> float:
    fn()  # warm-up (tracing, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def torch_passes(model, x):
    import torch
    xt = torch.from_numpy(x)

    def forward():
        with torch.no_grad():
            model(xt)

    def backward():
        inp = xt.clone().requires_grad_(True)
        torch.autograd.grad(model(inp)[:, 0].sum(), inp)
    return forward, backward


def keras_passes(model, x):
    import tensorflow as tf
    xt = tf.constant(x)

    @tf.function
    def forward_fn(v):
        return model(v, training=False)

    @tf.function
    def backward_fn(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            score = tf.reduce_sum(model(v, training=False)[:, 0])
        return tape.gradient(score, v)
    return (lambda: forward_fn(xt).numpy()), (lambda: backward_fn(xt).numpy())


def keras_lite0():
    from crosslens.translate import translate
    torch_model = cases.torch_efficientnet_lite0()
    example = cases.inputs("torch", 1, 224)
    return translate(torch_model, to="keras", example=example).translated


def sweep(name: str, framework: str, model, repeats: int) -> dict:
    import crosslens as cl  # noqa: F401  (backends register on import)
    from crosslens.backends import get_backend
    big = cases.inputs(framework, max(SIZES), 224)
    backend = get_backend(model)
    per_sample = backend.bytes_per_sample(backend.prepare(big[:1]))
    rows = []
    for size in SIZES:
        forward, backward = (torch_passes if framework == "torch" else keras_passes)(
            model, big[:size])
        row = {"images": size, "forward_ms": 1e3 * _median_per_image(forward, size, repeats),
               "backward_ms": 1e3 * _median_per_image(backward, size, repeats)}
        rows.append(row)
        print(f"{framework:5s} {name:20s} {size:3d}  forward {row['forward_ms']:7.1f} ms/img"
              f"  forward-backward {row['backward_ms']:7.1f} ms/img", flush=True)
    return {"model": name, "framework": framework, "bytes_per_sample": per_sample,
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="torch or keras")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    builders = {("resnet50", "torch"): cases.torch_resnet50,
                ("efficientnet-lite0", "torch"): cases.torch_efficientnet_lite0,
                ("resnet50", "keras"): lambda: cases.keras_resnet50(224),
                ("efficientnet-lite0", "keras"): keras_lite0}
    results = [sweep(name, framework, build(), args.repeats)
               for (name, framework), build in builders.items()
               if not args.only or framework == args.only]
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "sweeps": results},
                                             indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
