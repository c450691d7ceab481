"""Speed of the feature-visualization loop, for the benchmark runner."""
from __future__ import annotations

from typing import Any

import numpy as np


def steps_per_second(model: Any, *, size: int = 224, batch: int = 4, steps: int = 10,
                     warmup: int = 2, objective: Any = 0, **options: Any) -> dict[str, Any]:
    """Time :func:`crosslens.visualize` steps (Fourier, standard transforms by default).

    Parameters
    ----------
    model
        PyTorch or Keras model taking ``size x size`` images.
    size, batch
        Image size and batch (the benchmark records 224 and 4).
    steps, warmup
        Timed steps, after ``warmup`` untimed ones (tracing, allocation).
    objective
        The objective (default: the logit of class 0).
    **options
        Other :func:`crosslens.visualize` options.

    Returns
    -------
    dict
        ``steps_per_second``, ``ms_per_step``, ``backend_ms_per_step`` (the model's
        forward-backward pass, with transfers) and ``host_ms_per_step`` (parameterization,
        transforms, optimizer in numpy), plus the settings.
    """
    from .render import visualize
    options.setdefault("seed", 0)
    result = visualize(model, objective, size=size, batch=batch, steps=warmup + steps,
                       **options)
    info = result.info
    per_step = float(np.mean(info["step_seconds"][warmup:]))
    backend = float(np.mean(info["step_backend_seconds"][warmup:]))
    return {"steps_per_second": 1.0 / per_step, "ms_per_step": 1e3 * per_step,
            "backend_ms_per_step": 1e3 * backend, "host_ms_per_step": 1e3 * (per_step - backend),
            "size": size, "batch": batch, "steps": steps, "backend": info["backend"],
            "param": info["param"]}
