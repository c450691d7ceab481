"""Numpy (float64, NCHW) references of the CAM methods on the reference nets.

Built on :mod:`reference.numpy_nets` only (activations and layer gradients), never on
crosslens; the bilinear upsampling is an explicit per-pixel loop of the
``align_corners=False`` formula. Maps are ``(N, H, W)``.

pytorch-grad-cam's extras (it cannot be installed here: it needs torchvision) are its
formulas, literally: ``eigen=True`` is its ``eigen_smooth`` (``get_2d_projection`` of the
weighted activations), :func:`aug_smooth` its ttach augmentations, :func:`kpcacam` its
``get_2d_projection_kernel`` on sklearn's ``KernelPCA``. They are compared in crosslens'
convention: raw maps, ReLU and upsampling per option, no min-max scaling.
"""
from __future__ import annotations

import numpy as np

from reference.nets import NetSpec
from reference.numpy_nets import forward, input_gradient, layer_gradient, one_hot


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, half-pixel centres, border clamped (torch align_corners=False)."""
    n, h_in, w_in = maps.shape
    h_out, w_out = size
    out = np.zeros((n, h_out, w_out))
    for i in range(h_out):
        sy = max((i + 0.5) * h_in / h_out - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), h_in - 1)
        y1, ly = min(y0 + 1, h_in - 1), sy - min(int(np.floor(sy)), h_in - 1)
        for j in range(w_out):
            sx = max((j + 0.5) * w_in / w_out - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), w_in - 1)
            x1, lx = min(x0 + 1, w_in - 1), sx - x0
            out[:, i, j] = ((1 - ly) * ((1 - lx) * maps[:, y0, x0] + lx * maps[:, y0, x1])
                            + ly * ((1 - lx) * maps[:, y1, x0] + lx * maps[:, y1, x1]))
    return out


def _finish(cam, spec, relu, up):
    if relu:
        cam = np.maximum(cam, 0.0)
    return upsample(cam, (spec.size, spec.size)) if up else cam


def projection_2d(batch):
    """pytorch-grad-cam ``get_2d_projection`` on ``(N, K, h, w)``: centre the
    ``(h·w, K)`` matrix over positions, project on ``VT[0]`` of a full SVD. Its sign is
    LAPACK's; it is fixed here by pytorch-grad-cam's own sign correction (Seg-Eigen-CAM,
    Eq. 13: flip when ``|min| > |max|``)."""
    maps = []
    for a in batch:
        matrix = a.reshape(a.shape[0], -1).T
        matrix = matrix - matrix.mean(axis=0)
        _, _, vt = np.linalg.svd(matrix, full_matrices=True)
        proj = (matrix @ vt[0, :]).reshape(a.shape[1:])
        maps.append(-proj if abs(proj.min()) > abs(proj.max()) else proj)
    return np.stack(maps)


def _channels(weighted, eigen):
    """pytorch-grad-cam ``get_cam_image``: the channel sum, or with ``eigen_smooth`` the
    2-D projection."""
    return projection_2d(weighted) if eigen else weighted.sum(axis=1)


def _data(spec, x, target, layer):
    _, acts = forward(spec, x, capture=(layer,))
    grad = layer_gradient(spec, x, np.asarray(target), layer)
    return acts[layer], grad


def gradcam(spec: NetSpec, x, target, layer, relu=True, up=True, eigen=False):
    a, g = _data(spec, x, target, layer)
    cam = _channels(g.mean(axis=(2, 3), keepdims=True) * a, eigen)
    return _finish(cam, spec, relu, up)


def layercam(spec, x, target, layer, relu=True, up=True, eigen=False):
    a, g = _data(spec, x, target, layer)
    return _finish(_channels(np.maximum(g, 0) * a, eigen), spec, relu, up)


def hirescam(spec, x, target, layer, relu=True, up=True, eigen=False):
    """Draelos & Carin: sum over channels of gradient times activation."""
    a, g = _data(spec, x, target, layer)
    return _finish(_channels(g * a, eigen), spec, relu, up)


def gradcam_elementwise(spec, x, target, layer, relu=True, up=True, eigen=False):
    """pytorch-grad-cam GradCAMElementWise: the positive part before the channel sum."""
    a, g = _data(spec, x, target, layer)
    return _finish(_channels(np.maximum(g * a, 0), eigen), spec, relu, up)


def xgradcam(spec, x, target, layer, relu=True, up=True, eps=1e-7, eigen=False):
    """Fu et al. (pytorch-grad-cam XGradCAM): w_k = sum(g * A) / (sum(A) + eps)."""
    a, g = _data(spec, x, target, layer)
    weights = (g * a).sum(axis=(2, 3)) / (a.sum(axis=(2, 3)) + eps)
    return _finish(_channels(weights[:, :, None, None] * a, eigen), spec, relu, up)


def eigengradcam(spec, x, target, layer, relu=True, up=True):
    """pytorch-grad-cam EigenGradCAM: ``get_2d_projection(grads * activations)``."""
    a, g = _data(spec, x, target, layer)
    return _finish(projection_2d(g * a), spec, relu, up)


def kpcacam(spec, x, layer, relu=True, up=True, kernel="sigmoid", gamma=None):
    """pytorch-grad-cam KPCA_CAM (``get_2d_projection_kernel``): sklearn's KernelPCA of
    the centred ``(h·w, K)`` activation matrix; sklearn fixes the sign itself."""
    from sklearn.decomposition import KernelPCA

    _, acts = forward(spec, x, capture=(layer,))
    maps = []
    for a in acts[layer]:
        matrix = a.reshape(a.shape[0], -1).T
        matrix = matrix - matrix.mean(axis=0)
        kpca = KernelPCA(n_components=1, kernel=kernel, gamma=gamma)
        maps.append(kpca.fit_transform(matrix).reshape(a.shape[1:]))
    return _finish(np.stack(maps), spec, relu, up)


def aug_smooth(cam_of, x, factors=(0.9, 1.0, 1.1)):
    """pytorch-grad-cam ``forward_augmentation_smoothing`` without its per-map min-max
    scaling: ttach ``Compose([HorizontalFlip(), Multiply(factors)])``, i.e. the mean of
    ``cam_of(x')`` over ``x`` flipped along the width or not, times each factor, maps of
    flipped inputs flipped back (``deaugment_mask``)."""
    maps = []
    for flip in (False, True):
        for factor in factors:
            image = (x[..., ::-1] if flip else x) * factor
            m = cam_of(np.ascontiguousarray(image))
            maps.append(m[..., ::-1] if flip else m)
    return np.mean(maps, axis=0)


def ablationcam(spec, x, target, layer, relu=True, up=True, eigen=False):
    """Desai & Ramaswamy: w_k = (S - S_k) / S, S_k the score with channel k zeroed, here
    in closed form for the small CNN's GAP + fc head after ``layer``:
    S - S_k = W_ck mean(A_k)."""
    assert spec.kind == "small_cnn" and layer == "relu2"
    logits, acts = forward(spec, x, capture=(layer,))
    a = acts[layer]
    target = np.asarray(target)
    s = logits[np.arange(len(x)), target]
    w = spec.weights["fc.weight"][target]  # (N, K)
    weights = w * a.mean(axis=(2, 3)) / s[:, None]
    return _finish(_channels(weights[:, :, None, None] * a, eigen), spec, relu, up)


def gradcam_plus_plus(spec, x, target, layer, relu=True, up=True, eigen=False):
    """Chattopadhyay et al.'s reference code, literally (Y = exp(S))."""
    a, g = _data(spec, x, target, layer)
    s = forward(spec, x)[np.arange(len(x)), np.asarray(target)]
    e = np.exp(s)[:, None, None, None]
    first, second, third = e * g, e * g ** 2, e * g ** 3
    total = a.sum(axis=(2, 3), keepdims=True)
    denom = 2 * second + third * total
    denom = denom + (second == 0)
    alphas = second / denom
    norm = alphas.sum(axis=(2, 3), keepdims=True)
    alphas = alphas / (norm + (norm == 0))
    weights = (np.maximum(first, 0) * alphas).sum(axis=(2, 3), keepdims=True)
    return _finish(_channels(weights * a, eigen), spec, relu, up)


def scorecam(spec, x, target, layer, relu=True, up=True, eps=1e-7, eigen=False):
    _, acts = forward(spec, x, capture=(layer,))
    a = acts[layer]
    n, k = a.shape[:2]
    target = np.asarray(target)
    weights = np.zeros((n, k))
    for c in range(k):
        m = upsample(a[:, c], (spec.size, spec.size))
        low = m.min(axis=(1, 2), keepdims=True)
        high = m.max(axis=(1, 2), keepdims=True)
        m = (m - low) / (high - low + eps)
        logits = forward(spec, x * m[:, None])
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        weights[:, c] = p[np.arange(n), target]
    return _finish(_channels(weights[:, :, None, None] * a, eigen), spec, relu, up)


def eigencam(spec, x, layer, relu=True, up=True):
    _, acts = forward(spec, x, capture=(layer,))
    a = acts[layer]
    n, k, h, w = a.shape
    maps = []
    for i in range(n):
        matrix = a[i].reshape(k, h * w).T
        # first principal direction via the eigenvector of A^T A (not an SVD routine)
        vals, vecs = np.linalg.eigh(matrix.T @ matrix)
        proj = matrix @ vecs[:, -1]
        maps.append((proj if proj.sum() >= 0 else -proj).reshape(h, w))
    return _finish(np.stack(maps), spec, relu, up)


def cam(spec, x, target, layer, relu=True, up=True):
    """Zhou et al.: the fc weights of the class on the GAP'ed layer."""
    _, acts = forward(spec, x, capture=(layer,))
    w = spec.weights["fc.weight"][np.asarray(target)]  # (N, K)
    return _finish(np.einsum("nk,nkhw->nhw", w, acts[layer]), spec, relu, up)


def guided_gradcam(spec, x, target, layer, relu=True):
    g = input_gradient(spec, x, one_hot(np.asarray(target), spec.n_classes), relu_rule="guided")
    return g * gradcam(spec, x, target, layer, relu=relu, up=True)[:, None]


def channel_activation(spec, x, layer, channel, up=True):
    _, acts = forward(spec, x, capture=(layer,))
    m = acts[layer][:, channel]
    return upsample(m, (spec.size, spec.size)) if up else m
