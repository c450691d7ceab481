"""``translate()``: PyTorch ⇄ Keras 3 through ONNX, verified numerically."""

from __future__ import annotations

import collections
import operator
import os
import time
import warnings

import numpy as np

from . import cache as _cache
from . import locate
from . import onnx_utils as ou
from ..core.errors import CrosslensError
from .errors import (
    ConversionError,
    TranslationInputError,
    TranslationMismatchError,
    TranslationOptionError,
    TranslationUnsupportedError,
    UnsupportedModelError,
    UnsupportedOpError,
)
from .locate import FRAMEWORK_NAMES, failure
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
    if isinstance(model, (str, os.PathLike)):
        raise UnsupportedModelError(
            f"cannot translate the path {os.fspath(model)!r}: translate() takes a model object. Load it "
            "first: crosslens.loading.load_model(path) (.keras, TorchScript .pt, module:callable) or "
            "crosslens.translate.load_onnx(path) for an .onnx file (which gives a torch module)")
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
    raise UnsupportedModelError(
        f"cannot translate a {type(model).__module__}.{type(model).__qualname__}: translate() takes a "
        "torch.nn.Module or a Keras 3 model (keras.Model)")


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


def _example_array(example) -> np.ndarray:
    """The example as a float32 numpy batch, or :class:`TranslationInputError`."""
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
        if hasattr(example, "detach"):
            example = example.detach().cpu().numpy()
        elif hasattr(example, "numpy") and not isinstance(example, np.ndarray):
            example = example.numpy()
        kind = np.asarray(example).dtype.kind
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
    if src == "keras":
        try:  # a subclassed model that was never called has no inputs
            inputs = list(model.inputs or [])
        except Exception:
            inputs = []
        layers = locate.keras_layers(model).values()
        several = len(inputs) > 1
        tokens = next((f"{lay.name!r} ({type(lay).__name__})" for lay in layers
                       if type(lay).__name__ == "Embedding"), None)
    else:
        import inspect

        try:
            params = inspect.signature(model.forward).parameters.values()
            required = [p for p in params if p.default is p.empty
                        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):  # TorchScript / builtin forward
            required = []
        several = len(required) > 1
        tokens = next((f"{name!r} ({type(m).__name__})" for name, m in model.named_modules()
                       if type(m).__name__ in ("Embedding", "EmbeddingBag")), None)
    if several:
        raise TranslationUnsupportedError(
            f"{FRAMEWORK_NAMES[src]} models with several inputs cannot be translated yet; explain this "
            "model with an implementation for its own framework (implementation='crosslens')")
    if tokens and integer_example:
        raise TranslationUnsupportedError(
            f"layer {tokens} takes integer tokens, which translation cannot verify (it probes the model "
            "with random float inputs); explain this model with an implementation for its own framework "
            "(implementation='crosslens')")


def _check_example(model, src: str, example: np.ndarray) -> None:
    """Validate the example against the model with its crosslens backend, before exporting:
    a wrong layout then reads as the layout problem and its fix, not as a failed export."""
    from ..backends import get_backend
    from ..core.errors import InputError

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


def _required(src: str) -> None:
    from ._deps import require

    require("onnx", "translation")
    if src == "torch":
        require("onnxscript", "PyTorch → Keras translation (torch.onnx.export(dynamo=True))")
    else:
        require("tf2onnx", "Keras → PyTorch translation")
        require("onnx2torch", "Keras → PyTorch translation")


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
    _required(src)
    try:
        if src == "torch":
            return _torch_to_keras(model, example, tol, accept_mismatch, cache_dir, probes, seed)
        return _keras_to_torch(model, example, tol, accept_mismatch, cache_dir, probes, seed, low_memory)
    except CrosslensError:
        raise
    except Exception as error:  # whatever escaped the steps' own handling
        raise failure(error, model=model, source=src, target=to, stage="convert",
                      what="the translation") from error


# ------------------------------------------------------------------------------------------------
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


def _perm4(rank, perm):
    return perm if rank == 4 else None


def _torch_to_keras(model, example, tol, accept_mismatch, cache_dir, probes, seed) -> Translation:
    import torch

    from .onnx_to_keras import onnx_to_keras
    from .torch_export import torch_to_onnx

    t0 = time.perf_counter()
    direction = "torch->keras"
    # every module's own flag: model.train(flag) afterwards would overwrite submodules' modes
    modes = [(m, m.training) for m in model.modules()]
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
            cached = _cached_keras(key, store, timings)
            if cached is not None:
                km, path, meta = cached
                report = TranslationReport.from_dict(meta["report"])
                report.cache_hit, report.cache_path, report.timings = True, str(path), timings
                report.verification = _cached_verification(meta, tol)
                report.warnings = warn
                report.seconds = time.perf_counter() - t0
                lm = {k: LayerRef.from_dict(v) for k, v in meta["layer_map"].items()}
                _finish(report, accept_mismatch, _torch_divergence(model, km, lm, example))
                return Translation(model, km, report, lm, "NCHW", "NHWC", "torch", "keras")

        ts = time.perf_counter()
        proto, info = torch_to_onnx(model, example, opset=TORCH_OPSET)
        timings["export"] = time.perf_counter() - ts
        try:
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
        except UnsupportedOpError as error:
            raise locate.torch_unsupported(error, proto, model) from error
        except CrosslensError:
            raise
        except Exception as error:
            raise failure(error, model=model, source="torch", target="keras", stage="convert",
                          what="the ONNX → Keras conversion (crosslens.onnx_to_keras)") from error
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
        try:
            with torch.no_grad():
                out_rank = model(torch.as_tensor(example[:1])).ndim
            out_perm = _perm4(out_rank, (0, 2, 3, 1))
            report = _verified_report(
                "torch", "keras", model, lambda x, m: run_torch(model, x, m),
                lambda x, m: run_keras(km, x, m), make_probes(example, probes, seed), in_perm,
                out_perm, tol, proto, versions, info["export_method"] + " + crosslens.onnx_to_keras",
                timings, key, ("NCHW", "NHWC") if rank == 4 else ("-", "-"), layer_map,
                warn + list(info.get("export_errors", [])))
        except CrosslensError:
            raise
        except Exception as error:
            names = _translated_objects(model, km, layer_map, "torch")
            raise failure(error, model=model, source="torch", target="keras", stage="verify",
                          what="running the original and the translated model on the probes",
                          translated_names=names) from error
        report.seconds = time.perf_counter() - t0
        _finish(report, accept_mismatch, _torch_divergence(model, km, layer_map, example))
        if store is not None:
            _store(store, key, proto, report, layer_map, keras_model=km, translated=km)
        report.seconds = time.perf_counter() - t0
        return Translation(model, km, report, layer_map, "NCHW" if rank == 4 else "-", "NHWC" if rank == 4 else "-", "torch", "keras")
    finally:
        for module, flag in modes:
            module.training = flag


def _cached_keras(key, store, timings):
    """``(keras_model, path, meta)`` from the memo or the disk cache, else ``None``.

    An entry that no longer loads (corrupt file, other Keras version) is a miss, not an error.
    """
    import keras

    from .keras_layers import CUSTOM_OBJECTS

    hit = _cache_hit(key, store)
    if hit is None or not (hit[0] / "model.keras").is_file():
        return None
    path, meta = hit[0], hit[1]
    ts = time.perf_counter()
    if len(hit) == 3:
        km = hit[2]
    else:
        try:
            km = keras.models.load_model(str(path / "model.keras"), custom_objects=CUSTOM_OBJECTS, compile=False)
        except Exception as exc:
            warnings.warn(f"crosslens: ignoring an unreadable translation cache entry {path}: {exc}",
                          RuntimeWarning, stacklevel=4)
            return None
        _memo_put(key, km, (path, meta))
    timings["load"] = time.perf_counter() - ts
    return km, path, meta


def _cached_torch(key, store, timings):
    """``(torch_module, path, meta)`` from the memo or the disk cache, else ``None``."""
    import onnx

    from .onnx_to_torch import onnx_to_torch

    hit = _cache_hit(key, store)
    if hit is None:
        return None
    path, meta = hit[0], hit[1]
    ts = time.perf_counter()
    if len(hit) == 3:
        tm = hit[2]
    else:
        try:
            tm = onnx_to_torch(onnx.load(str(path / "model.onnx")))
        except Exception as exc:
            warnings.warn(f"crosslens: ignoring an unreadable translation cache entry {path}: {exc}",
                          RuntimeWarning, stacklevel=4)
            return None
        _memo_put(key, tm, (path, meta))
    timings["load"] = time.perf_counter() - ts
    return tm, path, meta


def _export_keras(model, example, low_memory, warn):
    """``keras_to_onnx`` with the frozen-graph fallback; failures name the layer and the cause."""
    from .keras_export import keras_to_onnx

    try:
        return keras_to_onnx(model, example, opset=KERAS_OPSET, weights_as_inputs=low_memory)
    except CrosslensError:
        raise
    except Exception as exc:
        first = exc
    what = "the Keras → ONNX export (tf2onnx)"
    if not low_memory:
        raise failure(first, model=model, source="keras", target="torch", stage="export", what=what) from first
    try:
        n_params = model.count_params()
    except Exception:  # an unbuilt model: the frozen export reports why it fails
        n_params = 0
    if n_params > 50_000_000:
        error = failure(first, model=model, source="keras", target="torch", stage="export",
                        what="the low-memory Keras → ONNX export (tf2onnx)")
        raise ConversionError(
            f"{error.args[0]}\n  not falling back to the frozen-graph export for {n_params / 1e6:.0f} M "
            "weights (VGG16 needs ~19 GB RAM there); pass low_memory=False to force it",
            layer=error.layer, layer_type=error.layer_type, stage="export") from first
    warn.append(f"low-memory export failed ({locate.cause_of(first)}); used the frozen-graph export")
    try:
        return keras_to_onnx(model, example, opset=KERAS_OPSET, weights_as_inputs=False)
    except CrosslensError:
        raise
    except Exception as exc:
        raise failure([("low-memory export", first), ("frozen-graph export", exc)], model=model,
                      source="keras", target="torch", stage="export", what=what) from exc


def _keras_to_torch(model, example, tol, accept_mismatch, cache_dir, probes, seed, low_memory) -> Translation:
    from ._torchvision import TorchvisionUnavailableError
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
        cached = _cached_torch(key, store, timings)
        if cached is not None:
            tm, path, meta = cached
            report = TranslationReport.from_dict(meta["report"])
            report.cache_hit, report.cache_path, report.timings = True, str(path), timings
            report.verification = _cached_verification(meta, tol)
            report.warnings = []
            report.seconds = time.perf_counter() - t0
            lm = {k: LayerRef.from_dict(v) for k, v in meta["layer_map"].items()}
            _finish(report, accept_mismatch, _keras_divergence(model, tm, lm, example))
            src_l, dst_l = ("NHWC", "NCHW") if rank == 4 else ("-", "-")
            return Translation(model, tm, report, lm, src_l, dst_l, "keras", "torch")

    ts = time.perf_counter()
    warn = []
    proto, layer_values, info = _export_keras(model, example, low_memory, warn)
    timings["export"] = time.perf_counter() - ts
    ts = time.perf_counter()
    try:
        tm = onnx_to_torch(proto)
    except UnsupportedOpError as error:
        raise locate.keras_unsupported(error, proto, model) from error
    except TorchvisionUnavailableError as error:
        layers = locate.keras_layers(model)
        name = locate.keras_node_layer(proto.graph, getattr(error, "node_name", ""), layers)
        if name is None:
            raise
        raise TorchvisionUnavailableError(
            f"layer {name!r} ({type(layers[name]).__name__}) cannot be translated to PyTorch: {error}") from error
    except CrosslensError:
        raise
    except Exception as error:
        raise failure(error, model=model, source="keras", target="torch", stage="convert",
                      what="the ONNX → PyTorch conversion (onnx2torch)") from error
    timings["convert"] = time.perf_counter() - ts
    prod = ou.producers(proto.graph)
    layer_map = {}
    for lname, (value, perm) in layer_values.items():
        node = prod.get(value) if value else None
        layer_map[lname] = LayerRef(node.name if node is not None else None, perm, value)

    in_perm = _perm4(rank, (0, 3, 1, 2))
    try:
        out_rank = np.ndim(np.asarray(model(example[:1], training=False)))
        out_perm = _perm4(out_rank, (0, 3, 1, 2))
        report = _verified_report(
            "keras", "torch", model, lambda x, m: run_keras(model, x, m),
            lambda x, m: run_torch(tm, x, m), make_probes(example, probes, seed), in_perm, out_perm,
            tol, proto, versions, info["export_method"] + " + onnx2torch", timings, key,
            ("NHWC", "NCHW") if rank == 4 else ("-", "-"), layer_map, warn)
    except CrosslensError:
        raise
    except Exception as error:
        names = _translated_objects(model, tm, layer_map, "keras")
        raise failure(error, model=model, source="keras", target="torch", stage="verify",
                      what="running the original and the translated model on the probes",
                      translated_names=names) from error
    report.seconds = time.perf_counter() - t0
    _finish(report, accept_mismatch, _keras_divergence(model, tm, layer_map, example))
    if store is not None:
        _store(store, key, proto, report, layer_map, translated=tm)
    report.seconds = time.perf_counter() - t0
    src_l, dst_l = ("NHWC", "NCHW") if rank == 4 else ("-", "-")
    return Translation(model, tm, report, layer_map, src_l, dst_l, "keras", "torch")


def _translated_objects(model, translated, layer_map, source) -> dict:
    """``{id(translated layer/module): (original name, original layer/module)}``."""
    if source == "torch":
        originals = dict(model.named_modules())
        get = translated.get_layer
    else:
        originals = locate.keras_layers(model)
        modules = dict(translated.named_modules())
        get = modules.__getitem__
    out = {}
    for name, ref in layer_map.items():
        if ref.target is None or name not in originals:
            continue
        try:
            out[id(get(ref.target))] = (name, originals[name])
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


def _first_divergence(order, original, translated, layer_map, classes, tol):
    """First layer in execution ``order`` whose translated activation differs by more than the
    output tolerance: ``(name, class, rel)``, or ``None``."""
    from .layout import apply_perm

    bound = max(float(tol.get("output", 1e-4)), _DIVERGENCE_FLOOR)
    for name in order:
        if name not in original or name not in translated:
            continue
        rel = _rel(translated[name], apply_perm(original[name], layer_map[name].perm))
        if rel > bound:
            return name, classes.get(name), rel
    return None


def _single(inputs):
    return inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs


def _torch_divergence(model, km, layer_map, example):
    """A function locating the first torch module whose Keras counterpart differs (on the example)."""

    def find(tol):
        import keras
        import torch

        mods = dict(model.named_modules())
        wanted = {n: r for n, r in layer_map.items() if r.target is not None and n in mods}
        order, acts, handles = [], {}, []

        def hook(name):
            def record(module, inputs, output):
                if isinstance(output, torch.Tensor) and name not in acts:
                    order.append(name)
                    acts[name] = output.detach().numpy()
            return record

        modes = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            handles = [mods[n].register_forward_hook(hook(n)) for n in wanted]
            with torch.no_grad():
                model(torch.as_tensor(example[:1]))
        finally:
            for h in handles:
                h.remove()
            for m, flag in modes:
                m.training = flag
        names = [n for n in order if n in wanted]
        probe = keras.Model(_single(km.inputs), [km.get_layer(wanted[n].target).output for n in names])
        x = np.transpose(example[:1], (0, 2, 3, 1)) if example.ndim == 4 else example[:1]
        outs = probe(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        translated = {n: np.asarray(o) for n, o in zip(names, outs)}
        classes = {n: type(mods[n]).__name__ for n in names}
        return _first_divergence(names, acts, translated, layer_map, classes, tol)

    return find


def _keras_divergence(model, tm, layer_map, example):
    """A function locating the first Keras layer whose torch counterpart differs (on the example)."""

    def find(tol):
        import keras
        import torch

        layers = {lay.name: lay for lay in getattr(model, "layers", [])}
        names = [n for n in layers if n in layer_map and layer_map[n].target is not None]
        probe = keras.Model(_single(model.inputs), [layers[n].output for n in names])
        outs = probe(example[:1], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        original = {n: np.asarray(o) for n, o in zip(names, outs)}
        mods = dict(tm.named_modules())
        acts, handles = {}, []

        def hook(name):
            def record(module, inputs, output):
                if isinstance(output, torch.Tensor):
                    acts[name] = output.detach().numpy()
            return record

        try:
            handles = [mods[layer_map[n].target].register_forward_hook(hook(n))
                       for n in names if layer_map[n].target in mods]
            x = np.transpose(example[:1], (0, 3, 1, 2)) if example.ndim == 4 else example[:1]
            with torch.no_grad():
                tm(torch.as_tensor(np.ascontiguousarray(x)))
        finally:
            for h in handles:
                h.remove()
        classes = {n: type(layers[n]).__name__ for n in names}
        return _first_divergence(names, original, acts, layer_map, classes, tol)

    return find


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
