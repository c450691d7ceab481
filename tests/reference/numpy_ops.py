"""Vectorized float64 numpy primitives (NCHW) with forward and backward passes."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

RELU_RULES = ("normal", "guided", "deconv")


# --------------------------------------------------------------------------- conv
def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, pad: int = 1) -> np.ndarray:
    """Stride-1 cross-correlation (PyTorch Conv2d). x (N,C,H,W), w (O,C,kh,kw)."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))  # (N,C,Ho,Wo,kh,kw)
    y = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def conv2d_backward_input(gy: np.ndarray, w: np.ndarray, pad: int = 1) -> np.ndarray:
    """d(conv2d)/dx applied to gy: full correlation with the flipped, transposed kernel."""
    kh, kw = w.shape[2:]
    if pad > kh - 1 or pad > kw - 1:
        raise ValueError("pad larger than kernel-1 not supported")
    wt = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C,O,kh,kw)
    if kh != kw:
        raise ValueError("square kernels only")
    return conv2d(gy, wt, None, pad=kh - 1 - pad)


def conv2d_backward_weight(x: np.ndarray, gy: np.ndarray, kshape, pad: int = 1) -> np.ndarray:
    kh, kw = kshape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return np.einsum("nchwij,nohw->ocij", win, gy, optimize=True)


# --------------------------------------------------------------------------- relu
def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def relu_backward(x: np.ndarray, gy: np.ndarray, rule: str = "normal") -> np.ndarray:
    """ReLU backward. x = forward INPUT of the ReLU, gy = grad wrt its output.

    normal: gy * [x > 0]                 (autograd; grad 0 at x == 0)
    guided: gy * [x > 0] * [gy > 0]      (Captum GuidedBackprop: relu(grad_input))
    deconv: gy * [gy > 0]                (Captum Deconvolution: relu(grad_output))
    """
    if rule == "normal":
        return np.where(x > 0, gy, 0.0)
    if rule == "guided":
        return np.where((x > 0) & (gy > 0), gy, 0.0)
    if rule == "deconv":
        return np.where(gy > 0, gy, 0.0)
    raise ValueError(f"relu_rule must be one of {RELU_RULES}, got {rule!r}")


# --------------------------------------------------------------------------- max pool
def maxpool2x2(x: np.ndarray):
    """2x2/stride-2 max pool. Returns (y, argmax) with argmax in 0..3 = row-major
    index inside the window, FIRST maximum on ties (PyTorch CPU semantics)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError("even spatial size required")
    win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    idx = np.argmax(win, axis=-1)  # first occurrence on ties
    y = np.take_along_axis(win, idx[..., None], axis=-1)[..., 0]
    return y, idx


def maxpool2x2_backward(idx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    n, c, ho, wo = gy.shape
    onehot = idx[..., None] == np.arange(4)
    gwin = np.where(onehot, gy[..., None], 0.0)  # (n,c,ho,wo,4)
    return gwin.reshape(n, c, ho, wo, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * ho, 2 * wo)


# --------------------------------------------------------------------------- pooling / dense
def gap(x: np.ndarray) -> np.ndarray:
    """Global average pool, keeps dims: (N,C,H,W) -> (N,C,1,1) (AdaptiveAvgPool2d(1))."""
    return x.mean(axis=(2, 3), keepdims=True)


def gap_backward(x_shape, gy: np.ndarray) -> np.ndarray:
    h, w = x_shape[2:]
    return np.broadcast_to(gy.reshape(gy.shape[0], gy.shape[1], 1, 1) / (h * w), x_shape).copy()


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x (N,in), w (out,in) -> (N,out)."""
    y = x @ w.T
    return y + b if b is not None else y


def dense_backward_input(gy: np.ndarray, w: np.ndarray) -> np.ndarray:
    return gy @ w


# --------------------------------------------------------------------------- batch norm
def batchnorm_inference(x, gamma, beta, mean, var, eps):
    scale = gamma / np.sqrt(var + eps)
    return (x - mean[None, :, None, None]) * scale[None, :, None, None] + beta[None, :, None, None]


def batchnorm_inference_backward(gy, gamma, var, eps):
    return gy * (gamma / np.sqrt(var + eps))[None, :, None, None]


# --------------------------------------------------------------------------- softmax
def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(p: np.ndarray, gp: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vector-Jacobian product of softmax: p * (gp - <gp, p>)."""
    return p * (gp - (gp * p).sum(axis=axis, keepdims=True))
