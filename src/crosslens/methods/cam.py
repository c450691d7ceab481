"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, Score-CAM, Layer-CAM, HiResCAM,
element-wise Grad-CAM, XGrad-CAM, Ablation-CAM, Eigen-CAM, Eigen-Grad-CAM, KPCA-CAM, guided
Grad-CAM, and the channel activation behind the channel-mask visualizer.

Output convention: every CAM is an ``(N, H, W)`` map per sample, with no channel axis, on
PyTorch and Keras alike (so the two compare directly). ``Explanation.image_maps()``
returns such maps as they are. Guided Grad-CAM is the exception: it is a pixel
attribution in the input's own layout.

The layer (``layer=``) must have an image-like output (rank 4, more than one spatial
position); by default it is the last such layer the forward pass runs
(:meth:`Backend.spatial_layers`). Options shared by the maps:

``relu`` (default ``True``)
    Keep the positive part of the layer-resolution map, as the papers, Captum
    (``relu_attributions=True``) and tf-keras-vis do; ``False`` returns the signed map.
``upsample`` (default ``True``)
    Resize the map bilinearly to the input's spatial size with half-pixel centres
    (``align_corners=False``, Captum's ``LayerAttribution.interpolate(...,
    "bilinear")``), natively; ``False`` returns the map at the layer's resolution.
    The ReLU is applied before upsampling, as in Captum and tf-keras-vis.

pytorch-grad-cam's smoothing options, on every map it offers them for:

``eigen_smooth`` (default ``False``; the maps that sum weighted channels: Grad-CAM,
Grad-CAM++, Layer-CAM, HiResCAM, element-wise Grad-CAM, XGrad-CAM, Ablation-CAM,
Score-CAM)
    Replace ``Σ_k (weighted A)_k`` by the first principal component of the weighted
    activations, a ``(positions, channels)`` matrix per sample centred over the
    positions (pytorch-grad-cam's ``get_2d_projection``; sign in
    :mod:`crosslens.methods.projection`). ReLU and upsampling follow as usual.
``aug_smooth`` (default ``False``; those maps, Eigen-CAM, Eigen-Grad-CAM and KPCA-CAM)
    The mean of the map over pytorch-grad-cam's (ttach) test-time augmentations: the
    input, and the input flipped along its width axis, each times 0.9, 1 and 1.1; maps
    of flipped inputs are flipped back (at the map's own resolution). Six evaluations of
    the method; the target is fixed first (``"predicted"`` is the class predicted for
    the input itself, where pytorch-grad-cam predicts again per augmentation).

Mapping to pytorch-grad-cam: its maps are ``relu=True, upsample=True`` ones, min-max
scaled per sample (``(m - min) / (max - min + 1e-7)``, crosslens' ``normalize="minmax"``
up to that epsilon). With ``aug_smooth`` it scales each augmentation's map before the
mean, where crosslens averages the maps as computed and leaves scaling to ``normalize=``.

Formulas (``A_k`` the layer's channel ``k``, ``g_k = ∂S/∂A_k`` for the target score ``S``,
sums over positions ``ij``, ``Z`` = number of positions):

- Grad-CAM: ``Σ_k mean_ij(g_k) · A_k``;
- Grad-CAM++: the authors' reference code, as tf-keras-vis: ``α = g² / (2g² +
  g³ Σ_ij A_k)`` (0 where ``g = 0``), ``α`` normalized to sum 1 over positions, weights
  ``w_k = Σ_ij α · relu(exp(S) g)``, map ``Σ_k w_k A_k``;
- Score-CAM: ``Σ_k softmax(f(x ∘ M_k))_c · A_k`` with ``M_k`` the upsampled ``A_k``
  scaled to ``[0, 1]`` (``(a - min) / (max - min + 1e-7)``), as tf-keras-vis;
- Layer-CAM: ``Σ_k relu(g_k) ⊙ A_k``;
- HiResCAM: ``Σ_k g_k ⊙ A_k``; element-wise Grad-CAM: ``Σ_k relu(g_k ⊙ A_k)``;
- XGrad-CAM: ``Σ_k w_k A_k``, ``w_k = Σ_ij g_k A_k / (Σ_ij A_k + 1e-7)``;
- Ablation-CAM: ``Σ_k w_k A_k``, ``w_k = (S - S_k) / S`` with ``S_k`` the score when channel
  ``k`` of the layer is zeroed;
- Eigen-CAM: the projection of the ``(Z, K)`` activation matrix on its first right
  singular vector, with the sign that makes the map sum non-negative (class-agnostic);
- Eigen-Grad-CAM: the first principal component of ``g ⊙ A`` (centred over positions);
- KPCA-CAM: the first kernel principal component of the positions' (centred) activation
  vectors (class-agnostic);
- CAM: ``Σ_k W_ck A_k`` with ``W`` the dense layer after global average pooling.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.errors import OptionError, TargetError, UnsupportedError
from ..core.registry import register
from ..core.rules import GUIDED
from ..core.targets import ClassTarget, class_output_message
from .base import Context, MethodResult
from .batching import points_per_pass
from .projection import check_kernel, projection_maps
from .scoring import channel_axis, forward_scores

#: Score-CAM's mask normalization epsilon (``keras.backend.epsilon()``, as tf-keras-vis).
SCORECAM_EPS = 1e-7
#: XGrad-CAM's denominator epsilon (pytorch-grad-cam's).
XGRADCAM_EPS = 1e-7
#: Relative tolerance of CAM's check that the head is global average pooling + dense.
HEAD_TOLERANCE = 1e-4
#: aug_smooth's input factors (pytorch-grad-cam's ``tta.Multiply(factors=[0.9, 1, 1.1])``),
#: each with and without a horizontal flip.
AUG_FACTORS = (0.9, 1.0, 1.1)


# --- shared pieces --------------------------------------------------------------------------

def _axes(ctx: Context) -> tuple[int, tuple[int, int]]:
    """(channel axis, spatial axes) of a rank-4 layer output batch."""
    return (1, (2, 3)) if channel_axis(ctx) == 0 else (3, (1, 2))


def cam_layer(ctx: Context, method: str) -> str:
    """The named layer, or :func:`default_cam_layer`."""
    return ctx.layer if ctx.layer is not None else default_cam_layer(ctx.backend, ctx.x, method)


def default_cam_layer(backend: Any, x: Any, method: str) -> str:
    """The last layer output with spatial dimensions the forward pass on ``x`` produces,
    calls of shared modules included (``"relu#-1"``-style names): the post-activation
    output wherever the activation is a module."""
    spatial = backend.spatial_layers(x)
    if not spatial:
        raise OptionError(f"{method} needs a layer with spatial dimensions (a rank-4 output "
                          "with more than one position) and this model runs none; pass "
                          "layer='name' (see cl.layers(model))")
    return spatial[-1]


def check_spatial(ctx: Context, method: str, layer: str, values: Any) -> None:
    """Raise a clear error when ``layer``'s output has no spatial dimensions."""
    shape = ctx.ops.shape(values)
    _, (sh, sw) = _axes(ctx)
    if len(shape) == 4 and shape[sh] * shape[sw] > 1:
        return
    spatial = ctx.backend.spatial_layers(ctx.x)[::-1]
    layout = "(N, C, H, W)" if channel_axis(ctx) == 0 else "(N, H, W, C)"
    hint = (f"spatial layers of this model, last first: {spatial[:6]}" if spatial else
            "this model has no layer with spatial dimensions")
    raise OptionError(f"{method} needs a layer with spatial dimensions, but layer {layer!r} "
                      f"outputs shape {shape}; a class activation map needs an {layout} "
                      f"output with H x W > 1. {hint}")


def _check_flags(**flags: Any) -> None:
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise OptionError(f"{name} must be True or False, got {value!r}")


def input_size(ctx: Context) -> tuple[int, int]:
    """Spatial size ``(H, W)`` of the input batch."""
    shape = ctx.ops.shape(ctx.x)
    if ctx.backend.structure is not None:
        raise OptionError("upsampling a map to the input needs one image input, and this "
                          "model takes several inputs; pass upsample=False for the "
                          "layer-resolution map")
    if len(shape) != 4:
        raise OptionError(f"upsample=True needs an image input (rank 4), got shape {shape}; "
                          "pass upsample=False for the layer-resolution map")
    return (shape[2], shape[3]) if ctx.layout == "channels_first" else (shape[1], shape[2])


def finish(ctx: Context, cam: Any, relu: bool, upsample: bool) -> Any:
    """ReLU (optional), then bilinear upsampling to the input size (optional)."""
    if relu:
        cam = ctx.ops.relu(cam)
    if upsample:
        cam = ctx.ops.resize_bilinear(cam, input_size(ctx))
    return cam


def _layer_gradient(ctx: Context, method: str) -> tuple[str, Any, Any, Any]:
    """(layer, activations A, gradient g, GradientResult) at the CAM layer."""
    layer = cam_layer(ctx, method)
    result = ctx.gradient(wrt=layer)
    values = result.activations[layer]
    check_spatial(ctx, method, layer, values)
    return layer, values, result.grad, result


def _result(cam: Any, outputs: Any, layer: str, relu: bool, upsample: bool,
            **info: Any) -> MethodResult:
    return MethodResult(cam, outputs, layer=layer,
                        info=dict(info, cam_layer=layer, relu=bool(relu),
                                  upsample=bool(upsample)))


def channel_sum(ctx: Context, weighted: Any, eigen_smooth: bool,
                axes: tuple[int, int] | None = None) -> Any:
    """``Σ_k`` of weighted activations, or with ``eigen_smooth`` their first principal
    component over the positions. ``axes``: (channel, batch) axes, by default the layer's
    layout with the batch first."""
    channel, batch = axes if axes is not None else (_axes(ctx)[0], 0)
    if not eigen_smooth:
        return ctx.ops.sum(weighted, axis=channel)
    return ctx.ops.asarray(projection_maps(ctx.ops.to_numpy(weighted), channel, batch))


def _flip(ops: Any, array: Any, axis: int) -> Any:
    """``array`` reversed along ``axis`` (a row gather with the axis moved first)."""
    rank = len(ops.shape(array))
    order = (axis,) + tuple(i for i in range(rank) if i != axis)
    inverse = tuple(int(i) for i in np.argsort(order))
    moved = ops.transpose(array, order)
    rows = np.arange(ops.shape(moved)[0])[::-1].copy()
    return ops.transpose(ops.take_rows(moved, rows), inverse)


def aug_smoothed(ctx: Context, method: str, fn: Callable[..., MethodResult],
                 uses_target: bool = True, **options: Any) -> MethodResult:
    """pytorch-grad-cam's ``aug_smooth``: the mean of ``fn(ctx', **options)`` over the
    input flipped or not along its width axis times each of :data:`AUG_FACTORS`, the
    maps of flipped inputs flipped back. The target is fixed on the input first."""
    ops = ctx.ops
    shape = ops.shape(ctx.x)
    if ctx.layout not in ("channels_first", "channels_last") or len(shape) != 4 \
            or ops.is_integer(ctx.x):
        raise OptionError(f"{method}'s aug_smooth=True flips the input image horizontally, "
                          "which needs one image input of floats (rank 4), got "
                          f"{'several inputs' if ctx.backend.structure is not None else shape}"
                          "; pass aug_smooth=False")
    if uses_target:
        ctx = ctx.derive(target=ctx.fixed_target())
    width = 3 if ctx.layout == "channels_first" else 2
    total, plain = None, None
    for flip in (False, True):
        x = _flip(ops, ctx.x, width) if flip else ctx.x
        for factor in AUG_FACTORS:
            result = fn(ctx.derive(x=x * factor), **options)
            maps = result.attributions
            maps = _flip(ops, maps, len(ops.shape(maps)) - 1) if flip else maps
            total = maps if total is None else total + maps
            if not flip and factor == 1.0:
                plain = result
    info = dict(plain.info, aug_smooth=True, augmentations=2 * len(AUG_FACTORS))
    return MethodResult(total / float(2 * len(AUG_FACTORS)), plain.outputs,
                        layer=plain.layer, info=info)


# --- gradient-weighted maps -----------------------------------------------------------------

@register("grad_cam", needs=("layer_grad", "activations"), family="cam",
          aliases=("gradcam",),
          summary="Σ_k mean(∂S/∂A_k)·A_k at a spatial layer (ReLU, bilinear upsample): "
                  "(N, H, W) maps",
          reference="Selvaraju et al. 2017")
def gradcam(ctx: Context, *, relu: bool = True, upsample: bool = True,
            eigen_smooth: bool = False, aug_smooth: bool = False) -> MethodResult:
    """Grad-CAM: activations weighted by their spatially averaged gradient.

    Equals Captum ``LayerGradCam(relu_attributions=True)`` followed by
    ``LayerAttribution.interpolate(..., "bilinear")`` and tf-keras-vis ``Gradcam``.
    ``eigen_smooth`` / ``aug_smooth``: pytorch-grad-cam's (module docstring).
    """
    _check_flags(relu=relu, upsample=upsample, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "grad_cam", gradcam, relu=relu, upsample=upsample,
                            eigen_smooth=eigen_smooth)
    layer, values, grad, result = _layer_gradient(ctx, "grad_cam")
    _, sp = _axes(ctx)
    weights = ctx.ops.mean(grad, axis=sp, keepdims=True)
    cam = channel_sum(ctx, weights * values, eigen_smooth)
    return _result(finish(ctx, cam, relu, upsample), result.outputs, layer, relu, upsample,
                   eigen_smooth=bool(eigen_smooth))


@register("grad_cam_plus_plus", needs=("layer_grad", "activations"), family="cam",
          aliases=("gradcam_plus_plus", "gradcampp", "gradcam++", "grad_cam++"),
          summary="Grad-CAM with pixel-wise weights α from higher-order gradients of exp(S)",
          reference="Chattopadhyay et al. 2018")
def gradcam_plus_plus(ctx: Context, *, relu: bool = True, upsample: bool = True,
                      eigen_smooth: bool = False, aug_smooth: bool = False) -> MethodResult:
    """Grad-CAM++ as in the authors' code and tf-keras-vis ``GradcamPlusPlus``.

    The score is ``Y = exp(S)``: its higher derivatives are ``exp(S) g^n``, so
    ``exp(S)`` cancels from ``α`` and remains as a per-sample positive factor of the map
    (computed in float64 and applied last, also after ``eigen_smooth``'s projection,
    which it scales).
    """
    _check_flags(relu=relu, upsample=upsample, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "grad_cam_plus_plus", gradcam_plus_plus, relu=relu,
                            upsample=upsample, eigen_smooth=eigen_smooth)
    layer, values, grad, result = _layer_gradient(ctx, "grad_cam_plus_plus")
    ops = ctx.ops
    _, sp = _axes(ctx)
    g2 = grad * grad
    total = ops.sum(values, axis=sp, keepdims=True)
    denominator = 2.0 * g2 + g2 * grad * total
    nonzero = g2 > 0
    one = ops.zeros_like(g2) + 1.0
    alpha = ops.where(nonzero, g2 / ops.where(nonzero, denominator, one), ops.zeros_like(g2))
    norm = ops.sum(alpha, axis=sp, keepdims=True)
    alpha = alpha / ops.where(norm == 0.0, ops.zeros_like(norm) + 1.0, norm)
    weights = ops.sum(alpha * ops.relu(grad), axis=sp, keepdims=True)
    cam = channel_sum(ctx, weights * values, eigen_smooth)
    scale = np.exp(ops.to_numpy(result.scores).astype(np.float64))
    cam = cam * ops.asarray(scale.reshape(-1, 1, 1))
    return _result(finish(ctx, cam, relu, upsample), result.outputs, layer, relu, upsample,
                   eigen_smooth=bool(eigen_smooth))


@register("layer_cam", needs=("layer_grad", "activations"), family="cam",
          aliases=("layercam",),
          summary="Σ_k relu(∂S/∂A_k)⊙A_k: position-wise positive gradients weight "
                  "activations",
          reference="Jiang et al. 2021")
def layercam(ctx: Context, *, relu: bool = True, upsample: bool = True,
             eigen_smooth: bool = False, aug_smooth: bool = False) -> MethodResult:
    """Layer-CAM (tf-keras-vis ``Layercam``): gradients clipped at 0, elementwise weights."""
    _check_flags(relu=relu, upsample=upsample, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "layer_cam", layercam, relu=relu, upsample=upsample,
                            eigen_smooth=eigen_smooth)
    layer, values, grad, result = _layer_gradient(ctx, "layer_cam")
    cam = channel_sum(ctx, ctx.ops.relu(grad) * values, eigen_smooth)
    return _result(finish(ctx, cam, relu, upsample), result.outputs, layer, relu, upsample,
                   eigen_smooth=bool(eigen_smooth))


@register("hires_cam", needs=("layer_grad", "activations"), family="cam",
          aliases=("hirescam",),
          summary="Σ_k ∂S/∂A_k ⊙ A_k: gradients weight activations position by position "
                  "(no averaging)",
          reference="Draelos & Carin 2020")
def hirescam(ctx: Context, *, relu: bool = True, upsample: bool = True,
             eigen_smooth: bool = False, aug_smooth: bool = False) -> MethodResult:
    """HiResCAM: the element-wise product of the gradient and the activations summed over
    channels; for a GAP + dense head it is CAM divided by the number of positions
    (pytorch-grad-cam ``HiResCAM``). With ``eigen_smooth`` the map is no longer the
    exact sum of contributions (pytorch-grad-cam warns likewise)."""
    _check_flags(relu=relu, upsample=upsample, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "hires_cam", hirescam, relu=relu, upsample=upsample,
                            eigen_smooth=eigen_smooth)
    layer, values, grad, result = _layer_gradient(ctx, "hires_cam")
    cam_map = channel_sum(ctx, grad * values, eigen_smooth)
    return _result(finish(ctx, cam_map, relu, upsample), result.outputs, layer, relu, upsample,
                   eigen_smooth=bool(eigen_smooth))


@register("grad_cam_elementwise", needs=("layer_grad", "activations"), family="cam",
          aliases=("gradcam_elementwise", "element_wise_grad_cam"),
          summary="Σ_k relu(∂S/∂A_k ⊙ A_k): positive element-wise contributions",
          reference="pytorch-grad-cam GradCAMElementWise")
def gradcam_elementwise(ctx: Context, *, relu: bool = True, upsample: bool = True,
                        eigen_smooth: bool = False, aug_smooth: bool = False
                        ) -> MethodResult:
    """Element-wise Grad-CAM: each position's and channel's gradient × activation, its
    positive part summed over channels (pytorch-grad-cam ``GradCAMElementWise``)."""
    _check_flags(relu=relu, upsample=upsample, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "grad_cam_elementwise", gradcam_elementwise, relu=relu,
                            upsample=upsample, eigen_smooth=eigen_smooth)
    layer, values, grad, result = _layer_gradient(ctx, "grad_cam_elementwise")
    cam_map = channel_sum(ctx, ctx.ops.relu(grad * values), eigen_smooth)
    return _result(finish(ctx, cam_map, relu, upsample), result.outputs, layer, relu, upsample,
                   eigen_smooth=bool(eigen_smooth))


@register("xgrad_cam", needs=("layer_grad", "activations"), family="cam",
          aliases=("xgradcam",),
          summary="Σ_k w_k·A_k with w_k = Σ_ij (∂S/∂A_k ⊙ A_k) / Σ_ij A_k: axiom-based "
                  "weights",
          reference="Fu et al. 2020")
def xgradcam(ctx: Context, *, relu: bool = True, upsample: bool = True,
             eigen_smooth: bool = False, aug_smooth: bool = False) -> MethodResult:
    """XGrad-CAM: channel weights ``Σ_ij g A / (Σ_ij A + 1e-7)``, which satisfy the
    sensitivity and conservation axioms of Fu et al. (pytorch-grad-cam ``XGradCAM``)."""
    _check_flags(relu=relu, upsample=upsample, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "xgrad_cam", xgradcam, relu=relu, upsample=upsample,
                            eigen_smooth=eigen_smooth)
    layer, values, grad, result = _layer_gradient(ctx, "xgrad_cam")
    ops = ctx.ops
    _, sp = _axes(ctx)
    total = ops.sum(values, axis=sp, keepdims=True)
    weights = ops.sum(grad * values, axis=sp, keepdims=True) / (total + XGRADCAM_EPS)
    cam_map = channel_sum(ctx, weights * values, eigen_smooth)
    return _result(finish(ctx, cam_map, relu, upsample), result.outputs, layer, relu, upsample,
                   eigen_smooth=bool(eigen_smooth))


@register("guided_grad_cam", needs=("grad", "layer_grad", "activations", "relu_override"),
          family="cam", aliases=("guided_gradcam",),
          summary="Guided backprop × upsampled Grad-CAM (input layout, pixel resolution)",
          reference="Selvaraju et al. 2017")
def guided_gradcam(ctx: Context, *, relu: bool = True) -> MethodResult:
    """Guided Grad-CAM: guided backpropagation times the bilinearly upsampled Grad-CAM.

    Attributions are in the input's layout (the map broadcasts over channels); equals
    Captum ``GuidedGradCam(interpolate_mode="bilinear")``.
    """
    _check_flags(relu=relu)
    target = ctx.fixed_target()
    cam = gradcam(ctx.derive(target=target), relu=relu, upsample=True)
    guided = ctx.gradient(target=target, rule=GUIDED)
    h, w = input_size(ctx)
    n = ctx.n
    shape = (n, 1, h, w) if ctx.layout == "channels_first" else (n, h, w, 1)
    attributions = guided.grad * ctx.ops.reshape(cam.attributions, shape)
    return MethodResult(attributions, cam.outputs, layer=None,
                        info={"cam_layer": cam.layer, "relu": bool(relu)})


# --- CAM ---------------------------------------------------------------------------------------

@register("cam", needs=("layer_grad", "layer_override", "activations"), family="cam",
          aliases=("class_activation_map",),
          summary="Σ_k W_ck·A_k for a global-average-pool + dense head (found and checked "
                  "automatically)",
          reference="Zhou et al. 2016")
def cam(ctx: Context, *, relu: bool = True, upsample: bool = True) -> MethodResult:
    """Class activation map for models whose score is a dense layer on the global
    average pool of ``layer``: ``M_c = Σ_k W_ck A_k``.

    The head is found from the model itself, framework-free: for such a head the gradient
    of the score w.r.t. ``A`` is ``W_c / Z`` at every position and for every value of
    ``A``, and the score at ``A = 0`` is the bias ``b_c``. Both are measured (one pass
    at ``A`` and one with ``A`` replaced by zeros) and checked, so any other head (an
    MLP, a softmax output, a layer that is not the one pooled) is a clear error rather
    than a wrong map. ``info["head_bias"]`` holds ``b_c``; ``mean_ij(M_c) + b_c = S``.
    Zhou et al. show the signed map; ``relu=True`` (default, as every CAM here) clips it.
    """
    _check_flags(relu=relu, upsample=upsample)
    target = ctx.fixed_target()
    ctx = ctx.derive(target=target)
    layer, values, grad, result = _layer_gradient(ctx, "cam")
    ops = ctx.ops
    ch, sp = _axes(ctx)
    zero = ctx.gradient(wrt=layer, replace={layer: ops.zeros_like(values)})
    weights = ops.mean(grad, axis=sp, keepdims=True)
    _check_linear_head(ctx, layer, values, grad, weights, zero, result.scores)
    positions = ops.shape(values)[sp[0]] * ops.shape(values)[sp[1]]
    cam_map = ops.sum(weights * values, axis=ch) * float(positions)
    bias = ops.to_numpy(zero.scores).astype(np.float64)
    return _result(finish(ctx, cam_map, relu, upsample), result.outputs, layer, relu, upsample,
                   head_bias=bias)


def _check_linear_head(ctx: Context, layer: str, values: Any, grad: Any, weights: Any,
                       zero: Any, scores: Any) -> None:
    """Raise unless the score is ``b + Σ W·GAP(A)`` around this input."""
    ops = ctx.ops
    g, g0 = ops.to_numpy(grad).astype(np.float64), ops.to_numpy(zero.grad).astype(np.float64)
    w = ops.to_numpy(weights).astype(np.float64)
    a = ops.to_numpy(values).astype(np.float64)
    s, b = (ops.to_numpy(v).astype(np.float64) for v in (scores, zero.scores))
    n = g.shape[0]
    scale = np.abs(g).reshape(n, -1).max(axis=1) + 1e-300
    varies = np.abs(g - w).reshape(n, -1).max(axis=1) > HEAD_TOLERANCE * scale
    changes = np.abs(g - g0).reshape(n, -1).max(axis=1) > HEAD_TOLERANCE * scale
    linear = (g * a).reshape(n, -1).sum(axis=1)
    offset = np.abs(s - b - linear) > HEAD_TOLERANCE * (np.abs(s) + np.abs(b)
                                                         + np.abs(g * a).reshape(n, -1).sum(1))
    if varies.any() or changes.any() or offset.any():
        why = ("varies over positions" if varies.any() else
               "changes with the layer's values" if changes.any() else
               "does not extrapolate linearly to the score")
        raise UnsupportedError(
            f"cam needs a head that is global average pooling of layer {layer!r} followed by "
            f"a dense layer producing the score, but the gradient of the score w.r.t. "
            f"{layer!r} {why}, so the score is not b + W·mean(A). Name the layer whose "
            "global average pool feeds the final dense layer (and explain logits, not "
            "probabilities), or use 'grad_cam', which generalizes CAM to any head")


# --- Score-CAM ------------------------------------------------------------------------------

@register("score_cam", needs=("activations", "forward"), family="cam",
          aliases=("scorecam",),
          summary="Σ_k softmax(f(x∘M_k))_c·A_k, M_k the normalized upsampled channel; "
                  "masked inputs in memory-bounded batches; max_channels= for Faster "
                  "Score-CAM",
          reference="Wang et al. 2020")
def scorecam(ctx: Context, *, relu: bool = True, upsample: bool = True,
             softmax: bool = True, max_channels: int | None = None,
             eigen_smooth: bool = False, aug_smooth: bool = False) -> MethodResult:
    """Score-CAM: each channel, upsampled and scaled to ``[0, 1]``, masks the input; the
    masked input's target score weights the channel (tf-keras-vis ``Scorecam``).

    ``softmax`` (default ``True``, as the paper and tf-keras-vis): the weight is the
    target class probability, a softmax over the model's outputs; ``False`` uses the raw
    target score (needed for neuron, channel and callable targets). The masked inputs
    are evaluated in chunks as large as the memory budget allows.

    ``max_channels`` (Faster Score-CAM, tf-keras-vis' ``max_N``): only the channels with
    the largest spatial standard deviation of each sample mask its input; the others get
    weight 0. One forward pass per kept channel instead of one per channel (full Score-CAM
    takes minutes per ResNet50 image on a CPU). The channels are chosen per sample, so a
    sample's map does not depend on the rest of the batch (tf-keras-vis takes the union of
    the batch's choices: the same for one image).

    ``eigen_smooth`` / ``aug_smooth``: pytorch-grad-cam's (module docstring); with
    ``aug_smooth`` the masked passes run for each of the six augmentations.
    """
    _check_flags(relu=relu, upsample=upsample, softmax=softmax, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "score_cam", scorecam, relu=relu, upsample=upsample,
                            softmax=softmax, max_channels=max_channels,
                            eigen_smooth=eigen_smooth)
    target = ctx.fixed_target()
    if softmax and not isinstance(target, ClassTarget):
        raise OptionError("score_cam's softmax=True weights channels by a class probability; "
                          "for neuron, channel or callable targets pass softmax=False")
    ops = ctx.ops
    layer = cam_layer(ctx, "score_cam")
    values = ctx.backend.activations(ctx.x, [layer])[layer]
    check_spatial(ctx, "score_cam", layer, values)
    ch, _ = _axes(ctx)
    n, k = ctx.n, ops.shape(values)[ch]
    # channel-major (K, N, h, w): the maps of a (channel, sample) pair are one row
    order = (1, 0, 2, 3) if ch == 1 else (3, 0, 1, 2)
    channels = ops.transpose(values, order)
    pairs = ops.reshape(channels, (k * n,) + ops.shape(channels)[2:])  # row k·N + i
    kept = _kept_channels(channels, ops, max_channels, k, n)
    pair_channel, pair_sample = np.nonzero(kept)  # channel-major, as full Score-CAM
    size = input_size(ctx)
    first = ctx.layout == "channels_first"  # the input's layout, for the masks
    per_pass = ctx.backend.pass_size(ctx.x, backward=False, total=len(pair_channel))
    weights = np.zeros((k, n))
    binary = functools.cache(ctx.binary_kind)  # one forward pass, only for a single output
    for a, b in ctx.chunks(len(pair_channel), per_pass, "score_cam masks"):
        kk, ii = pair_channel[a:b], pair_sample[a:b]
        maps = ops.resize_bilinear(ops.take_rows(pairs, kk * n + ii), size)
        low = ops.min(maps, axis=(1, 2), keepdims=True)
        high = ops.max(maps, axis=(1, 2), keepdims=True)
        masks = (maps - low) / (high - low + SCORECAM_EPS)
        masks = ops.reshape(masks, (b - a, 1) + tuple(size) if first else
                            (b - a,) + tuple(size) + (1,))
        points = ops.take_rows(ctx.x, ii) * masks
        rows = ClassTarget(target.indices[ii]) if isinstance(target, ClassTarget) else target
        weights[kk, ii] = _masked_scores(ctx, points, rows, softmax, binary)
    w = ops.asarray(weights.reshape(k, n, 1, 1))
    cam_map = channel_sum(ctx, channels * w, eigen_smooth, axes=(0, 1))
    return _result(finish(ctx, cam_map, relu, upsample), None, layer, relu, upsample,
                   softmax=bool(softmax), chunk_masks=per_pass,
                   channels_used=kept.sum(axis=0), eigen_smooth=bool(eigen_smooth))


def _kept_channels(channels: Any, ops: Any, max_channels: int | None, k: int,
                   n: int) -> np.ndarray:
    """``(K, N)`` booleans: which channels mask each sample (all, or each sample's
    ``max_channels`` of largest spatial standard deviation; ties keep the lower index).
    ``channels`` are the native ``(K, N, h, w)`` maps."""
    if max_channels is None:
        return np.ones((k, n), dtype=bool)
    if not 1 <= max_channels <= k:
        raise OptionError(f"max_channels must be between 1 and the layer's {k} channels; "
                          f"got {max_channels}")
    maps = ops.to_numpy(channels).reshape(k, n, -1).astype(np.float64)
    spread = maps.std(axis=2)  # (K, N)
    kept = np.zeros((k, n), dtype=bool)
    for i in range(n):
        kept[np.argsort(-spread[:, i], kind="stable")[:max_channels], i] = True
    return kept


def _masked_scores(ctx: Context, points: Any, target: Any, softmax: bool,
                   binary: Callable[[], str]) -> np.ndarray:
    """Target score (or class probability) of each masked input, float64 numpy;
    ``binary()`` tells a single output's kind (logit or probability)."""
    if not softmax:
        return forward_scores(ctx, points, target)
    outputs = ctx.ops.to_numpy(ctx.backend.forward(points)).astype(np.float64)
    if outputs.ndim != 2:
        raise TargetError(class_output_message(outputs.shape))
    if outputs.shape[1] == 1:  # a single output: the sigmoid (or the probability) of the class
        kind = binary()
        p1 = outputs[:, 0] if kind == "probability" else 1.0 / (1.0 + np.exp(-outputs[:, 0]))
        return np.where(target.indices == 0, 1.0 - p1, p1)
    outputs = outputs - outputs.max(axis=1, keepdims=True)
    probabilities = np.exp(outputs)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities[np.arange(len(outputs)), target.indices]


# --- Ablation-CAM -----------------------------------------------------------------------------

@register("ablation_cam", needs=("layer_grad", "layer_override", "activations"), family="cam",
          aliases=("ablationcam",),
          summary="Σ_k w_k·A_k with w_k = (S - S_k)/S, S_k the score with channel k of the "
                  "layer set to 0",
          reference="Desai & Ramaswamy 2020")
def ablationcam(ctx: Context, *, relu: bool = True, upsample: bool = True,
                eigen_smooth: bool = False, aug_smooth: bool = False) -> MethodResult:
    """Ablation-CAM: each channel's weight is the relative drop of the target score when
    that channel of the layer is zeroed (pytorch-grad-cam ``AblationCAM``). The ``K·N``
    ablated passes are chunked to the memory budget like Score-CAM's masked inputs.
    A score of exactly 0 cannot be divided by and is an error (non-finite weights).
    ``eigen_smooth`` / ``aug_smooth``: pytorch-grad-cam's (module docstring)."""
    _check_flags(relu=relu, upsample=upsample, eigen_smooth=eigen_smooth,
                 aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "ablation_cam", ablationcam, relu=relu, upsample=upsample,
                            eigen_smooth=eigen_smooth)
    target = ctx.fixed_target()
    ctx = ctx.derive(target=target)
    layer, values, _, result = _layer_gradient(ctx, "ablation_cam")
    ops = ctx.ops
    ch, _ = _axes(ctx)
    n, k = ctx.n, ops.shape(values)[ch]
    scores = ops.to_numpy(result.scores).astype(np.float64)
    channel_shape = [1, 1, 1, 1]
    channel_shape[ch] = k
    per_pass = points_per_pass(ctx, k)  # channels per pass (each a copy of the batch)
    drops = np.empty((k, n))
    for start, stop in ctx.chunks(k, per_pass, "ablation_cam channels"):
        m = stop - start
        keep = np.ones((m, k))
        keep[np.arange(m), np.arange(start, stop)] = 0.0  # block j zeroes channel start + j
        mask = np.repeat(keep, n, axis=0).reshape([m * n] + channel_shape[1:])
        ablated = ops.repeat_batch(values, m) * ops.asarray(mask)
        part = ctx.gradient(ops.repeat_batch(ctx.x, m), target.repeat(m), wrt=layer,
                            replace={layer: ablated})
        drops[start:stop] = scores[None, :] - ops.to_numpy(part.scores).reshape(m, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = drops / scores[None, :]
    w = ops.asarray(weights.T.reshape([n] + channel_shape[1:]))
    cam_map = channel_sum(ctx, values * w, eigen_smooth)
    return _result(finish(ctx, cam_map, relu, upsample), result.outputs, layer, relu, upsample,
                   eigen_smooth=bool(eigen_smooth))


# --- Eigen-CAM --------------------------------------------------------------------------------

@register("eigen_cam", needs=("activations",), family="cam", aliases=("eigencam",),
          summary="Projection of the activations on their first principal direction "
                  "(class-agnostic, no gradients)",
          reference="Muhammad & Yeasin 2020", targetless=True)
def eigencam(ctx: Context, *, relu: bool = True, upsample: bool = True,
             aug_smooth: bool = False) -> MethodResult:
    """Eigen-CAM: ``A V_1`` with ``V_1`` the first right singular vector of the
    ``(positions, channels)`` activation matrix of each sample (not centred, as the
    paper). Singular vectors have no sign, so the sign is fixed to make the map sum
    non-negative. The target is not used. The SVD of the small ``(Z, K)`` matrices runs
    in float64 numpy, identically for every framework. (pytorch-grad-cam's ``EigenCAM``
    centres the matrix first, as :func:`eigengradcam` does with ``g ⊙ A``.)
    ``aug_smooth``: pytorch-grad-cam's (module docstring).
    """
    _check_flags(relu=relu, upsample=upsample, aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "eigen_cam", eigencam, uses_target=False, relu=relu,
                            upsample=upsample)
    ops = ctx.ops
    layer = cam_layer(ctx, "eigen_cam")
    values = ctx.backend.activations(ctx.x, [layer])[layer]
    check_spatial(ctx, "eigen_cam", layer, values)
    ch, _ = _axes(ctx)
    a = ops.to_numpy(values).astype(np.float64)
    if ch == 1:
        a = np.transpose(a, (0, 2, 3, 1))
    n, h, w, k = a.shape
    maps = np.empty((n, h, w))
    for i in range(n):
        matrix = a[i].reshape(h * w, k)
        _, _, vt = np.linalg.svd(matrix, full_matrices=False)
        projection = matrix @ vt[0]
        maps[i] = (projection if projection.sum() >= 0 else -projection).reshape(h, w)
    cam_map = ops.asarray(maps)
    return _result(finish(ctx, cam_map, relu, upsample), None, layer, relu, upsample,
                   class_agnostic=True)


@register("eigen_grad_cam", needs=("layer_grad", "activations"), family="cam",
          aliases=("eigengradcam",),
          summary="First principal component of ∂S/∂A ⊙ A over the positions (centred, "
                  "pytorch-grad-cam's EigenGradCAM): class-specific Eigen-CAM",
          reference="pytorch-grad-cam EigenGradCAM (Gildenblat and contributors 2021)")
def eigengradcam(ctx: Context, *, relu: bool = True, upsample: bool = True,
                 aug_smooth: bool = False) -> MethodResult:
    """Eigen-Grad-CAM (pytorch-grad-cam ``EigenGradCAM``): the ``(positions, channels)``
    matrix ``g ⊙ A`` of each sample, centred over the positions, projected on its first
    right singular vector (``get_2d_projection``), sign-fixed so that the entry of
    largest magnitude is positive (pytorch-grad-cam keeps LAPACK's arbitrary sign; see
    :mod:`crosslens.methods.projection`). It equals HiResCAM with ``eigen_smooth=True``.
    ``aug_smooth``: pytorch-grad-cam's (module docstring).
    """
    _check_flags(relu=relu, upsample=upsample, aug_smooth=aug_smooth)
    if aug_smooth:
        return aug_smoothed(ctx, "eigen_grad_cam", eigengradcam, relu=relu,
                            upsample=upsample)
    layer, values, grad, result = _layer_gradient(ctx, "eigen_grad_cam")
    cam_map = channel_sum(ctx, grad * values, eigen_smooth=True)
    return _result(finish(ctx, cam_map, relu, upsample), result.outputs, layer, relu, upsample)


@register("kpca_cam", needs=("activations",), family="cam", aliases=("kpcacam",),
          summary="First kernel principal component of the positions' activation vectors "
                  "(kernel= sigmoid | rbf | poly | linear | cosine; class-agnostic)",
          reference="Karmani et al. 2024 (KPCA-CAM); pytorch-grad-cam KPCA_CAM",
          targetless=True)
def kpcacam(ctx: Context, *, relu: bool = True, upsample: bool = True,
            kernel: str = "sigmoid", gamma: float | None = None,
            aug_smooth: bool = False) -> MethodResult:
    """KPCA-CAM (pytorch-grad-cam ``KPCA_CAM``): each sample's ``(positions, channels)``
    activation matrix, centred over the positions, reduced to its first kernel principal
    component, exactly ``sklearn.decomposition.KernelPCA(n_components=1, kernel=kernel,
    gamma=gamma).fit_transform`` (sign included: the entry of largest magnitude is
    positive), computed in float64 numpy.

    ``kernel`` (default ``"sigmoid"``, as pytorch-grad-cam): one of ``"sigmoid"``,
    ``"rbf"``, ``"poly"``, ``"linear"``, ``"cosine"``, with sklearn's formulas and its
    ``degree=3``, ``coef0=1``. ``gamma`` (default ``None``: ``1 / channels``, as
    sklearn). ``"linear"`` is the centred principal projection itself. The target is not
    used. A dense eigendecomposition of a ``(positions, positions)`` matrix per sample:
    cheap at 7 x 7 or 14 x 14 layers, slow far beyond. ``aug_smooth``: pytorch-grad-cam's
    (module docstring).
    """
    _check_flags(relu=relu, upsample=upsample, aug_smooth=aug_smooth)
    check_kernel(kernel, gamma)
    if aug_smooth:
        return aug_smoothed(ctx, "kpca_cam", kpcacam, uses_target=False, relu=relu,
                            upsample=upsample, kernel=kernel, gamma=gamma)
    ops = ctx.ops
    layer = cam_layer(ctx, "kpca_cam")
    values = ctx.backend.activations(ctx.x, [layer])[layer]
    check_spatial(ctx, "kpca_cam", layer, values)
    ch, _ = _axes(ctx)
    maps = projection_maps(ops.to_numpy(values), ch, kernel=kernel,
                           gamma=None if gamma is None else float(gamma))
    return _result(finish(ctx, ops.asarray(maps), relu, upsample), None, layer, relu,
                   upsample, class_agnostic=True, kernel=kernel)


# --- channel activation (for viz.channel_mask) -----------------------------------------------

@register("channel_mask", needs=("activations",), family="cam",
          aliases=("channel_activation",),
          summary="Upsampled activation of one channel of a layer: where in the input it "
                  "responds (threshold it with crosslens.viz.channel_mask)",
          reference="Bau et al. 2017 (network dissection)", targetless=True)
def channel_mask(ctx: Context, *, channel: int | None = None, upsample: bool = True
                 ) -> MethodResult:
    """The raw activation of channel ``channel`` of ``layer`` as an ``(N, H, W)`` map,
    bilinearly upsampled to the input (``upsample=True``). The target is not used.

    ``crosslens.viz.channel_mask(image, map, threshold)`` turns a map into the masked
    image showing where the channel responds.
    """
    _check_flags(upsample=upsample)
    if channel is None or isinstance(channel, bool) or not isinstance(channel, (int, np.integer)):
        raise OptionError("channel_mask needs channel=<int>, the channel of the layer to show")
    ops = ctx.ops
    layer = cam_layer(ctx, "channel_mask")
    values = ctx.backend.activations(ctx.x, [layer])[layer]
    check_spatial(ctx, "channel_mask", layer, values)
    ch, _ = _axes(ctx)
    count = ops.shape(values)[ch]
    if not -count <= int(channel) < count:
        raise OptionError(f"channel {channel} is out of range: layer {layer!r} has {count} "
                          f"channels (0..{count - 1})")
    index = int(channel) % count
    selected = values[:, index] if ch == 1 else values[:, :, :, index]
    out = finish(ctx, selected, relu=False, upsample=upsample)
    return MethodResult(out, None, layer=layer,
                        info={"channel": index, "cam_layer": layer, "upsample": bool(upsample)})
