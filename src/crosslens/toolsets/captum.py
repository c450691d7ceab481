"""Captum adapter: Captum's own implementations on PyTorch models, aligned options.

Our method names map to the Captum class that implements the same computation (input,
layer or neuron variant, chosen by ``layer=`` and ``cl.Neuron`` targets), with our
defaults translated to Captum's arguments (``steps`` -> ``n_steps``, ``rule`` ->
``method``, raw signed saliency ``abs=False``, noise as a per-sample std, ...). Any other
Captum attribution class is available by its class name (``"KernelShap"``,
``"LayerDeepLift"``, ...) with options split between its constructor and ``attribute``.
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from captum import attr as captum_attr

from ..core.errors import OptionError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.targets import ChannelTarget, ClassTarget, NeuronTarget, ScoreTarget

INPUT = {"saliency": "Saliency", "gradient_x_input": "InputXGradient",
         "integrated_gradients": "IntegratedGradients", "guided_backprop": "GuidedBackprop",
         "deconvnet": "Deconvolution", "occlusion": "Occlusion",
         "feature_ablation": "FeatureAblation"}
LAYER = {"saliency": "LayerGradientXActivation", "gradient_x_input": "LayerGradientXActivation",
         "integrated_gradients": "LayerIntegratedGradients", "conductance": "LayerConductance",
         "activations": "LayerActivation", "grad_cam": "LayerGradCam",
         "guided_grad_cam": "GuidedGradCam", "internal_influence": "InternalInfluence"}
NEURON = {"saliency": "NeuronGradient", "integrated_gradients": "NeuronIntegratedGradients",
          "guided_backprop": "NeuronGuidedBackprop", "deconvnet": "NeuronDeconvolution",
          "conductance": "NeuronConductance"}
NOISE = {"smoothgrad": "smoothgrad", "squaregrad": "smoothgrad_sq", "vargrad": "vargrad"}


def methods() -> list[str]:
    """Our method names this adapter maps, plus every Captum attribution class name."""
    native = [n for n in dir(captum_attr) if inspect.isclass(getattr(captum_attr, n))
              and hasattr(getattr(captum_attr, n), "attribute")]
    return sorted(set(INPUT) | set(LAYER) | set(NEURON) | set(NOISE)) + native


def run(model: torch.nn.Module, layer_object: Any, x: torch.Tensor,
        method: str, target: Any, layer: str | None, options: dict[str, Any]) -> torch.Tensor:
    """Run Captum's implementation of ``method``; returns attributions like ours.

    ``seed`` seeds torch's generator inside ``torch.random.fork_rng``, so the caller's
    global RNG state is left as it was.
    """
    options = dict(options)
    seed = options.pop("seed", None)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        return _run(model, layer_object, x, method, target, layer, options)


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
    algorithm = cls(**{first: forward}, **init_args)
    params = inspect.signature(algorithm.attribute).parameters
    unknown = set(options) - set(params)
    if unknown:
        raise OptionError(f"Captum {name}.attribute has no option {sorted(unknown)[0]!r}")
    arguments.update(options)
    if neuron is not None and "neuron_selector" in params:
        arguments["neuron_selector"] = tuple(neuron.index)
    if "target" in params and neuron is None:
        arguments["target"] = captum_target
    result = algorithm.attribute(x, **arguments)
    return _our_layout(method, name, result, x, arguments)


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
    if name in ("Saliency",):
        out["abs"] = options.pop("abs", False)  # ours is signed
    if "IntegratedGradients" in name or name in ("LayerConductance", "NeuronConductance",
                                                 "InternalInfluence"):
        out["n_steps"] = options.pop("steps", 50)
        out["method"] = options.pop("rule", "gausslegendre")
        baseline = options.pop("baseline", "zeros")
        out["baselines"] = _baseline(baseline, x, options.pop("blur_sigma", 8.0))
    if name == "Occlusion":
        channels = x.shape[1]
        patch, stride = options.pop("patch", 16), options.pop("stride", 8)
        out["sliding_window_shapes"] = (channels, patch, patch)
        out["strides"] = (channels, stride, stride)
        out["baselines"] = options.pop("baseline", 0.0)
    if name in ("LayerGradCam", "GuidedGradCam"):
        options.pop("upsample", None)
        if name == "LayerGradCam":
            out["relu_attributions"] = options.pop("relu", True)
        else:  # Captum's default is "nearest"; ours is bilinear
            out["interpolate_mode"] = options.pop("interpolate_mode", "bilinear")
    return out


def _baseline(baseline: Any, x: torch.Tensor, sigma: float) -> Any:
    if isinstance(baseline, str):
        if baseline == "zeros":
            return torch.zeros_like(x)
        if baseline == "blur":
            from ..methods.baselines import gaussian_blur
            blurred = gaussian_blur(x.detach().cpu().numpy(), sigma, (2, 3))
            return torch.as_tensor(blurred, dtype=x.dtype, device=x.device)
        raise OptionError(f"baseline {baseline!r} has no Captum equivalent here")
    if isinstance(baseline, (int, float)):
        return float(baseline)
    if isinstance(baseline, (list, tuple)):
        raise OptionError("Captum integrates from one baseline; use implementation='crosslens' "
                          "for several baselines averaged")
    value = torch.as_tensor(np.asarray(baseline), dtype=x.dtype, device=x.device)
    return value if value.shape == x.shape else value.expand_as(x)


def _our_layout(method: str, name: str, result: Any, x: torch.Tensor, arguments: dict) -> Any:
    if isinstance(result, tuple):
        result = result[0]
    if name == "LayerGradCam":  # (N, 1, h, w) -> our (N, H, W), bilinear to the input
        from captum.attr import LayerAttribution
        result = LayerAttribution.interpolate(result, tuple(x.shape[2:]), "bilinear")[:, 0]
    return result.detach()


def _noise_tunnel(model, x, method, target, layer, options) -> torch.Tensor:
    base = options.pop("base", "saliency")
    samples = options.pop("samples", 50)
    noise_level = options.pop("noise_level", 0.15)
    stdev = options.pop("stdev", None)
    forward, captum_target = _forward_and_target(model, target)
    name = _captum_name(base, layer, None)
    base_cls = getattr(captum_attr, name)
    arguments = _aligned_arguments(base, name, x, options)
    arguments.update(options)
    results = []
    # Captum takes one std per input tensor; ours is per sample, so run sample by sample.
    for i in range(x.shape[0]):
        sample = x[i:i + 1]
        sigma = stdev if stdev is not None else float(
            noise_level * (sample.max() - sample.min()))
        tunnel = captum_attr.NoiseTunnel(base_cls(forward))
        kwargs = dict(arguments)
        if captum_target is not None:
            kwargs["target"] = captum_target[i:i + 1]
        results.append(tunnel.attribute(sample, nt_type=NOISE[method], nt_samples=samples,
                                        stdevs=sigma, **kwargs).detach())
    return torch.cat(results)
