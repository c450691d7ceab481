"""Every channel of a layer, visualized and laid out as a grid (tf-explain's kernel
inspection, with feature visualization instead of raw weights)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import OptionError
from .modelio import ModelIO, image_layout
from .objectives import channel as channel_objective
from ..core.progress import progress_bar
from .render import FeatureVisualization, _declared_size, _pair, run


def layer_channels(model: Any, layer: Any, model_size: tuple[int, int] | None = None,
                   channels: int = 3) -> int:
    """Number of channels of ``layer``'s output (one forward pass of a gray image)."""
    from ..backends import get_backend
    backend = get_backend(model)
    layout = image_layout(backend)
    size = _pair(model_size) or _declared_size(model, layout) or (224, 224)
    io = ModelIO(layout, channels)
    with backend.session():
        name = backend.resolve_layer(layer)
        x = backend.prepare(io.encode(np.full((1,) + size + (channels,), 0.5)))
        shape = backend.ops.shape(backend.activations(x, [name])[name])
    return int(shape[1] if layout == "channels_first" or len(shape) == 2 else shape[-1])


def visualize_filters(model: Any, layer: Any, channels: Sequence[int] | None = None, *,
                      batch: int = 8, steps: int = 128, seed: int | None = None,
                      progress: bool = True, **options: Any) -> FeatureVisualization:
    """Visualize channels of a conv layer (default: all), ``batch`` at a time.

    Parameters
    ----------
    model
        PyTorch or Keras model.
    layer
        The layer (name or object).
    channels
        Channel indices; ``None`` for every channel of the layer.
    batch
        Channels optimized together (one image each, in one batch).
    steps
        Steps per group.
    seed
        Seed; group ``k`` uses the ``k``-th child seed, so results do not depend on
        ``batch``'s effect on the draw order only through the seed.
    progress
        Show a progress bar over all steps (tqdm if installed).
    **options
        Any :func:`crosslens.visualize` option (size, param, transforms, ...).

    Returns
    -------
    FeatureVisualization
        All channels' images, titled by channel; ``.figure()`` is the grid.
    """
    if "objective" in options or "batch" in options:
        raise OptionError("visualize_filters sets the objective and batch itself")
    if channels is None:
        count = layer_channels(model, layer, options.get("model_size"),
                               options.get("channels", 3))
        channels = list(range(count))
    channels = [int(c) for c in channels]
    if not channels:
        raise OptionError("no channels to visualize")
    groups = [channels[i:i + batch] for i in range(0, len(channels), batch)]
    seeds = np.random.SeedSequence(seed).spawn(len(groups))
    bar = progress_bar(steps * len(groups), f"filters of {layer}", progress)
    parts = []
    try:
        for group, child in zip(groups, seeds):
            parts.append(run(model, channel_objective(layer, group), bar=bar, batch=len(group),
                             steps=steps, seed=int(child.generate_state(1)[0]), **options))
    finally:
        bar.close()
    first = parts[0]
    return FeatureVisualization(
        images=np.concatenate([p.images for p in parts]),
        inputs=np.concatenate([p.inputs for p in parts]),
        objective=f"channels of {layer}",
        scores=np.concatenate([p.scores for p in parts], axis=1),
        final_scores=np.concatenate([p.final_scores for p in parts]),
        params=np.concatenate([p.params for p in parts]),
        titles=[f"{c}" for c in channels],
        info=dict(first.info, channels=channels, batch=batch,
                  seconds=sum(p.info["seconds"] for p in parts)))
