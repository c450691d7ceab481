"""Benchmark runner: crosslens vs the raw framework floor vs Captum / tf-keras-vis.

Usage::

    python benchmarks/run.py                       # the full matrix (what `make bench` runs)
    python benchmarks/run.py --quick               # tiny models: a smoke run in seconds
    python benchmarks/run.py --only framework=torch model=resnet50 batch=1 method=saliency,ig32
    python benchmarks/run.py --repeats 3 --cell-budget 30 --max-cell-seconds 600
    python benchmarks/run.py --resume benchmarks/results/<earlier>.json   # only what is missing

For every (framework, model, batch, method) cell, the implementations run in the same
process on the same inputs and targets: crosslens (``cl.explain``), the hand-written
batched floor (``floors_torch`` / ``floors_keras``), the naive per-mask loop for
occlusion and Score-CAM, and the peer toolset (Captum for PyTorch, tf-keras-vis for
Keras). Results go to ``<out-dir>/<date>.json`` after every cell; ``RESULTS.md`` is
regenerated from it (:mod:`report`). ``--resume`` keeps the measured cells of earlier
results files and runs only the others, so the full matrix can be measured in parts
(:mod:`merge` combines parts that ran separately). Methods missing from crosslens'
registry, or peers lacking a method, are recorded as skipped with the reason.

Native methods are also timed against the library that defined them, on the same model,
input and options (``cases.NATIVE_PEERS``: LRP against zennit, KernelSHAP against
Captum on the same coalitions; a few minutes in all)::

    python benchmarks/run.py --threads 1 --only framework=torch \
        method=lrp_epsilon_plus_flat,lrp_epsilon_gamma_box,kernelshap128 \
        --resume benchmarks/results/<earlier>.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import warnings
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import cases  # noqa: E402
import harness  # noqa: E402
import merge  # noqa: E402
import report  # noqa: E402
from peers import (captum_kernel_shap_peer, captum_peer, tf_keras_vis_peer,  # noqa: E402
                   zennit_lrp_peer)

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny ResNets at 64x64, batch 1 (smoke test)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch and TensorFlow (default: their own; 1 "
                             "gives steadier timings on a loaded machine)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per implementation (default 5; 1 with --quick); "
                             "0 times the warm-up call only")
    parser.add_argument("--cell-budget", type=float, default=60.0,
                        help="seconds the timed runs of one implementation may take; fewer "
                             "repeats for expensive cells (default 60)")
    parser.add_argument("--max-cell-seconds", type=float, default=0.0,
                        help="skip cells whose estimated single crosslens run exceeds this "
                             "(default 0: never; on a 2-core CPU ResNet50 Score-CAM at batch "
                             "16 takes hours per implementation)")
    parser.add_argument("--only", nargs="+", default=[], metavar="KEY=V1,V2",
                        help="filters on framework, model, batch, method (all must match)")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--memory-budget", default=None,
                        help="crosslens memory budget (default: CROSSLENS_MEMORY_BUDGET / 2GB)")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--results-md", default=os.path.join(HERE, "RESULTS.md"),
                        help="RESULTS.md to regenerate ('' for none)")
    parser.add_argument("--resume", nargs="+", default=[], metavar="JSON",
                        help="earlier results files: their measured cells are kept (and "
                             "written with the new ones), only the others run")
    parser.add_argument("--implementations", default="",
                        help="comma-separated subset of crosslens, floor, floor_loop, "
                             "captum, tf-keras-vis (default: all); with --resume, a cell "
                             "too long for one sitting can be measured one part at a time")
    parser.add_argument("--no-translation", action="store_true",
                        help="skip the Keras translation of EfficientNet-Lite0")
    args = parser.parse_args(argv)
    args.implementations = [i for i in args.implementations.split(",") if i]
    unknown = set(args.implementations) - set(report.IMPLEMENTATIONS)
    if unknown:
        parser.error(f"unknown --implementations {sorted(unknown)}; choose from "
                     f"{', '.join(report.IMPLEMENTATIONS)}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    return args


def _filters(only: list[str]) -> dict[str, set[str]]:
    out = {}
    for item in only:
        key, _, values = item.partition("=")
        if key not in ("framework", "model", "batch", "method") or not values:
            raise SystemExit(f"--only takes framework=, model=, batch=, method=; got {item!r}")
        out[key] = set(values.split(","))
    return out


def _wanted(filters: dict[str, set[str]], **fields: Any) -> bool:
    return all(str(value) in filters[key] for key, value in fields.items() if key in filters)


def environment(device: harness.Device) -> dict[str, Any]:
    versions = {}
    for name in ("crosslens", "torch", "tensorflow", "keras", "captum", "tf_keras_vis",
                 "numpy"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except Exception:
            versions[name] = None
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "device": device.kind, "device_name": device.name}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return {"versions": versions, "machine": info}


# --- per-framework adapters -------------------------------------------------------------

class TorchSide:
    framework, peer_name = "torch", "captum"

    def __init__(self, model: Any, x: np.ndarray, t: np.ndarray, device: harness.Device):
        import torch
        self.torch = torch
        where = "cuda" if device.kind == "cuda" else "cpu"
        self.model = model.to(where)
        self.x = torch.as_tensor(x, device=where)
        self.t = torch.as_tensor(t, device=where)

    def to_numpy(self, value: Any) -> np.ndarray:
        value = getattr(value, "attributions", value)
        return value.detach().float().cpu().numpy() if hasattr(value, "detach") \
            else np.asarray(value)

    def forward(self) -> Any:
        with self.torch.no_grad():
            return self.model(self.x)

    def floor(self, name: str, spec: dict, chunk: int, layer: str | None, noise: Any = None):
        import floors_torch as fl
        m, x, t = self.model, self.x, self.t
        if name == "saliency":
            return lambda: fl.saliency(m, x, t, chunk)
        if name.startswith("ig"):
            return lambda: fl.integrated_gradients(m, x, t, chunk, spec["steps"])
        if name.startswith("smoothgrad"):
            sigma = self.sigma()
            given = None if noise is None else self.torch.as_tensor(noise, device=x.device)
            return lambda: fl.smoothgrad(m, x, t, chunk, spec["samples"], sigma, given)
        if name == "gradcam":
            return lambda: fl.grad_cam(m, x, t, chunk, layer)
        if name == "scorecam":
            return lambda: fl.score_cam(m, x, t, chunk, layer)
        if name == "occlusion":
            return lambda: fl.occlusion(m, x, t, chunk, spec["patch"], spec["stride"])
        return None

    def floor_loop(self, name: str, spec: dict, chunk: int, layer: str | None):
        import floors_torch as fl
        m, x, t = self.model, self.x, self.t
        if name == "scorecam":
            return lambda: fl.score_cam_loop(m, x, t, chunk, layer)
        if name == "occlusion":
            return lambda: fl.occlusion_loop(m, x, t, chunk, spec["patch"], spec["stride"])
        return None

    def sigma(self) -> Any:
        flat = self.x.reshape(len(self.x), -1)
        spread = (flat.amax(1) - flat.amin(1)).view((-1,) + (1,) * (self.x.ndim - 1))
        return cases.NOISE_LEVEL * spread

    def peer(self, name: str, spec: dict, chunk: int, layer: str | None):
        params = dict(spec, sigma=float(self.sigma().mean()), noise_level=cases.NOISE_LEVEL)
        return captum_peer(name, self.model, self.x, self.t, chunk, params, layer)

    def noise(self, samples: int, seed: int = 1) -> np.ndarray:
        shape = (samples,) + tuple(self.x.shape)
        sigma = self.sigma().cpu().numpy()
        return (np.random.default_rng(seed).standard_normal(shape) * sigma).astype(np.float32)


class KerasSide(TorchSide):
    framework, peer_name = "keras", "tf-keras-vis"

    def __init__(self, model: Any, x: np.ndarray, t: np.ndarray, device: harness.Device):
        import tensorflow as tf
        self.tf = tf
        self.model = model
        self.x = tf.constant(x)
        self.t = tf.constant(t)
        self._floor = {}

    def to_numpy(self, value: Any) -> np.ndarray:
        value = getattr(value, "attributions", value)
        return np.asarray(value, dtype=np.float32)

    def _floor_of(self, layer: str | None):
        from floors_keras import KerasFloor
        if layer not in self._floor:
            self._floor[layer] = KerasFloor(self.model, layer)
        return self._floor[layer]

    def forward(self) -> Any:
        return self._floor_of(None).forward(self.x)

    def floor(self, name: str, spec: dict, chunk: int, layer: str | None, noise: Any = None):
        x, t = self.x, self.t
        f = self._floor_of(layer if spec.get("layer") else None)
        if name == "saliency":
            return lambda: f.saliency(x, t, chunk)
        if name.startswith("ig"):
            return lambda: f.integrated_gradients(x, t, chunk, spec["steps"])
        if name.startswith("smoothgrad"):
            sigma = self.sigma()
            given = None if noise is None else self.tf.constant(noise)
            return lambda: f.smoothgrad(x, t, chunk, spec["samples"], sigma, given)
        if name == "gradcam":
            return lambda: f.grad_cam(x, t, chunk)
        if name == "scorecam":
            return lambda: f.score_cam(x, t, chunk)
        if name == "occlusion":
            return lambda: f.occlusion(x, t, chunk, spec["patch"], spec["stride"])
        return None

    def floor_loop(self, name: str, spec: dict, chunk: int, layer: str | None):
        x, t = self.x, self.t
        f = self._floor_of(layer if spec.get("layer") else None)
        if name == "scorecam":
            return lambda: f.score_cam_loop(x, t, chunk)
        if name == "occlusion":
            return lambda: f.occlusion_loop(x, t, chunk, spec["patch"], spec["stride"])
        return None

    def sigma(self) -> Any:
        tf = self.tf
        flat = tf.reshape(self.x, (self.x.shape[0], -1))
        spread = tf.reduce_max(flat, 1) - tf.reduce_min(flat, 1)
        return cases.NOISE_LEVEL * tf.reshape(spread, (-1, 1, 1, 1))

    def peer(self, name: str, spec: dict, chunk: int, layer: str | None):
        params = dict(spec, noise_level=cases.NOISE_LEVEL)
        return tf_keras_vis_peer(name, self.model, self.x, np.asarray(self.t), chunk, params,
                                 layer)

    def noise(self, samples: int, seed: int = 1) -> np.ndarray:
        shape = (samples,) + tuple(self.x.shape)
        sigma = np.asarray(self.sigma())
        return (np.random.default_rng(seed).standard_normal(shape) * sigma).astype(np.float32)


# --- one cell ----------------------------------------------------------------------------

def crosslens_method(name: str) -> tuple[str | None, dict, str]:
    """``(registered name, options, note)``; name None when the method is not registered."""
    from crosslens.core.errors import UnknownMethodError
    from crosslens.core.registry import get_method
    spec = cases.METHODS[name]
    try:
        registered = get_method(spec["method"])
    except UnknownMethodError:
        return None, {}, f"crosslens has no {spec['method']!r} registered (skipped)"
    options = dict(spec["options"])
    if name.startswith("smoothgrad"):
        options["noise_level"] = cases.NOISE_LEVEL
    missing = [k for k in options if k not in registered.options]
    if missing:
        return None, {}, (f"{registered.name} has no option(s) {missing} "
                          f"(its options: {list(registered.options)})")
    return registered.name, options, ""


def run_cell(side: TorchSide, model_name: str, batch: int, name: str, plan: dict,
             args: argparse.Namespace, device: harness.Device,
             have: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """Measure one cell: every implementation that applies, except those in ``have``
    (measured by an earlier run) and those left out by ``--implementations``; None when
    that leaves nothing to run."""
    import crosslens as cl
    spec = cases.METHODS[name]
    cell: dict[str, Any] = {"framework": side.framework, "model": model_name, "batch": batch,
                            "method": name, "crosslens_method": spec["method"],
                            "options": spec["options"], "implementations": {},
                            "agreement": {}, "ratios": {}, "notes": [],
                            "measured": dt.datetime.now().isoformat(timespec="seconds"),
                            "load_average": _load_average()}
    method, options, note = crosslens_method(name)
    if method is None:
        cell.update(status="skipped", notes=[note])
        return cell
    backward = spec["passes"] == "backward"
    chunk = plan["chunk_backward"] if backward else plan["chunk_forward"]
    layer = plan["layer"] if spec.get("layer") else None
    units = _units(name, spec, plan)
    estimate = units / batch * (plan["t_backward"] if backward else plan["t_forward"])
    crosslens_pass = plan["pass_backward"] if backward else plan["pass_forward"]
    cell.update(chunk=chunk, crosslens_pass=crosslens_pass, layer=layer, units=units,
                estimated_s=estimate)
    if args.max_cell_seconds and estimate > args.max_cell_seconds:
        cell.update(status="skipped", notes=[
            f"estimated {estimate / 60:.0f} min per run > --max-cell-seconds "
            f"{args.max_cell_seconds:g} (--max-cell-seconds 0 runs it)"])
        return cell
    target = [int(i) for i in np.asarray(side.t if side.framework == "keras" else
                                         side.t.cpu())]
    kwargs = dict(options, target=target, seed=0, memory_budget=args.memory_budget)
    if layer is not None:
        kwargs["layer"] = layer
    fns = {"crosslens": lambda: cl.explain(side.model, side.x, method, **kwargs),
           "floor": side.floor(name, spec, chunk, layer)}
    loop = side.floor_loop(name, spec, chunk, layer)
    if loop is not None:
        fns["floor_loop"] = loop
    peer = side.peer(name, spec, chunk, layer)
    if isinstance(peer, str):
        cell["notes"].append(peer)
    else:
        fns[side.peer_name] = peer
    cell["planned"] = list(fns)
    fns = {impl: fn for impl, fn in fns.items() if impl not in have and
           (not args.implementations or impl in args.implementations)}
    if not fns:
        return None
    measured = harness.measure_all(fns, framework=side.framework, device=device,
                                   repeats=args.repeats, budget_s=args.cell_budget,
                                   to_numpy=side.to_numpy)
    reference = measured["crosslens"].output if "crosslens" in measured else None
    warm = measured["crosslens"].warmup_s if "crosslens" in measured else None
    if name.startswith("smoothgrad") and "floor" in measured and warm is not None and \
            warm < args.cell_budget:
        # random: compare on explicit noise instead (two extra untimed runs)
        noise = side.noise(spec["samples"])
        given = cl.explain(side.model, side.x, method, **dict(kwargs, noise=noise))
        floor = side.floor(name, spec, chunk, layer, noise=noise)()
        cell["agreement"]["floor"] = harness.relative_difference(side.to_numpy(floor),
                                                                 side.to_numpy(given))
    for impl, m in measured.items():
        cell["implementations"][impl] = dict(m.as_dict(), measured=cell["measured"])
        if impl != "crosslens" and reference is not None and \
                not name.startswith("smoothgrad"):
            cell["agreement"][impl] = harness.relative_difference(m.output, reference)
        if m.error:
            cell["notes"].append(f"{impl}: {m.error}")
    cell["ratios"] = report.ratios(cell["implementations"])
    cell["status"] = report.cell_status(cell)
    return cell


def grid_mask(size: int, cells: int) -> np.ndarray:
    """A ``cells`` x ``cells`` grid of feature ids over a square image, ``(1, 1, H, W)``
    (crosslens' default mask for ``cells = 4``)."""
    index = np.minimum(np.arange(size) * cells // size, cells - 1)
    return (index[:, None] * cells + index[None, :]).reshape(1, 1, size, size)


def run_native_peer(side: TorchSide, model_name: str, name: str, plan: dict,
                    args: argparse.Namespace, device: harness.Device) -> dict[str, Any]:
    """A native crosslens method against the library that defined it (cases.NATIVE_PEERS),
    interleaved in one process on the same model, input and options, as run_cell times a
    cell; ``agreement`` is max |crosslens - peer| / max |peer|."""
    import crosslens as cl
    spec = cases.NATIVE_PEERS[name]
    peer_name = spec["peer"]
    row: dict[str, Any] = {"framework": side.framework, "model": model_name,
                           "batch": len(side.x), "comparison": name, "method": spec["method"],
                           "options": dict(spec["options"]), "peer": peer_name,
                           "implementations": {}, "notes": [],
                           "measured": dt.datetime.now().isoformat(timespec="seconds"),
                           "load_average": _load_average()}
    target = [int(i) for i in np.asarray(side.t.cpu())]
    kwargs = dict(spec["options"], target=target, seed=0, memory_budget=args.memory_budget)
    if peer_name == "zennit":
        peer = zennit_lrp_peer(side.model, side.x, side.t, spec["options"])
    else:
        from crosslens.methods.shapley import _sampled_coalitions
        mask = grid_mask(plan["size"], spec["grid"])
        m, samples = spec["grid"] ** 2, spec["options"]["samples"]
        kwargs["feature_mask"] = mask
        row["options"].update(features=m, chunk=plan["chunk_forward"],
                              crosslens_pass=plan["pass_forward"])
        # crosslens draws its coalitions from np.random.default_rng(seed) (seed 0 here)
        coalitions = _sampled_coalitions(m, samples, np.random.default_rng(0))
        peer = captum_kernel_shap_peer(side.model, side.x, target, plan["chunk_forward"],
                                       mask, coalitions)
    if isinstance(peer, str):
        row.update(status="skipped", notes=[peer])
        return row
    fns = {"crosslens": lambda: cl.explain(side.model, side.x, spec["method"], **kwargs),
           peer_name: peer}
    repeats = min(args.repeats, spec.get("repeats", args.repeats))
    measured = harness.measure_all(fns, framework=side.framework, device=device,
                                   repeats=repeats, budget_s=args.cell_budget,
                                   to_numpy=side.to_numpy)
    for impl, m in measured.items():
        row["implementations"][impl] = dict(m.as_dict(), measured=row["measured"])
        if m.error:
            row["notes"].append(f"{impl}: {m.error}")
    row["agreement"] = harness.relative_difference(measured["crosslens"].output,
                                                   measured[peer_name].output)
    if peer_name == "zennit" and measured["crosslens"].output is not None:
        # untimed: zennit's own batch-norm merge, which is not exact (see peers.py)
        plain = zennit_lrp_peer(side.model, side.x, side.t, spec["options"], exact_merge=False)
        row["agreement_plain_merge"] = harness.relative_difference(
            measured["crosslens"].output, side.to_numpy(plain()))
    row["ratios"] = report.ratios(row["implementations"])
    ok = all(m.seconds for m in measured.values())
    row["status"] = "ok" if ok else "error"
    return row


def _load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _units(name: str, spec: dict, plan: dict) -> int:
    """Images through the model in one run (for the time estimate)."""
    n = plan["batch"]
    if name.startswith("ig"):
        return spec["steps"] * n
    if name.startswith("smoothgrad"):
        return spec["samples"] * n
    if name == "scorecam":
        return plan["channels"] * n
    if name == "occlusion":
        import math
        per_axis = math.ceil((plan["size"] - spec["patch"]) / spec["stride"]) + 1
        return per_axis * per_axis * n
    return n


def plan_model(side: Any, args: argparse.Namespace, device: harness.Device,
               layer: str | None = None) -> dict:
    """Chunk sizes crosslens plans, the CAM layer (default: the last spatial layer, as
    crosslens' CAMs choose), and one pass's time for estimates."""
    from crosslens.backends import get_backend
    from crosslens.core.chunking import parse_budget
    backend = get_backend(side.model)
    with backend.session(parse_budget(args.memory_budget)):
        native = backend.prepare(side.x)
        big = 10 ** 7
        chunk_backward = backend.max_batch(native, True, total=big)
        chunk_forward = backend.max_batch(native, False, total=big)
        # crosslens' own passes: on a CPU also capped to stay small (Backend.pass_size)
        pass_backward = backend.pass_size(native, True, total=big)
        pass_forward = backend.pass_size(native, False, total=big)
        if layer is None:
            spatial = backend.spatial_layers(native)
            layer = spatial[-1] if spatial else None
        channels = 0
        if layer is not None:
            shape = backend.ops.shape(backend.activations(native[:1], [layer])[layer])
            channels = shape[1] if backend.layout == "channels_first" else shape[-1]
    t_forward = _probe(side.forward, side, device)
    t_backward = _probe(side.floor("saliency", {}, 10 ** 6, None), side, device)
    return {"chunk_backward": chunk_backward, "chunk_forward": chunk_forward,
            "pass_backward": pass_backward, "pass_forward": pass_forward, "layer": layer,
            "channels": channels, "t_forward": t_forward, "t_backward": t_backward,
            "batch": len(side.x), "size": int(side.x.shape[-1] if side.framework == "torch"
                                                else side.x.shape[1])}


def _probe(fn, side, device) -> float:
    fn()  # warm up (tracing)
    seconds, _, _ = harness.time_call(fn, side.framework, device)
    return seconds


def build_translation(torch_case: cases.ModelCase, size: int) -> tuple[Any, dict, Any]:
    """The Keras translation of a PyTorch model, timed (first call and cached call):
    ``(keras model, timings, Translation)``."""
    from crosslens.translate import translate
    model = torch_case.model()
    example = cases.inputs("torch", 1, size)
    info: dict[str, Any] = {"model": torch_case.name}
    with tempfile.TemporaryDirectory() as cache:
        with harness.RssPeak() as peak:
            start = time.perf_counter()
            first = translate(model, to="keras", example=example, cache_dir=cache)
            info["first_s"] = time.perf_counter() - start
        info["first_peak_mb"] = peak.extra / 2 ** 20
        with harness.RssPeak() as peak:
            start = time.perf_counter()
            cached = translate(model, to="keras", example=example, cache_dir=cache)
            info["cached_s"] = time.perf_counter() - start
        info["cached_peak_mb"] = peak.extra / 2 ** 20
    del first
    keras_model, _ = cached  # a Translation unpacks as (translated model, report)
    return keras_model, info, cached


def translated_layer(translation: Any, torch_case: cases.ModelCase, size: int) -> str | None:
    """The Keras layer the translation maps the PyTorch model's CAM layer to."""
    from crosslens.backends import get_backend
    backend = get_backend(torch_case.model())
    with backend.session():
        spatial = backend.spatial_layers(backend.prepare(cases.inputs("torch", 1, size)))
    return translation.layer(spatial[-1]) if spatial else None


def set_threads(threads: int | None) -> None:
    """Pin torch's and TensorFlow's CPU thread pools (before TensorFlow starts)."""
    if not threads:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except (ImportError, RuntimeError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_threads(args.threads)
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
    filters = _filters(args.only)
    device = harness.Device(cases.device_kind())
    if device.kind == "cuda":
        import torch
        device.name = torch.cuda.get_device_name()
    date = dt.datetime.now().strftime("%Y-%m-%d")
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"{date}{'-quick' if args.quick else ''}.json")
    results: dict[str, Any] = {"date": dt.datetime.now().isoformat(timespec="seconds"),
                               "quick": args.quick, "args": vars(args),
                               **environment(device), "cells": [], "translation": None,
                               "skipped_models": []}
    earlier = [merge.load(p) for p in args.resume]
    previous = merge.merge(earlier) if earlier else {"cells": []}
    done = report.measured_keys(previous)
    have = {report.cell_key(c): frozenset(c["implementations"]) for c in previous["cells"]
            if c.get("status") == "partial"}
    done_featurevis = {(row["framework"], row["model"]) for part in earlier
                       for row in part.get("featurevis") or []}
    done_native = {report.native_key(row) for part in earlier
                   for row in part.get("native_peers") or [] if row.get("status") == "ok"}

    def save() -> dict[str, Any]:
        combined = merge.merge(earlier + [results]) if earlier else results
        merge.save(combined, path)
        return combined

    batches = args.batches or (cases.QUICK_BATCHES if args.quick else cases.BATCHES)
    methods = list(cases.METHODS)
    model_cases = cases.model_cases(args.quick)
    by_name = {(c.name, c.framework): c for c in model_cases}
    cam_layers: dict[str, str | None] = {}  # translated models: the torch CAM layer's match

    def todo(case: cases.ModelCase, batch: int) -> list[str]:
        if not _wanted(filters, framework=case.framework, model=case.name, batch=batch):
            return []
        return [m for m in methods if _wanted(filters, method=m)
                and (case.framework, case.name, batch, m) not in done]

    for case in model_cases:
        if not _wanted(filters, framework=case.framework, model=case.name):
            continue
        featurevis = _wanted(filters, method="featurevis") and \
            (case.framework, case.name) not in done_featurevis
        native = [name for name, spec in cases.NATIVE_PEERS.items()
                  if case.framework == "torch" and case.name in spec["models"]
                  and _wanted(filters, method=name, batch=spec["batch"])
                  and (case.framework, case.name, spec["batch"], name) not in done_native]
        if not featurevis and not native and not any(todo(case, batch) for batch in batches):
            continue
        try:
            if case.build is None:  # the Keras translation of the PyTorch model
                if args.no_translation:
                    raise RuntimeError("--no-translation")
                model, info, translation = build_translation(by_name[(case.name, "torch")],
                                                             case.size)
                results["translation"] = info
                case._model = model
                cam_layers[case.name] = translated_layer(
                    translation, by_name[(case.name, "torch")], case.size)
            model = case.model()
        except Exception as error:
            note = f"{case.framework} {case.name}: {type(error).__name__}: {error}"[:300]
            print(f"skip {note}", flush=True)
            results["skipped_models"].append(note)
            continue
        for batch in batches:
            names = todo(case, batch)
            if not names:
                continue
            x = cases.inputs(case.framework, batch, case.size)
            classes = 1000
            t = cases.targets(batch, classes)
            side = (TorchSide if case.framework == "torch" else KerasSide)(model, x, t, device)
            plan = plan_model(side, args, device, cam_layers.get(case.name)
                              if case.build is None else None)
            print(f"== {case.framework} {case.name} batch {batch}: chunk "
                  f"{plan['chunk_backward']}/{plan['chunk_forward']} (backward/forward; "
                  f"crosslens {plan['pass_backward']}/{plan['pass_forward']}), "
                  f"CAM layer {plan['layer']} ({plan['channels']} channels), pass "
                  f"{plan['t_backward']:.3f}/{plan['t_forward']:.3f} s", flush=True)
            for name in names:
                cell = run_cell(side, case.name, batch, name, plan, args, device,
                                have.get((case.framework, case.name, batch, name),
                                         frozenset()))
                if cell is None:
                    continue
                cell["plan"] = {k: v for k, v in plan.items() if k != "batch"}
                results["cells"].append(cell)
                print("   " + report.cell_line(cell), flush=True)
                save()
        plans: dict[int, tuple[TorchSide, dict]] = {}
        for name in native:  # native methods against their reference library
            batch = cases.NATIVE_PEERS[name]["batch"]
            if batch not in plans:
                side = TorchSide(model, cases.inputs(case.framework, batch, case.size),
                                 cases.targets(batch, 1000), device)
                plans[batch] = side, plan_model(side, args, device)
                print(f"== {case.framework} {case.name} batch {batch}: native vs peer",
                      flush=True)
            side, plan = plans[batch]
            row = run_native_peer(side, case.name, name, plan, args, device)
            results.setdefault("native_peers", []).append(row)
            print("   " + report.native_line(row), flush=True)
            save()
        if featurevis:
            results.setdefault("featurevis", []).append(
                featurevis_speed(case, model, quick=args.quick))
            print(f"   featurevis: {results['featurevis'][-1]['steps_per_second']:.2f} "
                  "steps/s", flush=True)
            save()
    combined = save()
    print(f"results: {path}")
    if args.results_md:
        report.write(combined, args.results_md)
        print(f"table: {args.results_md}")
    return 0


def featurevis_speed(case: Any, model: Any, quick: bool) -> dict[str, Any]:
    """Feature-visualization steps per second (Fourier, standard transforms) at batch 4."""
    from crosslens.featurevis import steps_per_second

    size = case.size if quick else 224
    measured = steps_per_second(model, size=size, batch=4, steps=2 if quick else 5,
                                warmup=1)
    return {"model": case.name, "framework": case.framework, **measured}


if __name__ == "__main__":
    sys.exit(main())
