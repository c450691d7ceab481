"""``translate()``: PyTorch ⇄ Keras 3 through ONNX, verified numerically.

One pipeline serves both directions (:mod:`.directions` describes what differs):
check the arguments → cache lookup → export to ONNX → convert → verify → cache → report.
The model's framework is found, the example validated and both models are run for the
verification by crosslens' own backends (:mod:`crosslens.backends`).
"""

from __future__ import annotations

import collections
import operator
import os
import time
import warnings

import numpy as np

from . import cache as _cache
from . import onnx_utils as ou
from ..backends import framework_of, get_backend
from ..core.arrays import to_numpy
from ..core.errors import CrosslensError, InputError
from .directions import DIRECTIONS, Direction, model_name
from .errors import (
    TranslationError,
    TranslationInputError,
    TranslationMismatchError,
    TranslationOptionError,
    TranslationUnsupportedError,
    UnsupportedModelError,
)
from .layout import LayerRef, Translation, apply_perm
from .locate import FRAMEWORK_NAMES, failure
from .report import TranslationReport, Verification
from .verify import make_probes, normalize_tolerance, verify

#: in-process memo of the last translations (cache key -> (translated model, meta)); a repeated
#: translate() of the same model in one process skips even the disk load.  Strong references,
#: so it is kept small; ``clear_memory_cache()`` empties it.
_MEMO: "collections.OrderedDict[str, tuple]" = collections.OrderedDict()
_MEMO_SIZE = 2


def clear_memory_cache() -> None:
    """Empty the in-process memo of recent translations (the disk cache stays)."""
    _MEMO.clear()


def _memo_put(key, model, meta):
    if key is None:
        return
    _MEMO[key] = (model, meta)
    _MEMO.move_to_end(key)
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)


# ------------------------------------------------------------------------ argument checks
def _framework_of(model) -> str:
    if isinstance(model, (str, os.PathLike)):
        raise UnsupportedModelError(
            f"cannot translate the path {os.fspath(model)!r}: translate() takes a model object. Load it "
            "first: crosslens.loading.load_model(path) (.keras, TorchScript .pt, module:callable) or "
            "crosslens.translate.load_onnx(path) for an .onnx file (which gives a torch module)")
    found = framework_of(model)
    if found not in DIRECTIONS:
        raise UnsupportedModelError(
            f"cannot translate a {type(model).__module__}.{type(model).__qualname__}: translate() takes a "
            "torch.nn.Module or a Keras 3 model (keras.Model)")
    return found


_TARGETS = {"torch": "torch", "pytorch": "torch", "keras": "keras", "tf": "keras", "tensorflow": "keras"}


def _target_of(to) -> str:
    target = _TARGETS.get(to.lower()) if isinstance(to, str) else None
    if target is None:
        raise TranslationOptionError(f"to must be 'torch' or 'keras', got {to!r}")
    return target


def _check_options(probes, seed, cache_dir, accept_mismatch, low_memory) -> None:
    """Reject bad keyword arguments up front, before any export work."""
    def integer(name, value, low):
        try:
            ok = not isinstance(value, (bool, np.bool_)) and operator.index(value) >= low
        except TypeError:
            ok = False
        if not ok:
            raise TranslationOptionError(f"{name} must be an integer >= {low}, got {value!r}")

    integer("probes", probes, 0)
    integer("seed", seed, 0)
    if not (cache_dir is None or cache_dir is False or isinstance(cache_dir, (str, os.PathLike))):
        raise TranslationOptionError(
            f"cache_dir must be a folder path, None (default folder) or False (no cache), got {cache_dir!r}")
    for name, value in (("accept_mismatch", accept_mismatch), ("low_memory", low_memory)):
        if not (isinstance(value, (bool, np.bool_)) or (isinstance(value, int) and value in (0, 1))):
            raise TranslationOptionError(f"{name} must be True or False, got {value!r}")


def _example_array(example) -> tuple[np.ndarray, bool]:
    """The example as a float32 numpy batch and whether it held integers, or
    :class:`TranslationInputError`."""
    if example is None:
        raise TranslationInputError(
            "translate() needs an example input batch in the original model's layout "
            "(NCHW for PyTorch, NHWC for Keras), e.g. example=x[:2]")
    if isinstance(example, dict) or (isinstance(example, tuple) and len(example) > 1
                                     and all(hasattr(e, "shape") for e in example)):
        raise TranslationInputError(
            "translate() takes one input array; models with several inputs cannot be translated yet "
            "(explain them with an implementation for their own framework, implementation='crosslens')")
    try:
        example = to_numpy(example)
        kind = example.dtype.kind
        array = np.asarray(example, dtype=np.float32)
    except Exception as error:
        raise TranslationInputError(
            f"the example must be a numeric array (numpy, torch or TensorFlow tensor), got "
            f"{type(example).__name__}: {error}") from error
    if array.ndim < 2 or array.shape[0] < 1 or array.size == 0:
        raise TranslationInputError(
            f"the example must be a non-empty batch with a leading batch axis, got shape {array.shape}; "
            "add a batch axis, e.g. x[None]")
    return array, kind in "iub"


def _check_model(model, src: str, integer_example: bool) -> None:
    """Refuse what translation does not cover, before exporting: several inputs, token inputs."""
    try:
        backend = get_backend(model)
        tokens = next(iter(backend.embedding_layers()), None)
        several = (backend.input_count() or 1) > 1
    except Exception:  # only a pre-check: the export reports what the backend could not
        return
    if several:
        raise TranslationUnsupportedError(
            f"{FRAMEWORK_NAMES[src]} models with several inputs cannot be translated yet; explain this "
            "model with an implementation for its own framework (implementation='crosslens')")
    if tokens and integer_example:
        raise TranslationUnsupportedError(
            f"layer {tokens!r} ({type(backend.layer_object(tokens)).__name__}) takes integer tokens, "
            "which translation cannot verify (it probes the model with random float inputs); explain "
            "this model with an implementation for its own framework (implementation='crosslens')")


def _check_example(model, src: str, example: np.ndarray) -> None:
    """Validate the example against the model with its crosslens backend, before exporting:
    a wrong layout then reads as the layout problem and its fix, not as a failed export."""
    try:
        backend = get_backend(model)
        with backend.session():
            backend.prepare(example)
    except InputError as error:
        raise TranslationInputError(
            f"the example given to translate() does not fit this {FRAMEWORK_NAMES[src]} model: {error}"
        ) from error
    except CrosslensError:
        raise
    except Exception:  # only a pre-check: the export reports what the backend could not
        return


def _required(direction: Direction) -> None:
    from ._deps import require

    for package, purpose in direction.requires:
        require(package, purpose)


# ------------------------------------------------------------------------------ translate
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

    Raises
    ------
    TranslationError
        Every failure is a :class:`TranslationError` (a
        :class:`~crosslens.core.errors.CrosslensError`): :class:`TranslationOptionError` (bad
        ``to=``, ``tolerance=`` ...), :class:`UnsupportedModelError`,
        :class:`TranslationInputError` (the example does not fit the model: wrong layout,
        rank, channels), :class:`MissingDependencyError`, :class:`UnsupportedOpError` and
        :class:`ConversionError` (an exporter or converter failed; the first line names the
        user's layer and the cause, the original exception is chained), and
        :class:`TranslationMismatchError`.  The model is left unchanged.
    """
    to = _target_of(to)
    src = _framework_of(model)
    if src == to:
        other = "keras" if to == "torch" else "torch"
        raise TranslationOptionError(
            f"model is already a {FRAMEWORK_NAMES[to]} model; translate() converts it to the other "
            f"framework: to={other!r}")
    tol = normalize_tolerance(tolerance)
    _check_options(probes, seed, cache_dir, accept_mismatch, low_memory)
    example, integer = _example_array(example)
    _check_model(model, src, integer)
    _check_example(model, src, example)
    direction = DIRECTIONS[src]
    _required(direction)
    try:
        return _pipeline(direction, model, example, tol, accept_mismatch, cache_dir, probes, seed, low_memory)
    except CrosslensError:
        raise
    except Exception as error:  # whatever escaped the steps' own handling
        raise failure(error, model=model, source=src, target=to, stage="convert",
                      what="the translation") from error


def _pipeline(d: Direction, model, example, tol, accept_mismatch, cache_dir, probes, seed,
              low_memory) -> Translation:
    """Cache lookup → export → convert → verify → cache → report, for direction ``d``."""
    t0 = time.perf_counter()
    layouts = d.layouts if example.ndim == 4 else ("-", "-")
    with d.scope(model) as warn:
        versions = _cache.converter_versions(d.name)
        store = None if cache_dir is False else _cache.TranslationCache(cache_dir)
        timings, key = {}, None
        if store is not None:
            ts = time.perf_counter()
            key = _cache.make_key(d.name, d.fingerprint(model), example.shape, d.opset, versions)
            timings["fingerprint"] = time.perf_counter() - ts
            cached = _cached(d, key, store, timings)
            if cached is not None:
                translated, path, meta = cached
                report = TranslationReport.from_dict(meta["report"])
                report.cache_hit, report.cache_path, report.timings = True, str(path), timings
                report.verification = _cached_verification(meta, tol)
                report.warnings = list(warn)
                report.seconds = time.perf_counter() - t0
                layer_map = {k: LayerRef.from_dict(v) for k, v in meta["layer_map"].items()}
                _finish(report, accept_mismatch, _divergence(model, translated, layer_map, example, d))
                return Translation(model, translated, report, layer_map, *layouts, d.source, d.target)

        ts = time.perf_counter()
        proto, export_method, extra = d.export(model, example, low_memory, warn)
        timings["export"] = time.perf_counter() - ts
        ts = time.perf_counter()
        translated, layer_map = d.convert(model, proto, extra)
        timings["convert"] = time.perf_counter() - ts

        ts = time.perf_counter()
        try:
            verification = verify(model, translated, make_probes(example, probes, seed), d.perm, tol)
        except TranslationError:
            raise
        except Exception as error:  # also the backends' ModelError / NonFiniteError
            raise failure(error, model=model, source=d.source, target=d.target, stage="verify",
                          what="running the original and the translated model on the probes",
                          translated_names=_translated_objects(model, translated, layer_map)) from error
        timings["verify"] = time.perf_counter() - ts
        report = TranslationReport(
            source=d.source, target=d.target, model_name=model_name(model), seconds=0.0,
            onnx_opset=ou.opset(proto), op_counts=ou.op_counts(proto), converter_versions=versions,
            verification=verification, export_method=f"{export_method} + {d.converter}",
            timings=timings, cache_key=key, input_layout={"original": layouts[0], "translated": layouts[1]},
            n_mapped_layers=sum(1 for r in layer_map.values() if r.target), warnings=warn)
        report.seconds = time.perf_counter() - t0
        _finish(report, accept_mismatch, _divergence(model, translated, layer_map, example, d))
        if store is not None:
            _store(store, key, proto, report, layer_map, translated, d.saves_keras)
        report.seconds = time.perf_counter() - t0
        return Translation(model, translated, report, layer_map, *layouts, d.source, d.target)


# ------------------------------------------------------------------------ verification
def _finish(report: TranslationReport, accept_mismatch: bool, diverging=None):
    """Raise :class:`TranslationMismatchError` if verification failed (unless accepted).

    ``diverging()`` -> ``(layer, class, rel)`` of the first layer whose activation differs
    (or ``None``); it is only called when the error is raised.
    """
    v = report.verification
    if v is not None and not v.passed:
        failures = v.failures()
        if not accept_mismatch:
            found, searched = None, False
            if diverging is not None:
                try:
                    found, searched = diverging(v.tolerance), True
                except Exception:  # only a diagnosis: the mismatch itself is the error
                    found = None
            what = f"the translation {report.source} -> {report.target} of {report.model_name!r}"
            if found is not None:
                name, cls, rel = found
                first = (f"layer {name!r} ({cls}) is translated inexactly: its activation differs by "
                         f"rel={rel:.3g} on the example (the first layer that differs), so {what} "
                         "exceeds the tolerance:")
            elif searched:
                first = (f"{what[4:]} exceeds the tolerance although every mapped layer agrees to "
                         f"round-off (rel <= {_DIVERGENCE_FLOOR:g}) on the example:")
            else:
                first = f"{what[4:]} exceeds the tolerance:"
            msg = (first + " " + failures[0] + "".join("\n  " + f for f in failures[1:])
                   + "\n  fix: pass accept_mismatch=True to use it anyway, or a larger tolerance")
            raise TranslationMismatchError(msg, report, layer=found[0] if found else None,
                                           layer_type=found[1] if found else None)
        report.warnings.append("verification above tolerance (accepted): " + "; ".join(failures))


def _cached_verification(meta, tol) -> Verification:
    v = Verification.from_dict(meta["report"]["verification"])
    v.tolerance = tol
    v.from_cache = True
    v.passed = not v.failures()
    return v


def _translated_objects(model, translated, layer_map) -> dict:
    """``{id(translated layer/module): (original name, original layer/module)}``."""
    out = {}
    try:
        original, other = get_backend(model), get_backend(translated)
    except Exception:  # only a diagnosis of another error
        return out
    for name, ref in layer_map.items():
        if ref.target is None:
            continue
        try:
            out[id(other.layer_object(ref.target))] = (name, original.layer_object(name))
        except Exception:
            continue
    return out


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.abs(b).max()) if b.size else 0.0
    diff = float(np.abs(a - b).max()) if b.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


#: activations closer than this are round-off, never blamed for a mismatch
_DIVERGENCE_FLOOR = 1e-5


def _layer_values(model, x: np.ndarray, names=None) -> tuple[list, dict, object]:
    """``(names in execution order, {name: activation}, backend)`` of the layers of ``model``
    that run once on ``x`` (all of them, or those in ``names``), through its backend."""
    backend = get_backend(model)
    with backend.session():
        native = backend.prepare(x)
        calls = backend.layer_calls(native)
        counts = collections.Counter(name for name, _, _ in calls)
        order = [n for n, _, shape in calls if shape is not None and counts[n] == 1
                 and (names is None or n in names)]
        values = backend.activations(native, order) if order else {}
        return order, {n: backend.ops.to_numpy(v) for n, v in values.items()}, backend


def _divergence(model, translated, layer_map, example, d: Direction):
    """A function locating the first original layer whose translated counterpart differs
    (on the example), in the original's execution order."""

    def find(tol):
        x = example[:1]
        mapped = {n for n, r in layer_map.items() if r.target is not None}
        order, original, backend = _layer_values(model, x, mapped)
        targets = {layer_map[n].target for n in order}
        xt = np.ascontiguousarray(apply_perm(x, d.perm if x.ndim == 4 else None))
        _, values, _ = _layer_values(translated, xt, targets)
        translated_acts = {n: values[layer_map[n].target] for n in order if layer_map[n].target in values}
        classes = {n: type(backend.layer_object(n)).__name__ for n in order}
        bound = max(float(tol.get("output", 1e-4)), _DIVERGENCE_FLOOR)
        for name in order:
            if name not in translated_acts:
                continue
            rel = _rel(translated_acts[name], apply_perm(original[name], layer_map[name].perm))
            if rel > bound:
                return name, classes[name], rel
        return None

    return find


# ------------------------------------------------------------------------------- cache
def _cached(d: Direction, key, store, timings):
    """``(translated model, path, meta)`` from the memo or the disk cache, else ``None``.

    An entry that no longer loads (corrupt file, other Keras version) is a miss, not an error.
    """
    hit = _cache_hit(key, store)
    if hit is None or (d.artefact and not (hit[0] / d.artefact).is_file()):
        return None
    path, meta = hit[0], hit[1]
    ts = time.perf_counter()
    if len(hit) == 3:
        translated = hit[2]
    else:
        try:
            translated = d.load(path)
        except Exception as exc:
            warnings.warn(f"crosslens: ignoring an unreadable translation cache entry {path}: {exc}",
                          RuntimeWarning, stacklevel=4)
            return None
        _memo_put(key, translated, (path, meta))
    timings["load"] = time.perf_counter() - ts
    return translated, path, meta


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


def _store(store, key, proto, report, layer_map, translated, save_keras: bool):
    meta = {"report": report.to_dict(), "layer_map": {k: v.to_dict() for k, v in layer_map.items()}}
    try:
        path = store.store(key, proto, meta, keras_model=translated if save_keras else None)
        report.cache_path = str(path)
        _memo_put(key, translated, (path, meta))
    except Exception as exc:  # a read-only home must not break translation
        warnings.warn(f"crosslens: could not write the translation cache: {exc}", RuntimeWarning, stacklevel=3)
        report.warnings.append(f"cache not written: {exc}")
