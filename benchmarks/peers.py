"""The peers, called as their documentation shows: Captum (PyTorch), tf-keras-vis (Keras).

Each ``*_peer(method, ...)`` returns a zero-argument callable that computes the method on
the cell's inputs, or a string saying why the peer has no such method. Internal batch
sizes are set to the same samples-per-pass as crosslens and the floor; objects that a
user builds once (attribution classes, tf-keras-vis visualizers) are built outside the
timed call.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np


def captum_peer(name: str, model: Any, x: Any, t: Any, chunk: int, params: dict,
                layer: str | None) -> Callable[[], Any] | str:
    try:
        import captum.attr as ca
    except ImportError:
        return "captum not installed"
    n = len(x)
    per = max(1, chunk // n)
    target = t.tolist()
    if name == "saliency":
        sal = ca.Saliency(model)
        return lambda: sal.attribute(x, target=target, abs=False)
    if name.startswith("ig"):
        ig = ca.IntegratedGradients(model)
        return lambda: ig.attribute(x, baselines=0.0, target=target, n_steps=params["steps"],
                                    method="gausslegendre", internal_batch_size=per * n)
    if name.startswith("smoothgrad"):
        nt = ca.NoiseTunnel(ca.Saliency(model))
        return lambda: nt.attribute(x, nt_type="smoothgrad", nt_samples=params["samples"],
                                    nt_samples_batch_size=per, stdevs=params["sigma"],
                                    target=target, abs=False)
    if name == "gradcam":
        module = dict(model.named_modules())[layer]
        gc = ca.LayerGradCam(model, module)
        size = tuple(x.shape[2:])
        return lambda: ca.LayerAttribution.interpolate(
            gc.attribute(x, target=target, relu_attributions=True), size, "bilinear")[:, 0]
    if name == "occlusion":
        occ = ca.Occlusion(model)
        c, p, s = x.shape[1], params["patch"], params["stride"]
        return lambda: occ.attribute(x, target=target, sliding_window_shapes=(c, p, p),
                                     strides=(c, s, s), baselines=0.0,
                                     perturbations_per_eval=per)
    return "Captum has no " + {"scorecam": "Score-CAM"}.get(name, name)


def tf_keras_vis_peer(name: str, model: Any, x: Any, t: Any, chunk: int, params: dict,
                      layer: str | None) -> Callable[[], Any] | str:
    try:
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        return "tf-keras-vis not installed"
    score = CategoricalScore([int(i) for i in t])
    if name == "saliency" or name.startswith("smoothgrad"):
        from tf_keras_vis.saliency import Saliency
        sal = Saliency(model, model_modifier=None, clone=False)
        smooth = {} if name == "saliency" else {"smooth_samples": params["samples"],
                                                 "smooth_noise": params["noise_level"]}
        return lambda: sal(score, x, keepdims=True, gradient_modifier=None,
                           normalize_map=False, **smooth)
    if name == "gradcam":
        from tf_keras_vis.gradcam import Gradcam
        cam = Gradcam(model, model_modifier=None, clone=False)
        return lambda: cam(score, x, penultimate_layer=layer, seek_penultimate_conv_layer=False,
                           normalize_cam=False, expand_cam=True)
    if name == "scorecam":
        too_big = _scorecam_out_of_memory(model, x, layer)
        if too_big:
            return too_big
        from tf_keras_vis.scorecam import Scorecam
        cam = Scorecam(model, model_modifier=None, clone=False)
        return lambda: cam(score, x, penultimate_layer=layer, seek_penultimate_conv_layer=False,
                           normalize_cam=False, expand_cam=True, batch_size=max(1, chunk))
    return "tf-keras-vis has no " + {"ig32": "integrated gradients",
                                     "ig128": "integrated gradients"}.get(name, name)


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None where there is no such file."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _scorecam_out_of_memory(model: Any, x: Any, layer: str | None) -> str | None:
    """Why tf-keras-vis' Score-CAM cannot run on this machine, or None if it fits.

    tf-keras-vis 0.8.7 builds every masked input on the host before predicting: it tiles
    the input once per channel of the layer, tiles the upsampled masks to the same
    shape and multiplies them, so three float32 arrays of channels × the whole input
    exist at once (its ``batch_size`` only splits the predict that follows). At batch
    16 on EfficientNet-Lite0 (1280 channels) that is 3 × 11.5 GiB, and the process was
    killed by the out-of-memory killer on the 24 GiB machine; this check records the
    reason in the cell instead of losing the run.
    """
    available = _available_bytes()
    if available is None:
        return None
    channels = int(model.get_layer(layer).output.shape[-1])
    copies = channels * int(np.prod(x.shape)) * 4
    needed = 3 * copies
    if needed <= available:
        return None
    return (f"tf-keras-vis Score-CAM needs about {needed / 2**30:.0f} GiB here: it holds "
            f"{channels} masked copies of the whole batch on the host at once (three "
            f"float32 arrays of {copies / 2**30:.1f} GiB), more than the "
            f"{available / 2**30:.0f} GiB available")
