"""Import ``onnx2torch`` whether or not ``torchvision`` is importable.

Why this exists
---------------
``onnx2torch`` declares ``torchvision`` as a hard dependency, but it only
*uses* it in two node converters:

* ``onnx2torch/node_converters/nms.py`` does ``import torchvision`` and, at
  run time of a converted ``NonMaxSuppression`` node, calls
  ``torchvision.ops.box_convert`` and ``torchvision.ops.nms``;
* ``onnx2torch/node_converters/roialign.py`` does
  ``from torchvision.ops import roi_align`` and calls it at run time of a
  converted ``RoiAlign`` node.

Both modules are imported eagerly by ``onnx2torch/__init__``, so a missing or
broken ``torchvision`` (no CPU wheel for the pinned torch, an ABI mismatch
raising ``RuntimeError: operator torchvision::nms does not exist``, ...) makes
``import onnx2torch`` fail although no image classifier ever needs those ops.

The choice
----------
1. We first try the real ``import torchvision``.  If it works, nothing
   special happens: ``onnx2torch`` is imported normally and uses it.
2. If it fails (any ``Exception``), we remove whatever partial
   ``torchvision*`` entries the failed import left in ``sys.modules``, insert a
   *minimal* stub package (``torchvision`` + ``torchvision.ops`` with the three
   names onnx2torch binds: ``nms``, ``box_convert``, ``roi_align``) for the
   duration of ``import onnx2torch`` only, and delete the stub entries from
   ``sys.modules`` right afterwards (restoring anything that was there
   before).  The user's process is left as it was: a later
   ``import torchvision`` behaves exactly as without crosslens (it fails again
   with its own error, or works if the user fixed their install).
   onnx2torch's two converter modules keep references to the stub objects;
   those are private to onnx2torch.
3. Every stub callable raises :class:`TorchvisionUnavailableError` naming the
   operator and the original import error.  In addition
   :func:`check_graph_supported` is called by crosslens before converting a
   graph, so a model containing ``NonMaxSuppression``/``RoiAlign`` fails at
   translation time (with the node name), not later inside a forward pass.

The same mechanism serves ``zennit``, whose ``zennit/__init__`` imports
``zennit.torchvision``, which only does
``from torchvision.models.resnet import Bottleneck, BasicBlock`` for
``isinstance`` checks in its ResNet canonizer: the stub provides
``torchvision.models.resnet`` with two placeholder classes that no module can
be an instance of (without torchvision there are no torchvision ResNets).
Use :func:`import_zennit` (or :func:`import_with_torchvision` for any other
module; ``crosslens.toolsets.zennit`` calls ``import_with_torchvision("zennit")``).

We do not vendor onnx2torch/zennit and do not monkey-patch torch.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types

from ..core.errors import UnsupportedError as _UnsupportedError
from .errors import TranslationError as _TranslationError

__all__ = [
    "TorchvisionUnavailableError",
    "TORCHVISION_OPS",
    "import_onnx2torch",
    "import_zennit",
    "import_with_torchvision",
    "torchvision_status",
    "check_graph_supported",
]

#: ONNX op types whose onnx2torch converters need a working torchvision.
TORCHVISION_OPS = {"NonMaxSuppression": "torchvision.ops.nms", "RoiAlign": "torchvision.ops.roi_align"}

_LOCK = threading.Lock()
_STATE: dict = {"modules": {}, "torchvision_ok": None, "error": None}


class TorchvisionUnavailableError(_TranslationError, _UnsupportedError, ImportError):
    """A converter that truly needs torchvision was reached while torchvision is unusable
    (an :class:`~crosslens.core.errors.UnsupportedError`; an ``ImportError`` as before)."""


def _stub_callable(qualname: str):
    def _unavailable(*args, **kwargs):
        raise TorchvisionUnavailableError(
            f"{qualname} is needed by this ONNX graph (onnx2torch converts NonMaxSuppression/RoiAlign "
            f"with torchvision), but `import torchvision` failed: {_STATE['error']!r}. Install a "
            "torchvision build matching your torch version to use these operators."
        )

    _unavailable.__name__ = qualname.rsplit(".", 1)[-1]
    _unavailable.__qualname__ = qualname
    return _unavailable


def _make_stub() -> dict[str, types.ModuleType]:
    tv = types.ModuleType("torchvision")
    tv.__doc__ = "crosslens import-time stub (real torchvision failed to import)"
    tv.__path__ = []  # behave like a package so `from torchvision.ops import x` resolves
    tv.__version__ = "0.0.0+crosslens-stub"
    ops = types.ModuleType("torchvision.ops")
    for name in ("nms", "box_convert", "roi_align"):
        setattr(ops, name, _stub_callable(f"torchvision.ops.{name}"))
    models = types.ModuleType("torchvision.models")
    models.__path__ = []
    resnet = types.ModuleType("torchvision.models.resnet")
    for name in ("Bottleneck", "BasicBlock"):
        placeholder = type(name, (), {"__doc__": "placeholder: torchvision is unavailable", "__module__": resnet.__name__})
        setattr(resnet, name, placeholder)
    models.resnet = resnet
    tv.ops, tv.models = ops, models
    return {"torchvision": tv, "torchvision.ops": ops, "torchvision.models": models, "torchvision.models.resnet": resnet}


def _torchvision_keys() -> set[str]:
    return {k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")}


def _probe_torchvision() -> bool:
    """Try the real ``import torchvision`` once; clean up partial leftovers if it fails."""
    if _STATE["torchvision_ok"] is None:
        before = _torchvision_keys()
        try:
            importlib.import_module("torchvision")
            _STATE["torchvision_ok"] = True
        except Exception as exc:  # ImportError, RuntimeError (operator ... does not exist), OSError ...
            _STATE["torchvision_ok"] = False
            _STATE["error"] = exc
            for key in _torchvision_keys() - before:
                sys.modules.pop(key, None)
    return _STATE["torchvision_ok"]


def import_with_torchvision(name: str):
    """Import module ``name`` (e.g. ``"zennit"``): plainly if the real torchvision imports, else with
    the stub present in ``sys.modules`` only for the duration of the import."""
    with _LOCK:
        if name in _STATE["modules"]:
            return _STATE["modules"][name]
        if name in sys.modules:
            _STATE["modules"][name] = sys.modules[name]
            return sys.modules[name]
        if _probe_torchvision():
            module = importlib.import_module(name)
        else:
            stub = _make_stub()
            saved = {k: sys.modules[k] for k in stub if k in sys.modules}
            sys.modules.update(stub)
            try:
                module = importlib.import_module(name)
            finally:
                for key in stub:
                    if sys.modules.get(key) is stub[key]:
                        del sys.modules[key]
                sys.modules.update(saved)
        _STATE["modules"][name] = module
        return module


def import_onnx2torch():
    """Return the ``onnx2torch`` module, importing it as described in the module docstring."""
    from ._deps import require

    require("onnx2torch", "ONNX → PyTorch conversion")
    return import_with_torchvision("onnx2torch")


def import_zennit():
    """Return the ``zennit`` module, importable with or without a working torchvision."""
    return import_with_torchvision("zennit")


def torchvision_status() -> dict:
    """``{"available": bool|None, "error": str|None}`` as seen when onnx2torch was imported."""
    err = _STATE["error"]
    return {"available": _STATE["torchvision_ok"], "error": None if err is None else repr(err)}


def check_graph_supported(onnx_model) -> None:
    """Raise :class:`TorchvisionUnavailableError` if the graph has an op needing the missing torchvision."""
    if _STATE["torchvision_ok"] is not False:
        return
    for node in onnx_model.graph.node:
        if node.op_type in TORCHVISION_OPS:
            error = TorchvisionUnavailableError(
                f"ONNX node {node.name!r} (op {node.op_type}) needs {TORCHVISION_OPS[node.op_type]}, "
                f"but `import torchvision` failed: {_STATE['error']!r}. Install a torchvision build "
                "matching your torch version to translate this model."
            )
            error.node_name, error.op_type = node.name, node.op_type  # to name the user's layer
            raise error


#: alias of :func:`import_with_torchvision`
import_with_torchvision_fallback = import_with_torchvision
