"""What the benchmark measures: models, inputs and method settings.

Methods are looked up in crosslens' registry when the runner runs; a benchmark method
whose crosslens method (or one of its options) is not registered is skipped with a note.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Benchmark method -> (crosslens method, its options, what one unit of work is).
METHODS: dict[str, dict[str, Any]] = {
    "saliency": {"method": "saliency", "options": {}, "passes": "backward"},
    "ig32": {"method": "integrated_gradients", "options": {"steps": 32}, "steps": 32,
             "passes": "backward"},
    "ig128": {"method": "integrated_gradients", "options": {"steps": 128}, "steps": 128,
              "passes": "backward"},
    "smoothgrad16": {"method": "smoothgrad", "options": {"samples": 16}, "samples": 16,
                     "passes": "backward"},
    "smoothgrad50": {"method": "smoothgrad", "options": {"samples": 50}, "samples": 50,
                     "passes": "backward"},
    "gradcam": {"method": "grad_cam", "options": {}, "layer": True, "passes": "backward"},
    "scorecam": {"method": "score_cam", "options": {}, "layer": True, "passes": "forward"},
    "occlusion": {"method": "occlusion", "options": {"patch": 16, "stride": 8}, "patch": 16,
                  "stride": 8, "passes": "forward"},
}
#: Native methods against the library that defined them, computing the same thing on the
#: same model and input (PyTorch only: zennit and Captum are PyTorch libraries). ``models``:
#: where it runs (the zennit peer needs a canonizer for the ResNet's bottlenecks, see
#: peers.py; crosslens' LRP does not yet run on EfficientNet-Lite0, whose convolutions are
#: modules with a padding submodule); ``repeats``: at most this many timed runs.
NATIVE_PEERS: dict[str, dict[str, Any]] = {
    "lrp_epsilon_plus_flat": {
        "method": "lrp", "options": {"composite": "epsilon_plus_flat"}, "peer": "zennit",
        "models": ("resnet50", "resnet50-tiny"), "batch": 1},
    "lrp_epsilon_gamma_box": {
        "method": "lrp", "options": {"composite": "epsilon_gamma_box"}, "peer": "zennit",
        "models": ("resnet50", "resnet50-tiny"), "batch": 1},
    # a 4 x 4 grid (16 features), 128 sampled coalitions, Captum's KernelShap fed the same
    # coalitions (exact enumeration, 2^16 - 2 forward passes, is 35-60 min per
    # implementation here); 3 timed runs keep the whole comparison within 3 min on 2 cores
    "kernelshap128": {
        "method": "kernel_shap", "options": {"samples": 128}, "grid": 4, "peer": "captum",
        "models": ("efficientnet-lite0", "resnet50-tiny"), "batch": 1, "repeats": 3},
}
NOISE_LEVEL = 0.15  # SmoothGrad sigma = 0.15 x (max - min) of each input
BATCHES = (1, 16)
QUICK_BATCHES = (1,)


@dataclass
class ModelCase:
    """A model in one framework, built lazily."""

    name: str
    framework: str
    size: int
    build: Any  # () -> model
    note: str = ""
    _model: Any = field(default=None, repr=False)

    def model(self) -> Any:
        if self._model is None:
            self._model = self.build()
        return self._model


def torch_resnet50(width: float = 1.0):
    from resnet_torch import resnet50
    model = resnet50(seed=0, width=width)
    model.requires_grad_(False)  # only input gradients are benchmarked
    return model


def keras_resnet50(size: int, width: float | None = None):
    import keras
    keras.utils.set_random_seed(0)  # the benchmark process owns the global seed
    if width is None:
        return keras.applications.ResNet50(weights=None, classifier_activation=None)
    from resnet_keras import resnet50
    return resnet50(size=size, width=width)


def torch_efficientnet_lite0():
    from crosslens.zoo import efficientnet_lite0
    model = efficientnet_lite0()
    model.requires_grad_(False)
    return model


def model_cases(quick: bool) -> list[ModelCase]:
    """The models of a run: tiny ResNets for ``--quick``, else the real ones at 224x224."""
    if quick:
        return [ModelCase("resnet50-tiny", "torch", 64, lambda: torch_resnet50(1 / 16)),
                ModelCase("resnet50-tiny", "keras", 64, lambda: keras_resnet50(64, 1 / 16))]
    return [ModelCase("resnet50", "torch", 224, torch_resnet50),
            ModelCase("resnet50", "keras", 224, lambda: keras_resnet50(224)),
            ModelCase("efficientnet-lite0", "torch", 224, torch_efficientnet_lite0),
            ModelCase("efficientnet-lite0", "keras", 224, None,
                      note="Keras translation of the PyTorch model (crosslens.translate)")]


def matrix() -> list[tuple[str, str, int, str]]:
    """Every ``(framework, model, batch, method)`` cell of the full run, in run order."""
    return [(case.framework, case.name, batch, method) for case in model_cases(quick=False)
            for batch in BATCHES for method in METHODS]


def inputs(framework: str, batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Seeded U(-1, 1) images (the same values in both layouts), float32."""
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, 3, size, size))
    x = x.astype(np.float32)
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))) if framework == "keras" else x


def targets(batch: int, classes: int) -> np.ndarray:
    return (np.arange(batch, dtype=np.int64) * 37 + 11) % classes


def device_kind() -> str:
    """``"cuda"`` when a GPU is visible to PyTorch (or ``CROSSLENS_BENCH_DEVICE``), else cpu."""
    forced = os.environ.get("CROSSLENS_BENCH_DEVICE")
    if forced:
        return forced
    try:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"
