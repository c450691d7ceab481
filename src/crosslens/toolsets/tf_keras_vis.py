"""tf-keras-vis adapter: its own implementations on Keras models, aligned options.

Saliency / SmoothGrad, Gradcam, GradcamPlusPlus, Scorecam, Layercam, and
ActivationMaximization (``"activation_maximization"``: the input ``x`` is the seed image,
the result the optimized images, in the model's layout).

Aligned with crosslens' convention: raw signed gradients (``gradient_modifier=None``,
``keepdims=True``, ``normalize_map=False``), CAMs unnormalized (``normalize_cam=False``)
and computed at layer resolution (``expand_cam=False``), then upsampled with the same
bilinear resize (``align_corners=False``) crosslens uses — tf-keras-vis' own
``scipy.ndimage.zoom`` resize has different corner semantics. ``relu=False`` skips only
the ReLU of the final map, as crosslens does: Gradcam, Layercam and Scorecam apply their
``activation_modifier`` to the map alone, so it becomes the identity; GradcamPlusPlus
applies the same modifier to its weights ``exp(S)·grad`` too, so there it keeps the ReLU
on that first call (the weights) and is the identity on the second (the map). Options
tf-keras-vis cannot honour (Scorecam ``softmax=False``, callable targets for Scorecam, whose
scores see softmax probabilities) are refused. Without ``layer=`` the bridge passes
crosslens' default CAM layer (tf-keras-vis would seek the last convolution). tf-keras-vis'
own failures (a layer inside a nested model, Scorecam on a float64 model, options of the
wrong type) are named errors. The user's model is never cloned or modified
(``model_modifier=None``, ``clone=False``).
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from ..core.errors import CrosslensError, OptionError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.targets import ClassTarget, ScoreTarget
from .options import flag, integer, number

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
            if "noise" in options or "stdev" in options:
                raise OptionError("tf-keras-vis SmoothGrad draws its own noise with a spread "
                                  "relative to each input (noise_level=): drop noise= / "
                                  "stdev= or use implementation='crosslens'")
            smooth = {"smooth_samples": integer("tf-keras-vis smoothgrad", "samples",
                                                options.pop("samples", 50)),
                      "smooth_noise": number("tf-keras-vis smoothgrad", "noise_level",
                                             options.pop("noise_level", 0.15), minimum=0.0)}
        _no_more(options, name)
        if layer is not None:
            raise UnsupportedError(f"tf-keras-vis {name} attributes to the input only: drop "
                                   "layer= (or use implementation='crosslens' for layer "
                                   "gradients)")
        with _toolset_errors(f"tf-keras-vis Saliency ({name})"):
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
    where = f"tf-keras-vis {CAMS[name]}"
    relu = flag(where, "relu", options.pop("relu", True))
    upsample = flag(where, "upsample", options.pop("upsample", True))
    if name == "score_cam":
        if not flag(where, "softmax", options.pop("softmax", True)):
            raise OptionError("tf-keras-vis Scorecam always weights channels by softmax "
                              "probabilities: drop softmax=False or use "
                              "implementation='crosslens'")
        if isinstance(target, ScoreTarget):
            raise UnsupportedError("tf-keras-vis Scorecam applies the score to softmax "
                                   "probabilities, not to the model's outputs as crosslens "
                                   "targets do: use a class target, or "
                                   "implementation='crosslens' with softmax=False")
        if x.dtype != tf.float32:
            raise UnsupportedError(f"tf-keras-vis Scorecam computes its channel weights in "
                                   f"float32 and fails on a {x.dtype.name} model: use "
                                   "implementation='crosslens' (or a float32 model)")
        if options.get("max_channels") is not None:  # our name of its Faster Score-CAM
            options["max_N"] = options.pop("max_channels")
        options.pop("max_channels", None)
    kwargs: dict[str, Any] = {"expand_cam": False, "normalize_cam": False,
                              "activation_modifier": _map_modifier(name, relu)}
    if layer is not None:  # exactly this layer: no search for a nearby conv layer
        kwargs["penultimate_layer"] = layer_object(layer)
        kwargs["seek_penultimate_conv_layer"] = False
    _check_known(where, cam_class.__call__, options, " (plus relu, upsample)")
    kwargs.update(options)
    with _toolset_errors(where, layer):
        cam = np.asarray(cam_class(model, model_modifier=None, clone=False)(score, x, **kwargs))
    if upsample:
        from ..core.imageops import resize_bilinear
        size = tuple(int(s) for s in x.shape[1:3])
        cam = np.stack([resize_bilinear(c, size) for c in cam])
    return cam


def _check_known(where: str, call: Any, options: dict, extra: str = "") -> None:
    """Option names ``call`` does not take are an OptionError listing those it does."""
    valid = [p for p in inspect.signature(call).parameters
             if p not in ("self", "score", "seed_input")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise OptionError(f"{where} has no option {unknown[0]!r}; its options are: "
                          f"{', '.join(valid)}{extra}")


def _activation_maximization(model: Any, score: Any, x: tf.Tensor, options: dict) -> np.ndarray:
    """tf-keras-vis' ActivationMaximization started from ``x`` (its seed input); returns the
    optimized inputs. Its own defaults (jitter, rotation, total variation, L1 norm, RMSprop,
    200 steps) apply unless given; ``input_range`` defaults to the range of ``x``."""
    from tf_keras_vis.activation_maximization import ActivationMaximization

    _check_known("tf-keras-vis ActivationMaximization", ActivationMaximization.__call__,
                 options)
    if "steps" in options:
        options["steps"] = integer("tf-keras-vis ActivationMaximization", "steps",
                                   options["steps"])
    options.setdefault("input_range", (float(tf.reduce_min(x)), float(tf.reduce_max(x))))
    maximizer = ActivationMaximization(model, model_modifier=None, clone=False)
    with _toolset_errors("tf-keras-vis ActivationMaximization", error=OptionError):
        return np.asarray(maximizer(score, seed_input=x, **options))


def _map_modifier(name: str, relu: bool) -> Any:
    """tf-keras-vis' ``activation_modifier`` giving crosslens' ``relu`` semantics.

    GradcamPlusPlus calls it twice: first on the weights ``exp(S)·grad`` (crosslens keeps
    their ReLU whatever ``relu`` is), then on the map. The other CAMs call it on the map
    only. A fresh modifier per run counts the calls."""
    if relu:
        return lambda cam: tf.nn.relu(cam)
    if name != "grad_cam_plus_plus":
        return lambda cam: cam
    calls = []

    def weights_only(tensor: Any) -> Any:
        calls.append(None)
        return tf.nn.relu(tensor) if len(calls) == 1 else tensor
    return weights_only


@contextmanager
def _toolset_errors(where: str, layer: str | None = None,
                    error: type = UnsupportedError) -> Iterator[None]:
    """tf-keras-vis' own failures (its model surgery cannot reach a layer inside a nested
    model, dtype mismatches, an option of the wrong type, ...) as ``error`` naming the
    cause and the fix; crosslens' own errors pass through."""
    try:
        yield
    except CrosslensError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, tf.errors.OpError) as cause:
        at = f" at layer {layer!r}" if layer else ""
        hint = (" (its model surgery builds a model whose output is that layer, which fails "
                "for layers of nested models: choose a top-level layer, see cl.layers(model))"
                if layer else "")
        message = str(cause).splitlines()[0][:300] if str(cause) else ""
        raise error(
            f"{where} failed on this model{at} with these options{hint}: "
            f"{type(cause).__name__}: {message}. Check the options against tf-keras-vis' "
            "documentation, or use implementation='crosslens', which runs the same method "
            "on any model") from cause


def _module_of(name: str) -> str:
    return {"grad_cam": "gradcam", "grad_cam_plus_plus": "gradcam_plus_plus",
            "score_cam": "scorecam", "layer_cam": "layercam"}[name]


def _no_more(options: dict, name: str) -> None:
    if options:
        raise OptionError(f"tf-keras-vis {name}: unsupported option {sorted(options)[0]!r}")
