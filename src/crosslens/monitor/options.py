"""The :class:`~crosslens.monitor.Monitor`'s arguments, checked and normalized when it is
built (so a mistake fails before training, not at the first epoch)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.registry import get_method

#: Default optimization steps of the monitor's feature visualizations (small on purpose:
#: they show how a channel's preferred pattern forms, not a finished picture).
FEATUREVIS_STEPS = 32


def method_plan(methods: Sequence[Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, registered name, explain options)`` per method; unknown names fail now,
    not at the first epoch."""
    if isinstance(methods, str):
        methods = [methods]
    plan = []
    for item in methods:
        name, options = (item, {}) if isinstance(item, str) else item
        if not isinstance(options, dict):
            raise OptionError(f"a method is a name or a (name, options dict) pair, got {item!r}")
        spec = get_method(name)
        label = spec.name + (f"@{options['layer']}" if "layer" in options else "")
        if any(label == p[0] for p in plan):
            raise OptionError(f"method {label!r} is listed twice; give each entry a "
                              "different layer or drop one")
        plan.append((label, spec.name, dict(options)))
    if not plan:
        raise OptionError("methods is empty: give at least one attribution method")
    return plan


def targets_plan(targets: Sequence[Any] | None, probe_y: np.ndarray | None) -> list[Any]:
    if targets is None:
        return ["label"] if probe_y is not None else ["predicted"]
    targets = [targets] if isinstance(targets, (str, int, np.integer)) else list(targets)
    for t in targets:
        if t == "label" and probe_y is None:
            raise OptionError("target 'label' needs the probes' labels: pass probe_y=...")
        if not (t in ("label", "predicted") or isinstance(t, (int, np.integer))):
            raise OptionError(f"a monitor target is 'label', 'predicted' or a class index, "
                              f"got {t!r}")
    if not targets:
        raise OptionError("targets is empty: give 'label', 'predicted' or a class index")
    return targets


def featurevis_plan(featurevis: dict[str, Any] | None) -> dict[str, Any] | None:
    if featurevis is None:
        return None
    if "layer" not in featurevis or "channels" not in featurevis:
        raise OptionError("featurevis needs 'layer' and 'channels', e.g. "
                          "{'layer': 'conv3', 'channels': [0, 1]}")
    return {"steps": FEATUREVIS_STEPS, **featurevis}


def channels_last(images: np.ndarray, layout: str | None) -> np.ndarray:
    if images.ndim == 3:  # (N, H, W) grey
        return images[..., None]
    if images.ndim != 4:
        raise OptionError(f"images are (N, H, W, C) or (N, C, H, W), got shape {images.shape}")
    if layout is None:
        layout = "channels_first" if images.shape[1] in (1, 3) \
            and images.shape[-1] not in (1, 3) else "channels_last"
    if layout not in ("channels_first", "channels_last"):
        raise OptionError(f"layout is 'channels_first' or 'channels_last', got {layout!r}")
    return np.transpose(images, (0, 2, 3, 1)) if layout == "channels_first" else images
