"""The public entry points: :func:`explain`, :func:`methods`, :func:`layers`."""
from __future__ import annotations

from typing import Any

import numpy as np

from .backends import BACKENDS, get_backend
from .core.arrays import to_numpy
from .core.chunking import parse_budget
from .core.errors import NonFiniteError, OptionError, UnsupportedError
from .core.explanation import Explanation
from .core.registry import (CAPABILITIES, all_methods, check_options, check_settings,
                            get_method)
from .core.targets import (ClassTarget, PredictedTarget, UserTarget, describe,
                           predicted_classes, resolve_target)
from .methods.base import Context
from .methods.checks import at_embedding, check_result
from .methods.postprocess import postprocess


def explain(model: Any, x: Any, method: str = "saliency", *, target: UserTarget = "predicted",
            layer: Any = None, seed: int | None = None, memory_budget: int | str | None = None,
            progress: bool | None = None, abs: bool = False, reduce_channels: str | None = None,
            normalize: str | None = None, implementation: str = "crosslens",
            **options: Any) -> Explanation:
    """Explain a model's prediction on a batch with an attribution method.

    Parameters
    ----------
    model
        A ``torch.nn.Module``, a Keras 3 model, or a path (``.keras``, TorchScript ``.pt``,
        ``module:callable``). The method runs natively in the model's framework.
    x
        Input batch in the model's own layout (NCHW for PyTorch, NHWC for Keras), as a
        numpy array or the framework's tensor type.
    method
        A registered method name or alias (see :func:`methods`).
    target
        Class index, one index per sample, ``"predicted"`` (top class per sample), a
        callable from the model's native outputs to one score per sample, or
        ``cl.Neuron(layer, index)`` / ``cl.Channel(layer, c)``.
    layer
        Layer name (torch dotted path, Keras name, ``"outer/inner"``) or layer object.
        For gradient methods: attribute to that layer's output instead of the input.
    seed
        Seed of every random draw (noise, random baselines); ``None`` draws fresh entropy.
    memory_budget
        Bytes (or ``"2GB"``) one pass may use; path and sampling methods chunk to it.
        Defaults to ``CROSSLENS_MEMORY_BUDGET`` or 2 GiB.
    progress
        Show a progress bar over the passes of path, sampling and perturbation methods:
        ``True`` always, ``False`` never, ``None`` (default) when stderr is a terminal and
        the run takes more than one pass.
    abs, reduce_channels, normalize
        Explicit post-processing (see :mod:`crosslens.methods.postprocess`); off by default,
        so attributions are raw and signed.
    implementation
        ``"crosslens"`` (default), or an external toolset's own implementation:
        ``"captum"``, ``"tf-keras-vis"``, ``"zennit"`` (see :mod:`crosslens.toolsets`).
        The model is translated when the toolset's framework differs.
    **options
        The method's own options (e.g. ``steps=64`` for integrated gradients).

    Returns
    -------
    Explanation
        ``attributions`` in the input's layout and array type, plus what is needed to
        show them (``show()``, ``save()``, notebook display).
    """
    model = _model(model)
    if implementation != "crosslens":
        if isinstance(x, (tuple, list, dict)) and not hasattr(x, "shape") and any(
                hasattr(v, "shape") for v in (x.values() if isinstance(x, dict) else x)):
            raise UnsupportedError(f"implementation={implementation!r} explains one input "
                                   "array; for several inputs use crosslens' own methods "
                                   "(implementation='crosslens')")
        return _explain_with_toolset(implementation, model, x, method, target, layer, seed,
                                     memory_budget, options, abs=abs,
                                     reduce_channels=reduce_channels, normalize=normalize)
    spec = get_method(method)
    check_options(spec, options)
    check_settings(seed=seed, progress=progress, abs=abs)
    backend = get_backend(model)
    missing = spec.needs - backend.capabilities()
    if missing:
        raise UnsupportedError(f"method {spec.name!r} needs {sorted(missing)}, which the "
                               f"{backend.name} backend does not provide")
    with backend.session(parse_budget(memory_budget)):
        native_x = backend.prepare(x)
        layer_name = backend.resolve_layer(layer) if layer is not None else None
        resolved = resolve_target(target, backend.ops.shape(native_x)[0], backend.resolve_layer)
        ctx = Context(backend, native_x, resolved, layer_name, seed, progress)
        note = at_embedding(ctx, spec, options) if backend.ops.is_integer(native_x) else None
        result = spec.fn(ctx, **options)
        check_result(ctx, spec, result)
        if note:
            result.info.setdefault("note", note)
        if reduce_channels is not None and result.layer is not None and spec.family == "cam":
            raise OptionError(f"{spec.name} maps have no channel axis (shape (N, H, W)); "
                              "drop reduce_channels")
        post = dict(abs=abs, reduce_channels=reduce_channels, normalize=normalize)
        attributions = _finish(backend, result, x, native_x, post)
        outputs = None if result.outputs is None else backend.ops.to_numpy(result.outputs)
        final_target = ctx.target
        if isinstance(final_target, PredictedTarget) and outputs is not None \
                and outputs.ndim == 2:
            final_target = ClassTarget(predicted_classes(outputs,
                                                         backend.output_activation()))
        return Explanation(
            attributions=attributions, inputs=x, method=spec.name,
            target=_target_value(final_target), layout=ctx.layout, layer=result.layer,
            outputs=outputs, info=result.info)


def _finish(backend: Any, result: Any, x: Any, native_x: Any, post: dict[str, Any]) -> Any:
    """Post-process native attributions and return them in the caller's array type (and,
    for several inputs, in the caller's structure)."""
    ops = backend.ops
    structure = backend.structure
    if result.layer is not None:  # a layer's values: that layer's layout, the input's type
        layout = backend.layer_output_layout(len(ops.shape(result.attributions)))
        native = postprocess(ops, result.attributions, layout, **post)
        return _restored(backend, native, x if structure is None else structure.members(x)[0])
    if structure is None:
        layout = backend.input_layout(ops.shape(native_x))
        return _restored(backend, postprocess(ops, result.attributions, layout, **post), x)
    parts = []
    for member, like in zip(structure.split(ops, result.attributions), structure.members(x)):
        layout = backend.input_layout(ops.shape(member))
        parts.append(_restored(backend, postprocess(ops, member, layout, **post), like))
    return structure.pack(parts)


def _restored(backend: Any, native: Any, like: Any) -> Any:
    """``backend.restore``, refusing values the caller's narrower dtype cannot hold (a
    float16 input gets float16 attributions: overflow would be a silent infinity)."""
    restored = backend.restore(native, like)
    if "16" in str(getattr(like, "dtype", "")):
        values = to_numpy(restored)
        if not np.isfinite(values).all():
            largest = float(np.abs(backend.ops.to_numpy(native)).max())
            raise NonFiniteError(
                f"the attributions (largest magnitude {largest:.3g}) exceed the range of the "
                f"input's dtype {getattr(like, 'dtype')}, in which they are returned; give "
                "the input as float32 to get them, or normalize=... to rescale them")
    return restored


def _explain_with_toolset(implementation: str, model: Any, x: Any, method: str, target: Any,
                          layer: Any, seed: int | None, memory_budget: Any,
                          options: dict[str, Any], **post: Any) -> Explanation:
    from .toolsets.bridge import run_toolset

    if seed is not None:
        options = dict(options, seed=seed)
    attributions, resolved, layer_name, info = run_toolset(
        implementation, model, x, method, target, layer, options, parse_budget(memory_budget))
    backend = get_backend(model)
    with backend.session():
        native = postprocess(backend.ops, backend.ops.asarray(attributions), backend.layout,
                             **post)
        restored = backend.restore(native, x)
    return Explanation(attributions=restored, inputs=x, method=method,
                       target=_target_value(resolved), layout=backend.layout,
                       layer=layer_name, info=info)


def _target_value(target: Any) -> Any:
    if isinstance(target, ClassTarget):
        return [int(i) for i in target.indices]
    return describe(target)


def methods(family: str | None = None) -> "MethodTable":
    """Every registered method with what it needs and which backends run it."""
    rows = []
    for spec in all_methods():
        if family is not None and spec.family != family:
            continue
        backends = [name for name, info in BACKENDS.items() if spec.needs <= info.capabilities]
        rows.append({"name": spec.name, "family": spec.family, "summary": spec.summary,
                     "needs": sorted(spec.needs), "backends": backends,
                     "aliases": list(spec.aliases), "options": spec.option_defaults(),
                     "reference": spec.reference})
    return MethodTable(rows)


class MethodTable(list):
    """A list of method rows (dicts) that prints as a table and renders as markdown."""

    def __repr__(self) -> str:
        width = max((len(r["name"]) for r in self), default=4)
        lines = [f"{'method':<{width}}  {'backends':<14} needs"]
        lines += [f"{r['name']:<{width}}  {','.join(r['backends']):<14} {','.join(r['needs'])}"
                  for r in self]
        return "\n".join(lines)

    def markdown(self) -> str:
        """The README's methods table."""
        lines = ["| method | family | what it computes | needs | backends | reference |",
                 "|---|---|---|---|---|---|"]
        for r in self:
            aliases = f" ({', '.join(r['aliases'])})" if r["aliases"] else ""
            lines.append(f"| `{r['name']}`{aliases} | {r['family']} | {r['summary']} | "
                         f"{', '.join(r['needs'])} | {', '.join(r['backends'])} | "
                         f"{r['reference']} |")
        return "\n".join(lines)


def layers(model: Any) -> list[str]:
    """Every addressable layer name of ``model`` (for ``layer=`` and neuron targets).

    A layer that runs several times in one forward pass (a shared activation module) is
    addressed per call as ``"name#k"``; :func:`layer_calls` lists them for an input.
    """
    return get_backend(_model(model)).layer_names()


def layer_calls(model: Any, x: Any) -> dict[str, tuple[int, ...]]:
    """Every addressable layer output on ``x``, in execution order, with its per-sample
    shape: ``name`` for a layer that runs once, ``name#k`` for each call of a layer that
    runs several times (shared modules)."""
    backend = get_backend(_model(model))
    with backend.session():
        return backend.layer_shapes(backend.prepare(x))


def activations(model: Any, x: Any, layers: Any) -> dict[str, Any]:
    """Values of the named layers for ``x``, as numpy arrays in the model's layout."""
    backend = get_backend(_model(model))
    names = [layers] if isinstance(layers, str) or not isinstance(layers, (list, tuple)) \
        else list(layers)
    with backend.session():
        native = backend.prepare(x)
        resolved = [backend.resolve_layer(name) for name in names]
        values = backend.activations(native, resolved)
        return {name: backend.ops.to_numpy(values[name]) for name in resolved}


def visualize(model: Any, objective: Any, **options: Any) -> Any:
    """Feature visualization of a model object, a model file or a ``module:callable``
    reference: :func:`crosslens.featurevis.visualize` (its options and result)."""
    from .featurevis import visualize as run
    return run(_model(model), objective, **options)


def _model(model: Any) -> Any:
    """A model object, loading paths and ``module:callable`` references."""
    if isinstance(model, str):
        from .loading import load_model
        return load_model(model)
    return model


__all__ = ["explain", "methods", "layers", "layer_calls", "activations", "visualize",
           "CAPABILITIES"]
