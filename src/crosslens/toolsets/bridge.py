"""Running a toolset on any model: translation when frameworks differ, layout round trip.

Before an adapter runs: class targets are checked against the model's outputs (toolsets
fail with raw index errors), our CAM names without ``layer=`` get crosslens' default CAM
layer (a toolset's own default may differ), and, on a translation, array options in the
input's space (:data:`INPUT_OPTIONS`) are converted to the translation's layout like the
input. Adapters return the attributions, or ``(attributions, info)`` whose ``info`` is
merged into the explanation's ``info``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import get_backend
from ..core.arrays import to_numpy
from ..core.errors import TargetError, UnknownMethodError, UnsupportedError
from ..core.registry import get_method
from ..core.targets import (ClassTarget, NeuronTarget, PredictedTarget, check_class_range,
                            class_output_message, predicted_classes, resolve_target)
from . import toolset


def method_name(method: str) -> str:
    """Our registered name for ``method``, or the name as given (a toolset's own class)."""
    try:
        return get_method(method).name
    except UnknownMethodError:
        return method


def run_toolset(implementation: str, model: Any, x: Any, method: str, target: Any,
                layer: Any, options: dict[str, Any], budget: int
                ) -> tuple[np.ndarray, Any, str | None, dict[str, Any]]:
    """Run ``implementation``'s ``method`` on ``model``.

    Returns ``(attributions as numpy in the original model's layout, resolved target,
    layer name in the original, info)``.
    """
    info, adapter = toolset(implementation)
    backend = get_backend(model)
    name = method_name(method)
    with backend.session(budget):
        native = backend.prepare(x)
        layer_name = backend.resolve_layer(layer) if layer is not None else None
        if layer_name is None and _is_cam(method):
            layer_name = _default_cam_layer(backend, native, name)
        resolved = resolve_target(target, backend.ops.shape(native)[0], backend.resolve_layer)
        if isinstance(resolved, (PredictedTarget, ClassTarget)):
            # the classes are checked here: the toolsets fail with raw index errors
            outputs = backend.ops.to_numpy(backend.forward(native))
            if outputs.ndim != 2:
                raise TargetError(class_output_message(outputs.shape))
            if outputs.shape[1] == 1:
                raise UnsupportedError(
                    "this model has a single output; external toolsets index classes of "
                    "(N, classes) outputs and know no binary convention. Pass a callable "
                    "target: target=lambda out: out[:, 0] explains the output (class 1), "
                    "lambda out: -out[:, 0] its negation (class 0)")
            if isinstance(resolved, PredictedTarget):
                resolved = ClassTarget(predicted_classes(outputs))
            check_class_range(resolved.indices, outputs.shape[1])
    details: dict[str, Any] = {"implementation": info.name}
    if info.framework == backend.name:
        run_backend, run_x, run_layer, run_target = backend, native, layer_name, resolved
        translation = None
    else:
        from ..translate import translate
        translation = translate(model, to=info.framework, example=to_numpy(x))
        run_backend = get_backend(translation.translated)
        run_x = None
        run_layer = translation.layer(layer_name) if layer_name else None
        run_target = _translate_target(resolved, translation)
        details["translation"] = translation.report
    if translation is not None:
        options = _translate_input_options(options, translation, to_numpy(x).ndim)
    with run_backend.session(budget):
        if run_x is None:
            run_x = run_backend.prepare(translation.convert_input(to_numpy(x)))
        result = adapter.run(run_backend.model, run_backend.layer_object, run_x, name,
                             run_target, run_layer, options)
    if isinstance(result, tuple):  # adapters may return (attributions, info)
        result, extra = result
        details.update(extra)
    attributions = to_numpy(result)
    if translation is not None and attributions.ndim == to_numpy(x).ndim:
        attributions = translation.convert_back(attributions)
    return attributions, resolved, layer_name, details


def _is_cam(method: str) -> bool:
    """Whether ``method`` is one of our CAM names (a toolset's own class name keeps the
    toolset's own defaults)."""
    try:
        return get_method(method).family == "cam"
    except UnknownMethodError:
        return False


def _default_cam_layer(backend: Any, native: Any, name: str) -> str:
    """The layer crosslens' own CAM would use: without it, tf-keras-vis seeks the last
    *convolution* (the pre-activation output), a different map from ours."""
    from ..methods.cam import default_cam_layer
    return default_cam_layer(backend, native, name)


# Options that live in the input's space (baselines, feature masks, zennit's box bounds):
# arrays among them are converted to the translation's layout like the input itself.
INPUT_OPTIONS = ("baseline", "baselines", "feature_mask", "low", "high")


def _translate_input_options(options: dict[str, Any], translation: Any, rank: int
                             ) -> dict[str, Any]:
    """Input-space array options in the translation's layout: batched when they have the
    input's rank (``(N or M, ...)``), per sample when one less; others are left as they are
    (scalars, names) for the adapter to check."""
    out = dict(options)
    for key in INPUT_OPTIONS:
        value = out.get(key)
        if value is None or isinstance(value, (str, bool, int, float)):
            continue
        try:
            array = to_numpy(value)
        except Exception:  # not array-like: the adapter names the problem
            continue
        if array.ndim == rank:
            out[key] = translation.convert_input(array, batched=True)
        elif array.ndim == rank - 1 and array.ndim >= 3:
            out[key] = translation.convert_input(array, batched=False)
    return out


def _translate_target(target: Any, translation: Any) -> Any:
    """Layer targets named and indexed as in the translation (class targets are unchanged)."""
    if isinstance(target, NeuronTarget):
        perm = translation.layer_perm(target.layer)  # translated = transpose(original, perm)
        index = target.index
        if perm is not None:
            axes = [p - 1 for p in perm[1:]]  # per-sample axes (perm includes the batch axis)
            index = tuple(index[a] for a in axes)
        return NeuronTarget(translation.layer(target.layer), tuple(index))
    if hasattr(target, "layer"):
        return type(target)(translation.layer(target.layer), target.channel)
    return target
