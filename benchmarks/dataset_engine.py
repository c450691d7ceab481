"""Throughput of ``cl.explain_dataset`` against a hand-written PyTorch loop (issue 17).

On the pretrained EfficientNet-Lite0 (``crosslens.zoo.efficientnet_lite0``, 224², PyTorch)
and real photos (``crosslens.zoo.sample_images``: the demo's cat and coffee photos,
tiled to N images with seeded flips, shifts, brightness and noise), this measures:

- images/s of the local engine (``cl.explain_dataset(model, x, [method], out=...,
  batch_size=B)``) and of a hand-written batched loop in raw PyTorch doing the same
  work (batches of B: ``x.requires_grad_()``, forward, the predicted class's logit,
  ``backward()``, ``x.grad``, copied into a preallocated ``.npy`` on disk made with
  ``np.lib.format.open_memmap``), and their ratio, for saliency and for integrated
  gradients with 16 Gauss-Legendre points (crosslens' default rule; the loop does one
  forward pass for the predicted class, then 16 forward-backward passes of the batch at
  ``b + α_k (x - b)``, zero baseline, and sums ``w_k · grad``);
- where the engine's time goes: its calls are wrapped with timers for the run (the
  source is not changed): ``StoreWriter.__init__`` (creating the Zarr arrays),
  ``StoreWriter.write`` (a shard's arrays and its marker), ``_finalize`` (reductions,
  Parquet table, manifest), ``_shard`` (the first call is the one-sample probe; the
  others are the shards, of which ``crosslens.explain`` is the attribution and the rest
  the forward pass for predictions and top-k); the writing share is
  ``(__init__ + write + _finalize) / wall``;
- bytes on disk per sample: the store directory's allocated size (``st_blocks``) and
  apparent size over N, next to the loop's ``.npy``;
- Ray with ``workers=2`` against the local engine (saliency), when the installed
  crosslens has ``engine="ray"`` and Ray is installed (a private local cluster per run,
  its start-up included in the time, as a user would see it).

Implementations run interleaved in one process (A, B, B, A, ...: the order alternates
by round so drift in the machine's load hits both alike) after one untimed warm-up each
on a single batch (IG: none, the saliency runs warmed the model); medians of the timed
runs. The stores and the loop's ``.npy`` go to temporary directories under ``--tmp``
(default: the system's temporary directory; keep it on a disk, not tmpfs). Usage::

    python benchmarks/dataset_engine.py --threads 1      # the issue's run (~5 min, 2 cores)
    python benchmarks/dataset_engine.py --threads 1 --n 16 --n-ig 8 --batch 8 --repeats 1

writes ``results/dataset-engine-<date>.json`` and prints the tables; the analysis is in
``NOTES.md`` (appended to ``RESULTS.md`` by ``report.py``). Saliency runs on 256 images
(3 timed runs each, Ray 1); IG-16 on 32 (1 run each: 256 would take 3-5 min per
implementation on the 2-core machine); the tables give each run's per-image time and
fixed cost, from which other sizes scale.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent


# --- inputs -------------------------------------------------------------------------------

def images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` model inputs (NCHW float32, Lite normalization) from the two demo photos,
    each flipped, shifted, brightened and noised differently (seeded)."""
    from crosslens.zoo import normalize_lite, sample_images
    _, display = sample_images(224)  # (2, 224, 224, 3) in [0, 1]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, 224, 224), np.float32)
    for i in range(n):
        img = display[i % len(display)]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.roll(img, tuple(rng.integers(-24, 25, 2)), axis=(0, 1))
        img = img * rng.uniform(0.8, 1.2) + rng.normal(0.0, 0.02, img.shape)
        out[i] = np.transpose(normalize_lite(np.clip(img, 0.0, 1.0)), (2, 0, 1))
    return out


# --- the hand-written loops -------------------------------------------------------------------

def loop_saliency(model: Any, x: np.ndarray, batch: int, path: Path) -> dict[str, float]:
    """Saliency (gradient of the predicted logit) in batches, into a ``.npy`` on disk."""
    import torch
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=x.shape)
    classes, writing = [], 0.0
    for a in range(0, len(x), batch):
        xb = torch.from_numpy(x[a:a + batch]).requires_grad_()
        logits = model(xb)
        predicted = logits.argmax(1, keepdim=True)
        logits.gather(1, predicted).sum().backward()
        classes.append(predicted[:, 0].numpy())
        start = time.perf_counter()
        out[a:a + len(xb)] = xb.grad.numpy()
        writing += time.perf_counter() - start
    start = time.perf_counter()
    out.flush()
    del out
    return {"write_s": writing + time.perf_counter() - start,
            "classes": np.concatenate(classes)}


def loop_ig(model: Any, x: np.ndarray, batch: int, path: Path,
            steps: int) -> dict[str, float]:
    """Integrated gradients (zero baseline, Gauss-Legendre on [0, 1]) in batches: one
    forward pass for the predicted class, then one forward-backward pass of the batch
    per integration point."""
    import torch
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = 0.5 * (1.0 + nodes), 0.5 * weights
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=x.shape)
    predicted, writing = [], 0.0
    for a in range(0, len(x), batch):
        xb = torch.from_numpy(x[a:a + batch])
        with torch.no_grad():
            classes = model(xb).argmax(1, keepdim=True)
        predicted.append(classes[:, 0].numpy())
        total = torch.zeros_like(xb)
        for alpha, weight in zip(alphas, weights):
            point = (float(alpha) * xb).requires_grad_()
            model(point).gather(1, classes).sum().backward()
            total += float(weight) * point.grad
        start = time.perf_counter()
        out[a:a + len(xb)] = (xb * total).numpy()
        writing += time.perf_counter() - start
    start = time.perf_counter()
    out.flush()
    del out
    return {"write_s": writing + time.perf_counter() - start,
            "classes": np.concatenate(predicted)}


# --- the engine, with timers around its parts ---------------------------------------------

@contextlib.contextmanager
def engine_timers(ray: bool = False) -> Any:
    """Wrap the engine's parts with timers for the duration (restored afterwards); with
    ``ray``, also the start and stop of Ray's cluster (the workers' shards and writes run
    in other processes, which these timers do not see)."""
    import crosslens.api as api
    from crosslens.dataset import engine, store

    spent: dict[str, list[float]] = defaultdict(list)

    def timed(owner: Any, name: str, key: str) -> Callable:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key].append(time.perf_counter() - start)
        return original, wrapper

    patches = [(store.StoreWriter, "__init__", "store_create"),
               (store.StoreWriter, "write", "store_write"),
               (store.StoreWriter, "put", "finalize_put"),
               (engine, "_write_table", "finalize_table"),
               (engine, "_finalize", "finalize"), (engine, "_shard", "shard"),
               (api, "explain", "explain")]
    if ray:
        import ray as ray_module
        patches += [(ray_module, "init", "ray_init"), (ray_module, "shutdown", "ray_shutdown")]
    originals = []
    try:
        for owner, name, key in patches:
            original, wrapper = timed(owner, name, key)
            originals.append((owner, name, original))
            setattr(owner, name, wrapper)
        yield spent
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def run_engine(model: Any, x: np.ndarray, methods: Any, batch: int, out: Path,
               engine: str = "local") -> dict[str, Any]:
    """One ``explain_dataset`` run into a fresh ``out``: wall time and its parts."""
    import crosslens as cl
    kwargs = {"workers": 2} if engine == "ray" else {}
    with engine_timers(ray=engine == "ray") as spent:
        start = time.perf_counter()
        cl.explain_dataset(model, x, methods, out=str(out), batch_size=batch, seed=0,
                           progress=False, engine=engine, **kwargs)
        wall = time.perf_counter() - start
    shards = spent["shard"][1:]  # the first call is the one-sample probe
    explains = spent["explain"][1:]  # one method: one call per shard after the probe's
    parts = {"probe_s": spent["shard"][0] if spent["shard"] else 0.0,
             "shards_s": sum(shards), "explain_s": sum(explains),
             "store_create_s": sum(spent["store_create"]),
             "store_write_s": sum(spent["store_write"]),
             "finalize_s": sum(spent["finalize"]),
             "finalize_put_s": sum(spent["finalize_put"]),
             "finalize_table_s": sum(spent["finalize_table"])}
    # what _finalize spends outside its writes: reading the shards back and reducing them
    parts["finalize_reduce_s"] = (parts["finalize_s"] - parts["finalize_put_s"]
                                  - parts["finalize_table_s"])
    parts["forward_topk_s"] = parts["shards_s"] - parts["explain_s"]
    parts["writing_s"] = parts["store_create_s"] + parts["store_write_s"] + parts["finalize_s"]
    parts["other_s"] = wall - parts["probe_s"] - parts["shards_s"] - parts["writing_s"]
    if engine == "ray":  # other_s: the workers' shards and writes, and Ray's start and stop
        parts["ray_start_stop_s"] = sum(spent["ray_init"]) + sum(spent["ray_shutdown"])
        parts["ray_workers_s"] = parts["other_s"] - parts["ray_start_stop_s"]
    return {"seconds": wall, **parts}


def disk_usage(path: Path) -> dict[str, int]:
    """Allocated (``st_blocks``) and apparent bytes and the file count under ``path``."""
    allocated = apparent = files = 0
    paths = [path] if path.is_file() else [
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    for name in paths:
        info = os.lstat(name)
        allocated += info.st_blocks * 512
        apparent += info.st_size
        files += 1
    return {"allocated": allocated, "apparent": apparent, "files": files}


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# --- one comparison ---------------------------------------------------------------------

def compare(name: str, model: Any, x: np.ndarray, methods: Any, method: str,
            loop: Callable, batch: int, repeats: int, tmp: Path, warmup: bool = True,
            ray_repeats: int = 0) -> dict[str, Any]:
    """The engine (and Ray) against the loop on ``x``, interleaved; medians."""
    from crosslens.dataset import open_store

    n = len(x)
    impls: dict[str, Callable[[np.ndarray, Path], dict]] = {
        "engine": lambda xs, d: run_engine(model, xs, methods, batch, d / "store"),
        "loop": lambda xs, d: _timed_loop(loop, model, xs, batch, d / "loop.npy")}
    if ray_repeats:
        impls["ray"] = lambda xs, d: run_engine(model, xs, methods, batch, d / "store", "ray")
    if warmup:  # untimed, on one batch (Ray: none, each run starts its own cluster anyway)
        for impl in ("engine", "loop"):
            with tempfile.TemporaryDirectory(dir=tmp) as d:
                impls[impl](x[:batch], Path(d))
    runs: dict[str, list[dict]] = {impl: [] for impl in impls}
    kept: dict[str, Any] = {}
    classes: dict[str, np.ndarray] = {}
    order = list(impls)
    for round_ in range(max(repeats, ray_repeats)):
        for impl in (order if round_ % 2 == 0 else order[::-1]):
            if len(runs[impl]) >= (ray_repeats if impl == "ray" else repeats):
                continue
            with tempfile.TemporaryDirectory(dir=tmp) as d:
                d = Path(d)
                result = impls[impl](x, d)
                if impl == "loop":
                    classes.setdefault(impl, result.pop("classes"))
                    result["disk"] = disk_usage(d / "loop.npy")
                    kept.setdefault(impl, np.load(d / "loop.npy"))
                else:
                    result["disk"] = disk_usage(d / "store")
                    result["disk_attributions"] = disk_usage(
                        d / "store" / "arrays.zarr" / "attributions" / method)
                    if impl not in kept:
                        stored = open_store(d / "store")
                        kept[impl] = stored.attributions(method)
                        classes[impl] = stored.column("target_classes")
            runs[impl].append(result)
            print(f"   {name:9s} {impl:6s} round {round_ + 1}: {result['seconds']:.1f} s "
                  f"({n / result['seconds']:.2f} images/s)", flush=True)
    summary: dict[str, Any] = {"method": name, "images": n, "batch": batch,
                               "warmup": warmup, "implementations": {}}
    for impl, items in runs.items():
        entry = {"seconds": statistics.median(r["seconds"] for r in items),
                 "all_seconds": [r["seconds"] for r in items], "runs": len(items)}
        entry["images_per_s"] = n / entry["seconds"]
        for key in items[0]:
            if key.endswith("_s") and key != "seconds":
                entry[key] = statistics.median(r[key] for r in items)
        entry["disk"] = items[0]["disk"]
        entry["bytes_per_sample"] = items[0]["disk"]["allocated"] / n
        entry["apparent_bytes_per_sample"] = items[0]["disk"]["apparent"] / n
        if "disk_attributions" in items[0]:
            entry["attribution_bytes_per_sample"] = \
                items[0]["disk_attributions"]["allocated"] / n
        summary["implementations"][impl] = entry
    engine = summary["implementations"]["engine"]
    loop_entry = summary["implementations"]["loop"]
    summary["engine_over_loop_speed"] = engine["images_per_s"] / loop_entry["images_per_s"]
    summary["writing_share"] = engine["writing_s"] / engine["seconds"]
    summary["shard_write_share"] = engine["store_write_s"] / engine["seconds"]
    # per image (shards and their writes) and per run (the rest), to scale to other N
    engine["per_image_s"] = (engine["shards_s"] + engine["store_write_s"]) / n
    engine["fixed_s"] = engine["seconds"] - engine["per_image_s"] * n
    loop_entry["per_image_s"] = loop_entry["seconds"] / n
    summary["steady_engine_over_loop_speed"] = loop_entry["per_image_s"] / engine["per_image_s"]
    summary["agreement"] = {impl: relative_difference(kept[impl], kept["loop"])
                            for impl in kept if impl != "loop"}
    summary["same_classes"] = {impl: bool(np.array_equal(classes[impl], classes["loop"]))
                               for impl in classes if impl != "loop"}
    if "ray" in runs:
        summary["ray_over_local_speed"] = (summary["implementations"]["ray"]["images_per_s"]
                                           / engine["images_per_s"])
    return summary


def _timed_loop(loop: Callable, model: Any, x: np.ndarray, batch: int,
                path: Path) -> dict[str, float]:
    start = time.perf_counter()
    parts = loop(model, x, batch, path)
    return {"seconds": time.perf_counter() - start, **parts}


# --- Ray ---------------------------------------------------------------------------------

def ray_status() -> tuple[bool, str]:
    """Whether the installed crosslens has ``engine="ray"`` and Ray is importable."""
    import inspect

    from crosslens.dataset import engine
    if "workers" not in inspect.signature(engine.explain_dataset).parameters:
        return False, "not measured (no Ray engine in this version of crosslens)"
    try:
        import ray  # noqa: F401
    except ImportError:
        return False, "not measured (Ray is not installed)"
    return True, "measured"


# --- report --------------------------------------------------------------------------------

def lines(results: dict[str, Any]) -> list[str]:
    """The results as markdown tables (printed; the analysis is in NOTES.md)."""
    out = ["| method | images | batch | runs | engine images/s | loop images/s | engine/loop "
           "| per image, engine / loop | engine fixed cost | writing share (shard writes) | "
           "store bytes/sample (attributions) | .npy bytes/sample | Δ vs loop |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["comparisons"]:
        e, lp = row["implementations"]["engine"], row["implementations"]["loop"]
        same = "" if row["same_classes"].get("engine", True) else " (other classes!)"
        out.append(
            f"| {row['method']} | {row['images']} | {row['batch']} | {e['runs']} | "
            f"{e['images_per_s']:.2f} | {lp['images_per_s']:.2f} | "
            f"{row['engine_over_loop_speed']:.2f}× | {1e3 * e['per_image_s']:.0f} / "
            f"{1e3 * lp['per_image_s']:.0f} ms ({row['steady_engine_over_loop_speed']:.2f}×) | "
            f"{e['fixed_s']:.1f} s | {100 * row['writing_share']:.1f} % "
            f"({100 * row['shard_write_share']:.1f} %) | "
            f"{e['bytes_per_sample'] / 1e3:.0f} kB ({e['attribution_bytes_per_sample'] / 1e3:.0f}"
            f" kB) | {lp['bytes_per_sample'] / 1e3:.0f} kB | "
            f"{row['agreement'].get('engine', float('nan')):.1e}{same} |")
    out += ["", "| method | engine wall | probe | forward + top-k | explain | store create | "
            "shard writes | finalize: reduce / put / table | other |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["comparisons"]:
        e = row["implementations"]["engine"]
        out.append(f"| {row['method']} | {e['seconds']:.1f} s | " + " | ".join(
            f"{e[k]:.2f} s" for k in ("probe_s", "forward_topk_s", "explain_s",
                                     "store_create_s", "store_write_s")) +
            f" | {e['finalize_reduce_s']:.2f} / {e['finalize_put_s']:.2f} / "
            f"{e['finalize_table_s']:.2f} s | {e['other_s']:.2f} s |")
    ray = results["ray"]
    if ray.get("status") == "measured":
        for row in results["comparisons"]:
            if "ray" in row["implementations"]:
                r = row["implementations"]["ray"]
                out += ["", f"Ray (2 workers) {row['method']}: {r['seconds']:.1f} s, "
                        f"{r['images_per_s']:.2f} images/s ({r['runs']} run), "
                        f"{row['ray_over_local_speed']:.2f}× the local engine's speed "
                        f"(Δ vs loop {row['agreement'].get('ray', float('nan')):.1e}); "
                        f"Ray start + stop {r['ray_start_stop_s']:.1f} s, actors' shards "
                        f"{r['ray_workers_s']:.1f} s, probe + finalize "
                        f"{r['probe_s'] + r['finalize_s']:.1f} s"]
    else:
        out += ["", f"Ray: {ray.get('status')}"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: steadier on a shared machine)")
    parser.add_argument("--n", type=int, default=256, help="images for saliency")
    parser.add_argument("--n-ig", type=int, default=32, help="images for IG")
    parser.add_argument("--batch", type=int, default=16, help="batch_size (shard) of both")
    parser.add_argument("--steps", type=int, default=16, help="IG integration points")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (saliency)")
    parser.add_argument("--repeats-ig", type=int, default=1, help="timed runs (IG)")
    parser.add_argument("--repeats-ray", type=int, default=1,
                        help="timed Ray runs (saliency; 0 skips Ray)")
    parser.add_argument("--tmp", default=tempfile.gettempdir(),
                        help="where the temporary stores are written (default: the system's "
                             "temporary directory)")
    parser.add_argument("--out", default=None,
                        help="results JSON (default results/dataset-engine-<date>.json)")
    args = parser.parse_args(argv)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # Ray workers inherit it
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import crosslens
    from crosslens.zoo import efficientnet_lite0

    started = time.perf_counter()
    load = list(os.getloadavg())
    print(f"load average at start: {', '.join(f'{v:.2f}' for v in load)}", flush=True)
    model = efficientnet_lite0()
    model.requires_grad_(False)  # only input gradients, in the loop as in crosslens
    ray_ok, ray_note = ray_status()
    use_ray = ray_ok and args.repeats_ray > 0
    if ray_ok and not use_ray:
        ray_note = "not measured (--repeats-ray 0)"
    x = images(max(args.n, args.n_ig))
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    comparisons = []
    print(f"== saliency: {args.n} images, batch {args.batch}, {args.repeats} runs each",
          flush=True)
    comparisons.append(compare("saliency", model, x[:args.n], ["saliency"], "saliency",
                               loop_saliency, args.batch, args.repeats, tmp,
                               ray_repeats=args.repeats_ray if use_ray else 0))
    print(f"== IG-{args.steps}: {args.n_ig} images, batch {args.batch}, {args.repeats_ig} "
          "runs each (no warm-up: the saliency runs warmed the model)", flush=True)
    steps = args.steps
    comparisons.append(compare(
        f"ig{steps}", model, x[:args.n_ig], {"integrated_gradients": {"steps": steps}},
        "integrated_gradients",
        lambda m, xs, b, p: loop_ig(m, xs, b, p, steps), args.batch, args.repeats_ig, tmp,
        warmup=False))
    results = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "args": vars(args), "model": "efficientnet-lite0 (torch, pretrained, 224²)",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "load_average_start": load, "load_average_end": list(os.getloadavg())},
        "versions": {"crosslens": crosslens.__version__, "torch": torch.__version__,
                     "numpy": np.__version__},
        "ray": {"status": "measured" if use_ray else ray_note, "workers": 2},
        "comparisons": comparisons, "wall_s": time.perf_counter() - started}
    out = Path(args.out) if args.out else \
        HERE / "results" / f"dataset-engine-{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join([""] + lines(results)))
    end = ", ".join(f"{v:.2f}" for v in results["machine"]["load_average_end"])
    print(f"\nload average at end: {end}; wall {results['wall_s']:.0f} s; results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
