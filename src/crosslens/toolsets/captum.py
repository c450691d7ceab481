"""Captum adapter: Captum's own implementations on PyTorch models, aligned options.

Our method names map to the Captum class that implements the same computation (input,
layer or neuron variant, chosen by ``layer=`` and ``cl.Neuron`` targets), with our
defaults translated to Captum's arguments (``steps`` -> ``n_steps``, ``rule`` ->
``method``, raw signed saliency ``abs=False``, noise as a per-sample std, ...). Any other
Captum attribution class is available by its class name (``"KernelShap"``,
``"LayerDeepLift"``, ...) with options split between its constructor and ``attribute``.

Array options in the input's space (``baseline`` / ``baselines``, ``feature_mask``) may be
numpy arrays, lists, numbers or tensors, one per input or one for all (per-sample shape):
they become tensors on the input's device and dtype, shaped as Captum requires (a
distribution ``(M, ...)`` for the Shap classes); wrong shapes, Captum's bare ``assert``s
and wrong option types are :class:`~crosslens.core.errors.OptionError`. ``seed`` seeds
torch's and NumPy's generators (GradientShap draws from both) and restores them.
"""
from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np
import torch
from captum import attr as captum_attr

from ..core.errors import OptionError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.targets import ChannelTarget, ClassTarget, NeuronTarget, ScoreTarget
from .options import flag, integer, number

INPUT = {"saliency": "Saliency", "gradient_x_input": "InputXGradient",
         "integrated_gradients": "IntegratedGradients", "guided_backprop": "GuidedBackprop",
         "deconvnet": "Deconvolution", "occlusion": "Occlusion",
         "feature_ablation": "FeatureAblation", "gradient_shap": "GradientShap",
         "kernel_shap": "KernelShap", "shapley_value_sampling": "ShapleyValueSampling",
         "lime": "Lime", "feature_permutation": "FeaturePermutation",
         "deeplift": "DeepLift", "deeplift_shap": "DeepLiftShap"}
LAYER = {"saliency": "LayerGradientXActivation", "gradient_x_input": "LayerGradientXActivation",
         "integrated_gradients": "LayerIntegratedGradients", "conductance": "LayerConductance",
         "activations": "LayerActivation", "grad_cam": "LayerGradCam",
         "guided_grad_cam": "GuidedGradCam", "internal_influence": "InternalInfluence"}
NEURON = {"saliency": "NeuronGradient", "integrated_gradients": "NeuronIntegratedGradients",
          "guided_backprop": "NeuronGuidedBackprop", "deconvnet": "NeuronDeconvolution",
          "conductance": "NeuronConductance"}
NOISE = {"smoothgrad": "smoothgrad", "squaregrad": "smoothgrad_sq", "vargrad": "vargrad"}
# Classes whose ``baselines`` are a distribution ``(M, ...)`` sampled from, not one per input.
DISTRIBUTION = ("GradientShap", "DeepLiftShap")


def methods() -> list[str]:
    """Our method names this adapter maps, plus every Captum attribution class name."""
    native = [n for n in dir(captum_attr) if inspect.isclass(getattr(captum_attr, n))
              and hasattr(getattr(captum_attr, n), "attribute")]
    return sorted(set(INPUT) | set(LAYER) | set(NEURON) | set(NOISE)) + native


def run(model: torch.nn.Module, layer_object: Any, x: torch.Tensor,
        method: str, target: Any, layer: str | None, options: dict[str, Any]) -> torch.Tensor:
    """Run Captum's implementation of ``method``; returns attributions like ours.

    ``seed`` seeds torch's generator inside ``torch.random.fork_rng`` and NumPy's global
    generator (GradientShap, Lime and KernelShap draw from it), whose state is put back
    afterwards: the caller's global RNG states are left as they were.
    """
    options = dict(options)
    seed = options.pop("seed", None)
    if seed is not None:
        seed = integer("Captum", "seed", seed, minimum=0)
    numpy_state = np.random.get_state() if seed is not None else None
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(seed)
                np.random.seed(seed % 2 ** 32)
            return _run(model, layer_object, x, method, target, layer, options)
    finally:
        if numpy_state is not None:
            np.random.set_state(numpy_state)


def _run(model, layer_object, x, method, target, layer, options):
    if method in NOISE:
        return _noise_tunnel(model, x, method, target, layer, options)
    forward, captum_target = _forward_and_target(model, target)
    neuron = target if isinstance(target, NeuronTarget) else None
    if isinstance(target, ChannelTarget):
        raise UnsupportedError("Captum has no channel-mean target; use cl.Neuron or a callable")
    name = _captum_name(method, layer, neuron)
    cls = getattr(captum_attr, name)
    init_args = {}
    init_params = inspect.signature(cls.__init__).parameters
    params = inspect.signature(cls.attribute).parameters
    if "baseline" in options and "baselines" in params and not _aligns_baseline(name):
        if "baselines" in options:
            raise OptionError(f"pass one of baseline= and baselines= to Captum {name}, not both")
        options["baselines"] = options.pop("baseline")  # our name for Captum's option
    if "layer" in init_params:
        where = layer or (neuron.layer if neuron else None)
        if where is None:
            raise OptionError(f"Captum {name} needs a layer: pass layer='name'")
        init_args["layer"] = layer_object(where)
    if name == "LayerGradientXActivation":
        init_args["multiply_by_inputs"] = method != "saliency"
    arguments = _aligned_arguments(method, name, x, options)
    for key in list(options):
        if key in init_params and key not in ("self", "forward_func", "model"):
            init_args[key] = options.pop(key)
    first = "model" if "model" in init_params else "forward_func"
    _check_known(name, options, params)
    arguments.update(options)
    _input_space_arguments(name, arguments, x)
    if neuron is not None and "neuron_selector" in params:
        arguments["neuron_selector"] = tuple(neuron.index)
    if "target" in params and neuron is None:
        arguments["target"] = captum_target
    with _captum_checks(name):
        algorithm = cls(**{first: forward}, **init_args)
        result = algorithm.attribute(x, **arguments)
    return _our_layout(method, name, result, x, arguments)


def _check_known(name: str, options: dict, params: Any) -> None:
    unknown = set(options) - set(params)
    if unknown:
        valid = [p for p in params if p not in ("self", "inputs", "target")]
        raise OptionError(f"Captum {name}.attribute has no option {sorted(unknown)[0]!r}; its "
                          f"options are: {', '.join(valid)}")


class _captum_checks:
    """Captum validates its arguments with bare ``assert``s (and fails with TypeError /
    ValueError on values of the wrong type): report those as OptionError. The model itself
    already ran on these inputs when the target was resolved, so these come from the
    options."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if kind in (AssertionError, TypeError, ValueError):
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else \
                "an internal check failed"
            raise OptionError(f"Captum {self.name} rejected the arguments: "
                              f"{kind.__name__}: {reason}. Check the "
                              f"options against Captum's {self.name}.attribute documentation, "
                              "or use implementation='crosslens'") from None
        return False


def _aligns_baseline(name: str) -> bool:
    """Classes whose ``baseline`` option is aligned by :func:`_aligned_arguments`."""
    return "IntegratedGradients" in name or name in (
        "LayerConductance", "NeuronConductance", "InternalInfluence", "Occlusion")


def _input_space_arguments(name: str, arguments: dict, x: torch.Tensor) -> None:
    """``baselines`` and ``feature_mask`` as Captum requires them: tensors on the input's
    device (baselines in its dtype), shaped like the input or broadcastable as Captum
    accepts; numpy arrays, lists and per-sample arrays are converted, wrong shapes named."""
    if "baselines" in arguments and arguments["baselines"] is not None:
        arguments["baselines"] = _baselines(name, arguments["baselines"], x)
    if arguments.get("feature_mask") is not None:
        arguments["feature_mask"] = _feature_mask(name, arguments["feature_mask"], x)


def _as_tensor(value: Any, x: torch.Tensor, dtype: Any, what: str) -> torch.Tensor:
    if isinstance(value, (tuple, list)) and len(value) == 1 and hasattr(value[0], "shape") \
            and len(value[0].shape) == x.ndim:
        value = value[0]  # Captum's one-input tuple
    try:
        if torch.is_tensor(value):
            tensor = value.detach()
        else:
            tensor = torch.as_tensor(np.asarray(value))
        if dtype is not None:
            tensor = tensor.to(dtype=dtype)
        return tensor.to(device=x.device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise OptionError(f"{what} must be a number or an array shaped like the input "
                          f"{tuple(x.shape)}, not {type(value).__name__} ({error})") from None


def _baselines(name: str, value: Any, x: torch.Tensor) -> Any:
    distribution = name.endswith(DISTRIBUTION)
    what = f"Captum {name} baselines"
    if isinstance(value, str):
        value = _baseline(value, x, 8.0)
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        # Captum's Shap classes take tensors only: a constant baseline is one image
        return torch.full((1,) + tuple(x.shape[1:]), float(value), dtype=x.dtype,
                          device=x.device) if distribution else float(value)
    tensor = _as_tensor(value, x, x.dtype, what)
    if tensor.ndim == x.ndim - 1:
        tensor = tensor[None]  # one baseline for every input
    if distribution:
        if tensor.ndim != x.ndim or tensor.shape[1:] != x.shape[1:]:
            raise OptionError(f"{what}: a distribution of baselines shaped (M,) + "
                              f"{tuple(x.shape[1:])} (or one baseline shaped "
                              f"{tuple(x.shape[1:])}), not {tuple(tensor.shape)}")
        if name.endswith("DeepLiftShap") and tensor.shape[0] < 2:
            raise OptionError(f"{what}: DeepLiftShap averages over a distribution of at "
                              f"least 2 baselines, shape (M >= 2,) + {tuple(x.shape[1:])}; "
                              "for one baseline use DeepLift")
        return tensor
    if tensor.ndim == 0:
        return float(tensor)
    if tensor.shape not in (x.shape, (1,) + tuple(x.shape[1:])):
        raise OptionError(f"{what}: one baseline shaped {tuple(x.shape[1:])} or one per input "
                          f"{tuple(x.shape)}, not {tuple(tensor.shape)}")
    return tensor


def _feature_mask(name: str, value: Any, x: torch.Tensor) -> torch.Tensor:
    what = f"Captum {name} feature_mask"
    mask = _as_tensor(value, x, None, what)
    if mask.is_floating_point() or mask.dtype == torch.bool:
        raise OptionError(f"{what}: integer group ids (features with the same id are "
                          f"perturbed together), not {mask.dtype}")
    if mask.ndim == x.ndim - 1:
        mask = mask[None]
    try:
        fits = torch.broadcast_shapes(mask.shape, x.shape) == x.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise OptionError(f"{what}: shaped like the input {tuple(x.shape)} or broadcastable "
                          f"to it, not {tuple(mask.shape)}")
    return mask.long()


def _captum_name(method: str, layer: str | None, neuron: NeuronTarget | None) -> str:
    if hasattr(captum_attr, method) and method[0].isupper():
        return method  # a Captum class name, passed through
    table = NEURON if neuron is not None else (LAYER if layer is not None else INPUT)
    if method in ("grad_cam", "guided_grad_cam"):
        table = LAYER
    if method not in table:
        where = "neuron" if neuron is not None else ("layer" if layer else "input")
        raise UnsupportedError(unknown_name_message(
            f"method for Captum ({where} attribution)", method, list(table) + ["<Captum class>"]))
    return table[method]


def _forward_and_target(model: torch.nn.Module, target: Any) -> tuple[Any, Any]:
    if isinstance(target, ScoreTarget):
        return (lambda inputs: target.fn(model(inputs))), None
    if isinstance(target, ClassTarget):
        return model, [int(i) for i in target.indices]
    return model, None


def _aligned_arguments(method: str, name: str, x: torch.Tensor, options: dict) -> dict:
    """Our option names and defaults, in Captum's terms (consumes them from ``options``)."""
    out: dict[str, Any] = {}
    where = f"Captum {name}"
    if name in ("Saliency",):
        out["abs"] = flag(where, "abs", options.pop("abs", False))  # ours is signed
    if "IntegratedGradients" in name or name in ("LayerConductance", "NeuronConductance",
                                                 "InternalInfluence"):
        if "n_steps" not in options:
            out["n_steps"] = integer(where, "steps", options.pop("steps", 50))
        if "method" not in options:
            out["method"] = options.pop("rule", "gausslegendre")
        if "baselines" not in options:
            baseline = options.pop("baseline", "zeros")
            sigma = number(where, "blur_sigma", options.pop("blur_sigma", 8.0), minimum=0.0)
            out["baselines"] = _baseline(baseline, x, sigma)
    if name in ("GradientShap", "KernelShap", "ShapleyValueSampling", "Lime"):
        # our option names, where given, in Captum's terms (its own names pass through)
        if "samples" in options:
            out["n_samples"] = integer(where, "samples", options.pop("samples"))
        if "stdev" in options:
            out["stdevs"] = number(where, "stdev", options.pop("stdev"), minimum=0.0)
        if "baseline" in options:
            options["baselines"] = options.pop("baseline")
        if name == "GradientShap" and "baselines" not in options:  # ours defaults to zeros
            out["baselines"] = torch.zeros_like(x)
    if name == "DeepLift" and "baselines" not in options:  # ours defaults to zeros
        baseline = options.pop("baseline", 0.0)
        sigma = number(where, "blur_sigma", options.pop("blur_sigma", 8.0), minimum=0.0)
        out["baselines"] = _baseline(baseline, x, sigma)
    if name == "DeepLiftShap" and "baselines" not in options:
        raise OptionError(f"{where} needs baselines=: a distribution of at least 2 baselines "
                          f"shaped (M, *sample_shape)")
    if name == "Lime":
        _lime_model(where, options)
    if name == "FeaturePermutation" and integer(where, "samples", options.pop("samples", 1)) != 1:
        raise OptionError(f"{where} draws one permutation per feature: drop samples= (average "
                          "calls with different seeds) or use implementation='crosslens'")
    if name == "Occlusion":
        channels = x.shape[1]
        patch = integer(where, "patch", options.pop("patch", 16))
        stride = integer(where, "stride", options.pop("stride", 8))
        if patch > min(x.shape[2:]) or stride > min(x.shape[2:]):
            raise OptionError(f"{where}: patch ({patch}) and stride ({stride}) must fit the "
                              f"input's spatial size {tuple(x.shape[2:])}")
        out["sliding_window_shapes"] = (channels, patch, patch)
        out["strides"] = (channels, stride, stride)
        if "baselines" not in options:
            out["baselines"] = options.pop("baseline", 0.0)
    if name in ("LayerGradCam", "GuidedGradCam"):
        flag(where, "upsample", options.pop("upsample", True))
        if name == "LayerGradCam":
            out["relu_attributions"] = flag(where, "relu", options.pop("relu", True))
        else:  # Captum's default is "nearest"; ours is bilinear
            if not flag(where, "relu", options.pop("relu", True)):
                raise OptionError("Captum GuidedGradCam always applies the ReLU to its Grad-CAM "
                                  "map: drop relu=False or use implementation='crosslens'")
            out["interpolate_mode"] = options.pop("interpolate_mode", "bilinear")
    return out


def _lime_model(where: str, options: dict) -> None:
    """Our ``kernel_width`` and ``ridge`` as Lime's constructor arguments (consumed from
    ``options``): the exponential cosine kernel (Captum's default, ours) and a Ridge
    surrogate (ours; Captum's default is a Lasso), unless Captum's own are given."""
    from captum.attr._core.lime import get_exp_kernel_similarity_function
    if "kernel_width" in options:
        if "similarity_func" in options:
            raise OptionError(f"pass one of kernel_width= and similarity_func= to {where}")
        width = number(where, "kernel_width", options.pop("kernel_width"), minimum=0.0)
        if width == 0:
            raise OptionError(f"{where}: kernel_width must be > 0 (the kernel's width)")
        options["similarity_func"] = get_exp_kernel_similarity_function("cosine", width)
    if "interpretable_model" in options:
        if "ridge" in options:
            raise OptionError(f"pass one of ridge= and interpretable_model= to {where}")
        return
    from captum._utils.models.linear_model import SkLearnLinearModel
    alpha = number(where, "ridge", options.pop("ridge", 1.0), minimum=0.0)
    options["interpretable_model"] = SkLearnLinearModel("linear_model.Ridge", alpha=alpha)


def _baseline(baseline: Any, x: torch.Tensor, sigma: float) -> Any:
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(x)
        if baseline == "blur":
            from ..core.imageops import gaussian_blur
            blurred = gaussian_blur(x.detach().cpu().numpy(), sigma, (2, 3))
            return torch.as_tensor(blurred, dtype=x.dtype, device=x.device)
        raise OptionError(f"baseline {baseline!r} has no Captum equivalent here")
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, (bool, np.bool_)):
        return float(baseline)
    if isinstance(baseline, (list, tuple)):
        raise OptionError("Captum integrates from one baseline; use implementation='crosslens' "
                          "for several baselines averaged")
    return baseline  # an array: converted and checked by _baselines


def _our_layout(method: str, name: str, result: Any, x: torch.Tensor, arguments: dict) -> Any:
    if isinstance(result, tuple):
        result = result[0]
    if name == "LayerGradCam":  # (N, 1, h, w) -> our (N, H, W), bilinear to the input
        from captum.attr import LayerAttribution
        result = LayerAttribution.interpolate(result, tuple(x.shape[2:]), "bilinear")[:, 0]
    return result.detach()


def _noise_tunnel(model, x, method, target, layer, options) -> torch.Tensor:
    base = options.pop("base", "saliency")
    where = f"Captum NoiseTunnel ({method})"
    samples = integer(where, "samples", options.pop("samples", 50))
    noise_level = number(where, "noise_level", options.pop("noise_level", 0.15), minimum=0.0)
    stdev = options.pop("stdev", None)
    if stdev is not None:
        stdev = number(where, "stdev", stdev, minimum=0.0)
    if "noise" in options:
        raise OptionError(f"{where} draws its own noise: drop noise= (or use "
                          "implementation='crosslens', which takes given noise)")
    if not isinstance(base, str):
        raise OptionError(f"{where}: base must be a method name such as 'saliency', "
                          f"not {base!r}")
    forward, captum_target = _forward_and_target(model, target)
    name = _captum_name(base, layer, None)
    base_cls = getattr(captum_attr, name)
    if "layer" in inspect.signature(base_cls.__init__).parameters:
        raise UnsupportedError(f"{where}: Captum's NoiseTunnel here averages input "
                               f"attributions; base={base!r} maps to the layer method {name}. "
                               "Use an input method (saliency, gradient_x_input, "
                               "integrated_gradients, ...) or implementation='crosslens'")
    arguments = _aligned_arguments(base, name, x, options)
    _check_known(name, options, inspect.signature(base_cls.attribute).parameters)
    arguments.update(options)
    _input_space_arguments(name, arguments, x)
    results = []
    # Captum takes one std per input tensor; ours is per sample, so run sample by sample.
    for i in range(x.shape[0]):
        sample = x[i:i + 1]
        sigma = stdev if stdev is not None else float(
            noise_level * (sample.max() - sample.min()))
        tunnel = captum_attr.NoiseTunnel(base_cls(forward))
        kwargs = dict(arguments)
        for key in ("baselines", "feature_mask"):  # one row per input: this input's row
            value = kwargs.get(key)
            if torch.is_tensor(value) and value.ndim == x.ndim and value.shape[0] == len(x) \
                    and len(x) > 1:
                kwargs[key] = value[i:i + 1]
        if captum_target is not None:
            kwargs["target"] = captum_target[i:i + 1]
        with _captum_checks(f"NoiseTunnel({name})"):
            results.append(tunnel.attribute(sample, nt_type=NOISE[method], nt_samples=samples,
                                            stdevs=sigma, **kwargs).detach())
    return torch.cat(results)
