"""Model fingerprints: everything a crosslens call must leave exactly as it was.

torch: every parameter and buffer (bytes, dtype, device), every module's ``training``
flag, every parameter's ``requires_grad`` and ``.grad``, every hook dict, the active
TorchFunctionMode stack and the grad mode. Keras: every weight (bytes, dtype, path,
trainable), every (nested) layer's instance ``call`` and ``activation`` and
``trainable``. ``fingerprint(model)`` returns a comparable value; ``assert_unchanged``
names the first difference.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_TORCH_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                "_backward_pre_hooks", "_forward_hooks_with_kwargs",
                "_forward_pre_hooks_with_kwargs", "_state_dict_hooks",
                "_load_state_dict_pre_hooks")


def _is_torch(model: Any) -> bool:
    return any(k.__module__.startswith("torch.") for k in type(model).__mro__)


def fingerprint(model: Any) -> dict[str, Any]:
    """A dict of plain values describing the model's state (see the module docstring)."""
    return _torch_fingerprint(model) if _is_torch(model) else _keras_fingerprint(model)


def _torch_fingerprint(model: Any) -> dict[str, Any]:
    import torch

    tensors = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        data = t.detach()
        raw = b"" if data.device.type == "meta" else data.cpu().contiguous().view(-1).view(
            torch.uint8).numpy().tobytes() if data.numel() else b""
        tensors[name] = (str(data.dtype), str(data.device), tuple(data.shape), raw)
    return {
        "tensors": tensors,
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: None if p.grad is None else p.grad.detach().cpu().numpy().tobytes()
                 for n, p in model.named_parameters()},
        "hooks": {n: {h: tuple(getattr(m, h, {}).keys()) for h in _TORCH_HOOKS}
                  for n, m in model.named_modules()},
        "attributes": {n: _attribute_values(m) for n, m in model.named_modules()},
        "modes": len(torch.overrides._get_current_function_mode_stack()),
        "grad_enabled": torch.is_grad_enabled(),
    }


def _keras_layers(model: Any, prefix: str = ""):
    for layer in getattr(model, "layers", []):
        yield prefix + layer.name, layer
        if getattr(layer, "layers", None):
            yield from _keras_layers(layer, prefix + layer.name + "/")


def _keras_fingerprint(model: Any) -> dict[str, Any]:
    layers = dict(_keras_layers(model))
    return {
        "weights": [(v.path, str(v.dtype), v.trainable, np.asarray(v.numpy()).tobytes())
                    for v in model.weights],
        "call": {n: "call" in vars(layer) for n, layer in layers.items()},
        "activation": {n: id(getattr(layer, "activation", None)) for n, layer in layers.items()},
        "trainable": {n: layer.trainable for n, layer in layers.items()},
        "attributes": {n: _attribute_values(layer) for n, layer in layers.items()},
    }


def _attribute_values(layer: Any) -> dict[str, Any]:
    """Every instance attribute of a layer: plain values by value, objects by identity,
    lists and tuples by what they hold (a rebuilt list of the same objects is the same)."""
    plain = (int, float, str, bool, type(None))

    def value(v: Any) -> Any:
        if isinstance(v, plain):
            return v
        if isinstance(v, (list, tuple)):
            return tuple(value(i) for i in v)
        return id(v)
    return {k: value(v) for k, v in vars(layer).items()}


def assert_unchanged(model: Any, before: dict[str, Any]) -> None:
    """Raise ``AssertionError`` naming the first part of the fingerprint that changed."""
    after = fingerprint(model)
    for key, value in before.items():
        if after[key] != value:
            if isinstance(value, dict):
                changed = [k for k in value if after[key].get(k) != value[k]]
                changed += [k for k in after[key] if k not in value]
                raise AssertionError(f"model {key} changed at {changed[:5]}")
            raise AssertionError(f"model {key} changed: {value!r} -> {after[key]!r}")
