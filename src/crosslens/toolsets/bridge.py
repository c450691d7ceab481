"""Running a toolset on any model: translation when frameworks differ, layout round trip."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import get_backend
from ..core.arrays import to_numpy
from ..core.errors import UnknownMethodError
from ..core.registry import get_method
from ..core.targets import ClassTarget, NeuronTarget, PredictedTarget, resolve_target
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
        resolved = resolve_target(target, backend.ops.shape(native)[0], backend.resolve_layer)
        if isinstance(resolved, PredictedTarget):
            outputs = backend.ops.to_numpy(backend.forward(native))
            resolved = ClassTarget(outputs.argmax(axis=1).astype(np.int64))
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
    with run_backend.session(budget):
        if run_x is None:
            run_x = run_backend.prepare(translation.convert_input(to_numpy(x)))
        result = adapter.run(run_backend.model, run_backend.layer_object, run_x, name,
                             run_target, run_layer, options)
    attributions = to_numpy(result)
    if translation is not None and attributions.ndim == to_numpy(x).ndim:
        attributions = translation.convert_back(attributions)
    return attributions, resolved, layer_name, details


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
