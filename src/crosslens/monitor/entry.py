"""What one logging step (or one logged pipeline stage) hands to the sinks."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Entry:
    """One entry of the training log.

    Attributes
    ----------
    kind
        ``"step"`` (the probes explained at an epoch) or ``"stage"`` (a pipeline stage's
        images, :meth:`Monitor.log_images`).
    title
        ``"epoch 3"`` or the stage's name.
    step
        The epoch (TensorBoard's step axis).
    scalars
        Tag to value, e.g. ``"drift/saliency/label"``.
    histograms
        Tag to the values whose distribution is logged.
    images
        Tag to an RGB ``uint8`` image ``(H, W, 3)``.
    captions
        Tag of an image to the text shown under it.
    maps
        ``"method/target"`` to the raw, signed ``(N, H, W)`` maps of this step (for sinks
        that measure something of their own; not written by the built-in sinks).
    notes
        Plain-text remarks, e.g. why a step was skipped.
    skipped
        Whether the step was skipped to honour the time budget.
    seconds
        Wall time the monitor spent on this entry.
    """

    kind: str
    title: str
    step: int
    scalars: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False
    seconds: float = 0.0
