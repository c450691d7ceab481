"""tf-keras-vis adapter: its own implementations on Keras models, aligned options.

Saliency / SmoothGrad, Gradcam, GradcamPlusPlus, Scorecam, Layercam, and
ActivationMaximization (``"activation_maximization"``: the input ``x`` is the seed image,
the result the optimized images, in the model's layout).

Aligned with crosslens' convention: raw signed gradients (``gradient_modifier=None``,
``keepdims=True``, ``normalize_map=False``), CAMs unnormalized (``normalize_cam=False``)
and computed at layer resolution (``expand_cam=False``), then upsampled with the same
bilinear resize (``align_corners=False``) crosslens uses — tf-keras-vis' own
``scipy.ndimage.zoom`` resize has different corner semantics. ``relu=False`` maps to an
identity ``activation_modifier``. The user's model is never cloned or modified
(``model_modifier=None``, ``clone=False``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from ..core.errors import OptionError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.targets import ClassTarget, ScoreTarget

CAMS = {"grad_cam": "Gradcam", "grad_cam_plus_plus": "GradcamPlusPlus",
        "score_cam": "Scorecam", "layer_cam": "Layercam"}
SALIENCY = ("saliency", "smoothgrad")
MAXIMIZATION = ("activation_maximization", "ActivationMaximization")


def methods() -> list[str]:
    return list(SALIENCY) + list(CAMS) + list(CAMS.values()) + ["Saliency"] + list(MAXIMIZATION)


def run(model: Any, layer_object: Any, x: tf.Tensor, method: str, target: Any,
        layer: str | None, options: dict[str, Any]) -> np.ndarray:
    """Run tf-keras-vis' implementation of ``method``; returns attributions like ours."""
    from tf_keras_vis.utils.scores import CategoricalScore

    options = dict(options)
    # tf-keras-vis draws noise from TensorFlow's global generator; seeding it would change
    # the caller's global state, so a seed is not forwarded (its SmoothGrad is not seeded).
    options.pop("seed", None)
    if isinstance(target, ClassTarget):
        score = CategoricalScore([int(i) for i in target.indices])
    elif isinstance(target, ScoreTarget):
        score = target.fn
    else:
        raise UnsupportedError("tf-keras-vis takes class or callable targets only")
    name = {v: k for k, v in CAMS.items()}.get(method, method)
    name = "saliency" if name == "Saliency" else name
    if name in SALIENCY:
        from tf_keras_vis.saliency import Saliency
        smooth = {}
        if name == "smoothgrad":
            if options.pop("base", "saliency") != "saliency":
                raise UnsupportedError("tf-keras-vis SmoothGrad averages plain gradients only")
            smooth = {"smooth_samples": options.pop("samples", 50),
                      "smooth_noise": options.pop("noise_level", 0.15)}
        _no_more(options, name)
        result = Saliency(model, model_modifier=None, clone=False)(
            score, x, gradient_modifier=None, keepdims=True, normalize_map=False, **smooth)
        return np.asarray(result)
    if name in MAXIMIZATION:
        return _activation_maximization(model, score, x, options)
    if name not in CAMS:
        raise UnsupportedError(unknown_name_message("method for tf-keras-vis", method,
                                                    methods()))
    module = __import__(f"tf_keras_vis.{_module_of(name)}", fromlist=[CAMS[name]])
    cam_class = getattr(module, CAMS[name])
    relu = options.pop("relu", True)
    upsample = options.pop("upsample", True)
    kwargs: dict[str, Any] = {"expand_cam": False, "normalize_cam": False,
                              "activation_modifier": (lambda cam: tf.nn.relu(cam)) if relu
                              else (lambda cam: cam)}
    if layer is not None:  # exactly this layer: no search for a nearby conv layer
        kwargs["penultimate_layer"] = layer_object(layer)
        kwargs["seek_penultimate_conv_layer"] = False
    kwargs.update(options)
    cam = np.asarray(cam_class(model, model_modifier=None, clone=False)(score, x, **kwargs))
    if upsample:
        from ..viz.resize import resize_bilinear
        size = tuple(int(s) for s in x.shape[1:3])
        cam = np.stack([resize_bilinear(c, size) for c in cam])
    return cam


def _activation_maximization(model: Any, score: Any, x: tf.Tensor, options: dict) -> np.ndarray:
    """tf-keras-vis' ActivationMaximization started from ``x`` (its seed input); returns the
    optimized inputs. Its own defaults (jitter, rotation, total variation, L1 norm, RMSprop,
    200 steps) apply unless given; ``input_range`` defaults to the range of ``x``."""
    from tf_keras_vis.activation_maximization import ActivationMaximization

    options.setdefault("input_range", (float(tf.reduce_min(x)), float(tf.reduce_max(x))))
    maximizer = ActivationMaximization(model, model_modifier=None, clone=False)
    return np.asarray(maximizer(score, seed_input=x, **options))


def _module_of(name: str) -> str:
    return {"grad_cam": "gradcam", "grad_cam_plus_plus": "gradcam_plus_plus",
            "score_cam": "scorecam", "layer_cam": "layercam"}[name]


def _no_more(options: dict, name: str) -> None:
    if options:
        raise OptionError(f"tf-keras-vis {name}: unsupported option {sorted(options)[0]!r}")
