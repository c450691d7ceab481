"""The raw PyTorch floor: each method hand-written with ``torch.autograd.grad``, batched.

Every function takes the model, the input batch ``x`` (a tensor on the model's device),
the target classes ``t`` (int64 tensor) and ``chunk``: how many samples one pass may hold
(the same number crosslens plans for the same memory budget, so the comparison isolates
per-pass overhead from planning). Interpolation points, noise samples, masked inputs
and occluded copies are stacked into as few passes as ``chunk`` allows. The ``*_loop``
variants are the naive one-pass-per-mask loops the batched methods are compared with.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _score(model, x, t):
    return model(x).gather(1, t[:, None]).sum()


def saliency(model, x, t, chunk):
    leaf = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_score(model, leaf, t), leaf)
    return grad


def integrated_gradients(model, x, t, chunk, steps):
    """Zero baseline, Gauss-Legendre points (Captum's default rule)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.as_tensor((nodes + 1) / 2, dtype=x.dtype, device=x.device)
    weights = torch.as_tensor(weights / 2, dtype=x.dtype, device=x.device)
    n = len(x)
    per = max(1, chunk // n)
    total = torch.zeros_like(x)
    for a in range(0, steps, per):
        k = min(per, steps - a)
        shape = (k,) + (1,) * x.ndim
        points = (alphas[a:a + k].view(shape) * x.unsqueeze(0)).reshape((k * n,) + x.shape[1:])
        points.requires_grad_(True)
        (grad,) = torch.autograd.grad(_score(model, points, t.repeat(k)), points)
        total += (grad.view((k, n) + x.shape[1:]) * weights[a:a + k].view(shape)).sum(0)
    return total * x


def smoothgrad(model, x, t, chunk, samples, sigma, noise=None):
    """Mean gradient over ``x + N(0, sigma²)``; ``noise`` (S, N, ...) to use given noise."""
    n = len(x)
    per = max(1, chunk // n)
    total = torch.zeros_like(x)
    for a in range(0, samples, per):
        k = min(per, samples - a)
        eps = noise[a:a + k] if noise is not None else \
            torch.randn((k,) + x.shape, dtype=x.dtype, device=x.device) * sigma
        points = (x.unsqueeze(0) + eps).reshape((k * n,) + x.shape[1:]).requires_grad_(True)
        (grad,) = torch.autograd.grad(_score(model, points, t.repeat(k)), points)
        total += grad.view((k, n) + x.shape[1:]).sum(0)
    return total / samples


def _layer_output(model, layer, x, grad):
    """The layer's output (a leaf when ``grad``: the backward pass stops there) and the
    model's output."""
    box = {}
    module = dict(model.named_modules())[layer]

    def hook(m, i, o):
        box["a"] = o.detach().requires_grad_(True) if grad else o
        return box["a"]

    handle = module.register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(grad):
            out = model(x)
    finally:
        handle.remove()
    return box["a"], out


def grad_cam(model, x, t, chunk, layer):
    acts, out = _layer_output(model, layer, x.detach(), grad=True)
    (grad,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), acts)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * acts).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def _scorecam_masks(acts, size):
    n, k = acts.shape[:2]
    maps = F.interpolate(acts.reshape(n * k, 1, *acts.shape[2:]), size=size, mode="bilinear",
                         align_corners=False).reshape(n, k, *size)
    low = maps.amin(dim=(2, 3), keepdim=True)
    high = maps.amax(dim=(2, 3), keepdim=True)
    return (maps - low) / (high - low + 1e-7)  # (N, K, H, W)


def _cam_from_weights(acts, weights, size):
    cam = F.relu((acts * weights[:, :, None, None]).sum(1, keepdim=True))
    return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]


@torch.no_grad()
def score_cam(model, x, t, chunk, layer):
    """Channels of ``layer`` mask the input, K·N masked inputs in passes of ``chunk``."""
    acts, _ = _layer_output(model, layer, x, grad=False)
    n, k = acts.shape[:2]
    size = tuple(x.shape[2:])
    per = max(1, chunk // n)
    weights = torch.empty((n, k), dtype=x.dtype, device=x.device)
    for a in range(0, k, per):
        m = min(per, k - a)
        masks = _scorecam_masks(acts[:, a:a + m], size)  # (N, m, H, W)
        points = (x.unsqueeze(1) * masks.unsqueeze(2)).reshape((n * m,) + x.shape[1:])
        probs = model(points).softmax(dim=1).view(n, m, -1)
        weights[:, a:a + m] = probs.gather(2, t.view(n, 1, 1).expand(n, m, 1))[..., 0]
    return _cam_from_weights(acts, weights, size)


@torch.no_grad()
def score_cam_loop(model, x, t, chunk, layer):
    """The naive Score-CAM: one forward pass (of the N inputs) per channel."""
    acts, _ = _layer_output(model, layer, x, grad=False)
    n, k = acts.shape[:2]
    size = tuple(x.shape[2:])
    weights = torch.empty((n, k), dtype=x.dtype, device=x.device)
    for c in range(k):
        masks = _scorecam_masks(acts[:, c:c + 1], size)
        probs = model(x * masks).softmax(dim=1)
        weights[:, c] = probs.gather(1, t[:, None])[:, 0]
    return _cam_from_weights(acts, weights, size)


def _windows(size, patch, stride):
    counts = [math.ceil((d - patch) / stride) + 1 for d in size]
    return [(i * stride, j * stride) for i in range(counts[0]) for j in range(counts[1])]


@torch.no_grad()
def occlusion(model, x, t, chunk, patch, stride):
    """Zero-baseline sliding window over all channels; the mean score drop per pixel."""
    n = len(x)
    size = tuple(x.shape[2:])
    windows = _windows(size, patch, stride)
    reference = model(x).gather(1, t[:, None])[:, 0]
    total = torch.zeros((n,) + size, dtype=x.dtype, device=x.device)
    covered = torch.zeros(size, dtype=x.dtype, device=x.device)
    per = max(1, chunk // n)
    for a in range(0, len(windows), per):
        part = windows[a:a + per]
        points = x.unsqueeze(0).repeat(len(part), 1, 1, 1, 1)
        for j, (r, c) in enumerate(part):
            points[j, :, :, r:r + patch, c:c + patch] = 0
        scores = model(points.view((-1,) + x.shape[1:])).gather(
            1, t.repeat(len(part))[:, None]).view(len(part), n)
        for j, (r, c) in enumerate(part):
            total[:, r:r + patch, c:c + patch] += (reference - scores[j]).view(n, 1, 1)
            covered[r:r + patch, c:c + patch] += 1
    return (total / covered).unsqueeze(1).expand_as(x)


@torch.no_grad()
def occlusion_loop(model, x, t, chunk, patch, stride):
    """The naive occlusion: one forward pass (of the N inputs) per window."""
    n = len(x)
    size = tuple(x.shape[2:])
    reference = model(x).gather(1, t[:, None])[:, 0]
    total = torch.zeros((n,) + size, dtype=x.dtype, device=x.device)
    covered = torch.zeros(size, dtype=x.dtype, device=x.device)
    for r, c in _windows(size, patch, stride):
        occluded = x.clone()
        occluded[:, :, r:r + patch, c:c + patch] = 0
        score = model(occluded).gather(1, t[:, None])[:, 0]
        total[:, r:r + patch, c:c + patch] += (reference - score).view(n, 1, 1)
        covered[r:r + patch, c:c + patch] += 1
    return (total / covered).unsqueeze(1).expand_as(x)
