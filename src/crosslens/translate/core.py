"""``translate()``: PyTorch ⇄ Keras 3 through ONNX, verified numerically."""

from __future__ import annotations

import collections
import os
import time
import warnings

import numpy as np

from . import cache as _cache
from . import onnx_utils as ou
from .errors import TranslationError, TranslationMismatchError
from .layout import LayerRef, Translation
from .report import TranslationReport, Verification
from .verify import make_probes, normalize_tolerance, run_keras, run_torch, verify

KERAS_OPSET = 17
TORCH_OPSET = 18

#: in-process memo of the last translations (cache key -> (translated model, meta)); a repeated
#: translate() of the same model in one process skips even the disk load.  Strong references,
#: so it is kept small; ``clear_memory_cache()`` empties it.
_MEMO: "collections.OrderedDict[str, tuple]" = collections.OrderedDict()
_MEMO_SIZE = 2


def clear_memory_cache() -> None:
    _MEMO.clear()


def _memo_put(key, model, meta):
    if key is None:
        return
    _MEMO[key] = (model, meta)
    _MEMO.move_to_end(key)
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)


def _framework_of(model) -> str:
    if isinstance(model, (str, os.PathLike)) and str(model).endswith(".onnx"):
        return "onnx"
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return "torch"
    except ImportError:  # pragma: no cover
        pass
    try:
        import keras

        if isinstance(model, keras.layers.Layer):
            return "keras"
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"cannot translate {type(model).__name__}: expected a torch.nn.Module or a keras.Model")


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x, dtype=np.float32)


def _perm4(rank, perm):
    return perm if rank == 4 else None


def translate(
    model,
    to: str,
    example,
    *,
    tolerance=None,
    accept_mismatch: bool = False,
    cache_dir=None,
    probes: int = 3,
    seed: int = 0,
    low_memory: bool = True,
) -> Translation:
    """Translate ``model`` (PyTorch or Keras 3) into the other framework.

    Parameters
    ----------
    model: ``torch.nn.Module`` (translated in eval mode) or ``keras.Model`` (TensorFlow backend).
    to: ``"keras"`` or ``"torch"``.
    example: one input batch in the *original* model's layout (NCHW for torch, NHWC for Keras).
    tolerance: a float bounds the outputs' relative error (``max|a-b|/max|b|``); a dict
        ``{"output": .., "gradient": .., "cosine": ..}`` sets any of the bounds.  Default
        ``{"output": 1e-4, "gradient": 1e-1, "cosine": 0.999}`` (gradient: relative error of the
        input-gradients; cosine: minimum cosine of the class-logit input-gradient).
    accept_mismatch: return the translation even if verification exceeds the tolerance
        (otherwise :class:`TranslationMismatchError`).
    cache_dir: cache folder (default ``$CROSSLENS_CACHE`` or ``~/.cache/crosslens/translations``);
        ``False`` disables the cache.
    probes, seed: number of extra random probe inputs for verification, and their seed.
    low_memory: Keras → torch only: export with the weights as function arguments instead of
        frozen constants (ResNet50: 2.4 GB instead of 4.2 GB peak; VGG16: see notes).  If that
        export fails, the frozen-graph export is used (noted in the report's warnings).

    Returns a :class:`Translation`, which unpacks as ``(translated_model, report)``.
    """
    to = {"pytorch": "torch", "tf": "keras", "tensorflow": "keras"}.get(str(to).lower(), str(to).lower())
    if to not in ("torch", "keras"):
        raise ValueError(f"to must be 'torch' or 'keras', got {to!r}")
    src = _framework_of(model)
    if src == "onnx":
        raise ValueError("use crosslens.translate.load_onnx(path) to load an ONNX file as a torch module")
    if src == to:
        raise ValueError(f"model is already a {to} model")
    tol = normalize_tolerance(tolerance)
    example = _to_numpy(example)
    if src == "torch":
        return _torch_to_keras(model, example, tol, accept_mismatch, cache_dir, probes, seed)
    return _keras_to_torch(model, example, tol, accept_mismatch, cache_dir, probes, seed, low_memory)


# ------------------------------------------------------------------------------------------------
def _finish(report: TranslationReport, accept_mismatch: bool):
    v = report.verification
    if v is not None and not v.passed:
        msg = (
            f"translation {report.source} -> {report.target} of {report.model_name!r} exceeds the tolerance:\n  "
            + "\n  ".join(v.failures())
            + "\n(pass accept_mismatch=True to use it anyway, or a larger tolerance)"
        )
        if not accept_mismatch:
            raise TranslationMismatchError(msg, report)
        report.warnings.append("verification above tolerance (accepted): " + "; ".join(v.failures()))


def _cached_verification(meta, tol) -> Verification:
    v = Verification.from_dict(meta["report"]["verification"])
    v.tolerance = tol
    v.from_cache = True
    v.passed = not v.failures()
    return v


def _torch_to_keras(model, example, tol, accept_mismatch, cache_dir, probes, seed) -> Translation:
    import keras
    import torch

    from .keras_layers import CUSTOM_OBJECTS
    from .onnx_to_keras import onnx_to_keras
    from .torch_export import torch_to_onnx

    t0 = time.perf_counter()
    direction = "torch->keras"
    was_training = model.training
    model.eval()
    warn = ["model was in training mode; translated (and verified) in eval mode"] if was_training else []
    try:
        versions = _cache.converter_versions(direction)
        store = None if cache_dir is False else _cache.TranslationCache(cache_dir)
        timings = {}
        key = None
        if store is not None:
            ts = time.perf_counter()
            fp = _cache.torch_fingerprint(model)
            key = _cache.make_key(direction, fp, example.shape, TORCH_OPSET, versions)
            timings["fingerprint"] = time.perf_counter() - ts
            hit = _cache_hit(key, store)
            if hit is not None and (hit[0] / "model.keras").is_file():
                path, meta = hit[0], hit[1]
                ts = time.perf_counter()
                if len(hit) == 3:
                    km = hit[2]
                else:
                    km = keras.models.load_model(
                        str(path / "model.keras"), custom_objects=CUSTOM_OBJECTS, compile=False
                    )
                    _memo_put(key, km, (path, meta))
                timings["load"] = time.perf_counter() - ts
                report = TranslationReport.from_dict(meta["report"])
                report.cache_hit, report.cache_path, report.timings = True, str(path), timings
                report.verification = _cached_verification(meta, tol)
                report.warnings = warn
                report.seconds = time.perf_counter() - t0
                _finish(report, accept_mismatch)
                lm = {k: LayerRef.from_dict(v) for k, v in meta["layer_map"].items()}
                return Translation(model, km, report, lm, "NCHW", "NHWC", "torch", "keras")

        ts = time.perf_counter()
        proto, info = torch_to_onnx(model, example, opset=TORCH_OPSET)
        timings["export"] = time.perf_counter() - ts
        ou.uniquify_node_names(proto.graph)
        mod_out = ou.module_outputs(proto.graph)
        prod = ou.producers(proto.graph)
        # name Keras layers after the innermost module whose output a node produces
        layer_names = {}
        for mod in sorted(mod_out, key=lambda m: m.count(".")):
            n = prod.get(mod_out[mod])
            if n is not None:
                layer_names[n.name] = mod
        ts = time.perf_counter()
        km, value_map = onnx_to_keras(proto, layer_names=layer_names, name=_model_name(model))
        timings["convert"] = time.perf_counter() - ts
        layer_map = {}
        for name, _ in model.named_modules():
            if not name:
                continue
            v = mod_out.get(name)
            if v is None or v not in value_map:
                layer_map[name] = LayerRef(None, None, v)
                continue
            lname, perm = value_map[v]
            perm = None if perm == tuple(range(len(perm))) else tuple(perm)
            layer_map[name] = LayerRef(lname, perm, v)

        rank = example.ndim
        in_perm = _perm4(rank, (0, 2, 3, 1))
        with torch.no_grad():
            out_rank = model(torch.as_tensor(example[:1])).ndim
        out_perm = _perm4(out_rank, (0, 2, 3, 1))
        report = _verified_report(
            "torch", "keras", model, lambda x, m: run_torch(model, x, m),
            lambda x, m: run_keras(km, x, m), make_probes(example, probes, seed), in_perm,
            out_perm, tol, proto, versions, info["export_method"] + " + crosslens.onnx_to_keras",
            timings, key, ("NCHW", "NHWC") if rank == 4 else ("-", "-"), layer_map,
            warn + list(info.get("export_errors", [])))
        report.seconds = time.perf_counter() - t0
        _finish(report, accept_mismatch)
        if store is not None:
            _store(store, key, proto, report, layer_map, keras_model=km, translated=km)
        report.seconds = time.perf_counter() - t0
        return Translation(model, km, report, layer_map, "NCHW" if rank == 4 else "-", "NHWC" if rank == 4 else "-", "torch", "keras")
    finally:
        model.train(was_training)


def _keras_to_torch(model, example, tol, accept_mismatch, cache_dir, probes, seed, low_memory) -> Translation:
    import onnx

    from .keras_export import keras_to_onnx
    from .onnx_to_torch import onnx_to_torch

    t0 = time.perf_counter()
    direction = "keras->torch"
    versions = _cache.converter_versions(direction)
    store = None if cache_dir is False else _cache.TranslationCache(cache_dir)
    timings = {}
    key = None
    rank = example.ndim
    if store is not None:
        ts = time.perf_counter()
        fp = _cache.keras_fingerprint(model)
        key = _cache.make_key(direction, fp, example.shape, KERAS_OPSET, versions)
        timings["fingerprint"] = time.perf_counter() - ts
        hit = _cache_hit(key, store)
        if hit is not None:
            path, meta = hit[0], hit[1]
            ts = time.perf_counter()
            if len(hit) == 3:
                tm = hit[2]
            else:
                tm = onnx_to_torch(onnx.load(str(path / "model.onnx")))
                _memo_put(key, tm, (path, meta))
            timings["load"] = time.perf_counter() - ts
            report = TranslationReport.from_dict(meta["report"])
            report.cache_hit, report.cache_path, report.timings = True, str(path), timings
            report.verification = _cached_verification(meta, tol)
            report.warnings = []
            report.seconds = time.perf_counter() - t0
            _finish(report, accept_mismatch)
            lm = {k: LayerRef.from_dict(v) for k, v in meta["layer_map"].items()}
            src_l, dst_l = ("NHWC", "NCHW") if rank == 4 else ("-", "-")
            return Translation(model, tm, report, lm, src_l, dst_l, "keras", "torch")

    ts = time.perf_counter()
    warn = []
    try:
        proto, layer_values, info = keras_to_onnx(model, example, opset=KERAS_OPSET, weights_as_inputs=low_memory)
    except Exception as exc:
        if not low_memory:
            raise
        n_params = model.count_params()
        if n_params > 50_000_000:
            raise TranslationError(
                f"low-memory Keras export failed ({type(exc).__name__}: {exc}); not falling back to the "
                f"frozen-graph export for {n_params / 1e6:.0f} M weights (VGG16 needs ~19 GB RAM there). "
                "Pass low_memory=False to force it."
            ) from exc
        warn.append(f"low-memory export failed ({type(exc).__name__}: {exc}); used the frozen-graph export")
        proto, layer_values, info = keras_to_onnx(model, example, opset=KERAS_OPSET, weights_as_inputs=False)
    timings["export"] = time.perf_counter() - ts
    ts = time.perf_counter()
    tm = onnx_to_torch(proto)
    timings["convert"] = time.perf_counter() - ts
    prod = ou.producers(proto.graph)
    layer_map = {}
    for lname, (value, perm) in layer_values.items():
        node = prod.get(value) if value else None
        layer_map[lname] = LayerRef(node.name if node is not None else None, perm, value)

    out_rank = np.ndim(np.asarray(model(example[:1], training=False)))
    in_perm = _perm4(rank, (0, 3, 1, 2))
    out_perm = _perm4(out_rank, (0, 3, 1, 2))
    report = _verified_report(
        "keras", "torch", model, lambda x, m: run_keras(model, x, m),
        lambda x, m: run_torch(tm, x, m), make_probes(example, probes, seed), in_perm, out_perm,
        tol, proto, versions, info["export_method"] + " + onnx2torch", timings, key,
        ("NHWC", "NCHW") if rank == 4 else ("-", "-"), layer_map, warn)
    report.seconds = time.perf_counter() - t0
    _finish(report, accept_mismatch)
    if store is not None:
        _store(store, key, proto, report, layer_map, translated=tm)
    report.seconds = time.perf_counter() - t0
    src_l, dst_l = ("NHWC", "NCHW") if rank == 4 else ("-", "-")
    return Translation(model, tm, report, layer_map, src_l, dst_l, "keras", "torch")


def _cache_hit(key, store):
    """The in-process memo's entry, else the disk cache's, else ``None``."""
    hit = _memo_hit(key, store)
    return hit if hit is not None else store.lookup(key)


def _memo_hit(key, store):
    """``(path, meta, model)`` from the in-process memo if the disk entry still exists."""
    item = _MEMO.get(key)
    if item is None:
        return None
    model, (path, meta) = item
    if not (path / "meta.json").is_file() or path.parent != store.root:
        _MEMO.pop(key, None)
        return None
    _MEMO.move_to_end(key)
    return path, meta, model


def _verified_report(source, target, model, run_original, run_translated, probe_inputs, in_perm,
                     out_perm, tol, proto, versions, export_method, timings, key, layouts,
                     layer_map, warnings) -> TranslationReport:
    """Verify the translation on the probes and build its report (both directions)."""
    start = time.perf_counter()
    verification = verify(run_original, run_translated, probe_inputs, in_perm, out_perm, tol)
    timings["verify"] = time.perf_counter() - start
    return TranslationReport(
        source=source, target=target, model_name=_model_name(model), seconds=0.0,
        onnx_opset=ou.opset(proto), op_counts=ou.op_counts(proto),
        converter_versions=versions, verification=verification, export_method=export_method,
        timings=timings, cache_key=key,
        input_layout={"original": layouts[0], "translated": layouts[1]},
        n_mapped_layers=sum(1 for r in layer_map.values() if r.target), warnings=warnings)


def _model_name(model) -> str:
    return getattr(model, "name", None) or type(model).__name__


def _store(store, key, proto, report, layer_map, keras_model=None, translated=None):
    meta = {"report": report.to_dict(), "layer_map": {k: v.to_dict() for k, v in layer_map.items()}}
    try:
        path = store.store(key, proto, meta, keras_model=keras_model)
        report.cache_path = str(path)
        if translated is not None:
            _memo_put(key, translated, (path, meta))
    except Exception as exc:  # a read-only home must not break translation
        warnings.warn(f"crosslens: could not write the translation cache: {exc}", RuntimeWarning, stacklevel=3)
        report.warnings.append(f"cache not written: {exc}")
