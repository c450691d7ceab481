"""The peers, called as their documentation shows: Captum (PyTorch), tf-keras-vis (Keras),
and for native methods the library that defined them (zennit's LRP, Captum's KernelShap).

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


# --- native methods against the library that defined them (cases.NATIVE_PEERS) ----------

def zennit_lrp_peer(model: Any, x: Any, t: Any, params: dict,
                    exact_merge: bool = True) -> Callable[[], Any] | str:
    """zennit's LRP as its documentation shows: a composite with canonizers, a ``Gradient``
    attributor opened per call, the target's one-hot times the output as the initial
    relevance (so relevance is in the score's units, as crosslens'). Canonizers: batch
    norms merged into the convolution before them (``SequentialMergeBatchNorm``) and the
    residual sums of the benchmark ResNet's bottlenecks routed through zennit's ``Sum``
    (zennit's torchvision ``ResNetBottleneckCanonizer``, matched to this ResNet's
    ``Bottleneck``, which has torchvision's layout and names).

    zennit's merge leaves each batch norm computing ``x / sqrt(1 + eps)`` instead of
    ``x`` (its merged scale already holds ``1 / sqrt(var + eps)``), 3e-5 relative on the
    relevance of the benchmark ResNet. ``exact_merge`` (default) sets the merged batch
    norm's variance to ``1 - eps``, the identity, as crosslens' zennit adapter does; this
    costs nothing per call (one buffer fill when the canonizer is applied)."""
    try:
        from crosslens.toolsets.zennit import _zennit
        _zennit()  # zennit imports torchvision; crosslens' stub stands in where it is missing
    except ImportError:
        return "zennit not installed"
    import torch
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import COMPOSITES
    from zennit.layer import Sum
    from zennit.torchvision import ResNetBottleneckCanonizer

    import resnet_torch

    class BottleneckCanonizer(ResNetBottleneckCanonizer):
        """zennit's canonizer of torchvision's bottleneck (its forward with the residual
        sum as a ``Sum`` module), applied to the benchmark ResNet's own class."""

        @classmethod
        def _attribute_map(cls, name, module):
            if isinstance(module, resnet_torch.Bottleneck):
                return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
            return None

    class ExactSequentialMergeBatchNorm(SequentialMergeBatchNorm):
        @staticmethod
        def merge_batch_norm(modules, batch_norm):
            SequentialMergeBatchNorm.merge_batch_norm(modules, batch_norm)
            if batch_norm.eps < 1.0:
                batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data,
                                                              1.0 - batch_norm.eps)

    merge = ExactSequentialMergeBatchNorm if exact_merge else SequentialMergeBatchNorm
    if not any(isinstance(m, resnet_torch.Bottleneck) for m in model.modules()):
        return "the zennit peer canonizes the benchmark ResNet's bottlenecks only"
    composite = params["composite"]
    options = {"epsilon": params.get("epsilon", 1e-6),
               "stabilizer": params.get("stabilizer", 1e-6)}
    if composite == "epsilon_gamma_box":  # crosslens' default bounds: each sample's own
        axes = tuple(range(1, x.ndim))
        options.update(gamma=params.get("gamma", 0.25),
                       low=x.amin(dim=axes, keepdim=True).expand_as(x),
                       high=x.amax(dim=axes, keepdim=True).expand_as(x))
    built = COMPOSITES[composite](
        canonizers=[merge(), BottleneckCanonizer()], **options)
    target = torch.as_tensor(t, device=x.device)

    def initial(output):  # the target's score: relevance in the score's units
        return output * torch.nn.functional.one_hot(target, output.shape[1]).to(output.dtype)

    def call():
        with Gradient(model=model, composite=built) as attributor:
            _, relevance = attributor(x, initial)
        return relevance

    return call



def captum_kernel_shap_peer(model: Any, x: Any, t: Any, chunk: int, feature_mask: Any,
                            coalitions: np.ndarray) -> Callable[[], Any] | str:
    """Captum's ``KernelShap`` on the same coalitions as crosslens: its perturbation
    generator (the full and the empty coalition, then draws from the Shapley kernel's
    size distribution) replaced by one yielding the full, the empty and then crosslens'
    drawn ``coalitions`` (``(S, M)`` booleans), so ``n_samples = S + 2`` forward passes
    of the same inputs; the drawing itself is a negligible part of either. Captum fits
    ``LinearRegression`` with weight 1e6 on the two end points; crosslens imposes
    efficiency exactly."""
    try:
        import captum.attr as ca
        import torch
    except ImportError:
        return "captum not installed"
    rows = torch.as_tensor(np.asarray(coalitions)).long()
    m = rows.shape[1]

    def same_coalitions(original, **kwargs):  # restarted for every sample of the batch
        yield torch.ones(1, m, dtype=torch.long, device=original.device)
        yield torch.zeros(1, m, dtype=torch.long, device=original.device)
        yield from (row[None].to(original.device) for row in rows)

    shap = ca.KernelShap(model)
    shap.perturb_func = same_coalitions
    mask = torch.as_tensor(feature_mask, device=x.device)
    target = [int(i) for i in t]
    return lambda: shap.attribute(x, baselines=0.0, target=target, feature_mask=mask,
                                  n_samples=len(rows) + 2,
                                  perturbations_per_eval=max(1, chunk // len(x)))
