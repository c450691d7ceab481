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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402
import harness  # noqa: E402
from run import KerasSide, TorchSide, build_translation, set_threads  # noqa: E402

SIZES = (1, 2, 4, 8, 16, 32)


def _median_per_image(fn, batch: int, repeats: int) -> float:
    fn()  # warm-up (tracing, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / batch


def sweep(case: cases.ModelCase, model, repeats: int) -> dict:
    """Per-image forward and forward-backward (the floor's saliency pass) times."""
    from crosslens.backends import get_backend
    big = cases.inputs(case.framework, max(SIZES), case.size)
    backend = get_backend(model)
    per_sample = backend.bytes_per_sample(backend.prepare(big[:1]))
    side_type = TorchSide if case.framework == "torch" else KerasSide
    rows = []
    for size in SIZES:
        side = side_type(model, big[:size], cases.targets(size, 1000), harness.Device("cpu"))
        backward = side.floor("saliency", {}, size, None)
        row = {"images": size, "forward_ms": 1e3 * _median_per_image(side.forward, size, repeats),
               "backward_ms": 1e3 * _median_per_image(backward, size, repeats)}
        rows.append(row)
        print(f"{case.framework:5s} {case.name:20s} {size:3d}  forward "
              f"{row['forward_ms']:7.1f} ms/img  forward-backward {row['backward_ms']:7.1f} "
              "ms/img", flush=True)
    return {"model": case.name, "framework": case.framework, "bytes_per_sample": per_sample,
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="torch or keras")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    model_cases = cases.model_cases(quick=False)
    by_name = {(c.name, c.framework): c for c in model_cases}
    results = []
    for case in model_cases:
        if args.only and case.framework != args.only:
            continue
        model = case.model() if case.build is not None else \
            build_translation(by_name[(case.name, "torch")], case.size)[0]
        results.append(sweep(case, model, args.repeats))
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "sweeps": results},
                                             indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
