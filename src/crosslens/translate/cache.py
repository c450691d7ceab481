"""On-disk cache of translations.

Location: ``cache_dir`` argument, else ``$CROSSLENS_CACHE``, else
``~/.cache/crosslens/translations``.  One folder per key containing
``model.onnx`` (the exchanged graph), ``meta.json`` (report, layer map) and
the rebuilt-fast artefact: ``model.keras`` for Keras translations; torch
translations are rebuilt from ``model.onnx`` by onnx2torch (the weights are
the ONNX initializers, so no separate state dict is needed).

The key is a SHA-256 over: direction, input shape (without batch), opset,
the architecture (Keras ``get_config()`` JSON / torch module tree with each
module class's ``forward`` source and ``extra_repr``), a digest of all weights
and buffers (BLAKE2b over the raw bytes) and the versions of every converter
involved.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..core.arrays import to_numpy

FORMAT_VERSION = "1"


def cache_root(cache_dir=None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CROSSLENS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/crosslens/translations").expanduser()


def converter_versions(direction: str) -> dict:
    from importlib import metadata

    def v(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    names = ["onnx", "torch"]
    if direction == "keras->torch":
        names += ["keras", "tensorflow-cpu", "tensorflow", "tf2onnx", "onnx2torch"]
    else:
        names += ["onnxscript", "keras", "tensorflow-cpu", "tensorflow"]
    out = {n: v(n) for n in names}
    if direction == "torch->keras":
        from .onnx_to_keras import CONVERTER_NAME

        out[CONVERTER_NAME] = FORMAT_VERSION
    out["crosslens.translate"] = FORMAT_VERSION
    return {k: val for k, val in out.items() if val is not None}


def _hash_arrays(arrays) -> str:
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def torch_fingerprint(model) -> dict:
    import torch

    arch = []
    seen_cls = {}
    for name, mod in model.named_modules():
        cls = type(mod)
        key = f"{cls.__module__}.{cls.__qualname__}"
        if key not in seen_cls:
            try:
                seen_cls[key] = hashlib.sha1(inspect.getsource(cls.forward).encode()).hexdigest()
            except (OSError, TypeError):
                seen_cls[key] = "?"
        try:
            extra = mod.extra_repr()
        except Exception:
            extra = ""
        arch.append(f"{name}:{key}:{extra}")
    arch_hash = hashlib.sha256(("\n".join(arch) + json.dumps(seen_cls, sort_keys=True)).encode()).hexdigest()
    with torch.no_grad():
        tensors = [t.detach().cpu().contiguous() for _, t in sorted(model.state_dict(keep_vars=False).items())]
        weights = _hash_arrays(t.numpy() if t.dtype != torch.bfloat16 else t.float().numpy() for t in tensors)
    return {"architecture": arch_hash, "weights": weights, "name": type(model).__name__}


def keras_fingerprint(model) -> dict:
    try:
        cfg = json.dumps(model.get_config(), sort_keys=True, default=str)
    except Exception:
        cfg = type(model).__qualname__ + repr([(lay.name, type(lay).__name__) for lay in getattr(model, "layers", [])])
    arch_hash = hashlib.sha256(cfg.encode()).hexdigest()
    weights = _hash_arrays(to_numpy(v) for v in model.weights)
    return {"architecture": arch_hash, "weights": weights, "name": model.name}


def make_key(direction, fingerprint, input_shape, opset, versions) -> str:
    payload = json.dumps(
        {
            "direction": direction,
            "fp": fingerprint,
            "shape": list(input_shape[1:]),
            "opset": opset,
            "versions": versions,
            "format": FORMAT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class TranslationCache:
    def __init__(self, cache_dir=None):
        self.root = cache_root(cache_dir)

    def path(self, key: str) -> Path:
        return self.root / key

    def lookup(self, key: str):
        p = self.path(key)
        meta = p / "meta.json"
        if meta.is_file() and (p / "model.onnx").is_file():
            try:
                return p, json.loads(meta.read_text())
            except (OSError, ValueError):
                return None
        return None

    def store(self, key: str, onnx_proto, meta: dict, keras_model=None):
        """Write atomically (temp dir + rename); failures only warn."""
        import onnx

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            onnx.save_model(onnx_proto, str(tmp / "model.onnx"), save_as_external_data=onnx_proto.ByteSize() > 1_800_000_000)
            if keras_model is not None:
                keras_model.save(str(tmp / "model.keras"))
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
            final = self.path(key)
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            return final
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
