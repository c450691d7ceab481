"""The peers, called as their documentation shows: Captum (PyTorch), tf-keras-vis (Keras).

Each ``*_peer(method, ...)`` returns a zero-argument callable that computes the method on
the cell's inputs, or a string saying why the peer has no such method. Internal batch
sizes are set to the same samples-per-pass as crosslens and the floor; objects that a
user builds once (attribution classes, tf-keras-vis visualizers) are built outside the
timed call.
"""
from __future__ import annotations

from typing import Any, Callable


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
        from tf_keras_vis.scorecam import Scorecam
        cam = Scorecam(model, model_modifier=None, clone=False)
        return lambda: cam(score, x, penultimate_layer=layer, seek_penultimate_conv_layer=False,
                           normalize_cam=False, expand_cam=True, batch_size=max(1, chunk))
    return "tf-keras-vis has no " + {"ig32": "integrated gradients",
                                     "ig128": "integrated gradients"}.get(name, name)
