"""Numerical verification of a translation: outputs and input-gradients on probe inputs."""

from __future__ import annotations

import time

import numpy as np

from .layout import apply_perm, inverse_perm
from .report import Metrics, ProbeResult, Verification

DEFAULT_TOLERANCE = {"output": 1e-4, "gradient": 1e-3}


def normalize_tolerance(tolerance) -> dict:
    if tolerance is None:
        return dict(DEFAULT_TOLERANCE)
    if isinstance(tolerance, dict):
        out = dict(DEFAULT_TOLERANCE)
        out.update({k: float(v) for k, v in tolerance.items()})
        return out
    t = float(tolerance)
    return {"output": t, "gradient": 10 * t}


def metrics(a, b, floor: float = 0.0) -> Metrics:
    """Compare translated ``a`` with original ``b``.

    ``rel = max|a-b| / max(max|b|, floor)``; ``floor`` keeps an analytically zero
    reference (e.g. the input-gradient of ``sum(softmax)``) from turning float
    rounding noise into an infinite relative error.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return Metrics(float("inf"), float("inf"), float("nan"))
    d = np.abs(a - b)
    max_abs = float(d.max()) if d.size else 0.0
    scale = max(float(np.abs(b).max()) if b.size else 0.0, floor)
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        cos = 1.0
    elif na == 0 or nb == 0:
        cos = 0.0
    else:
        cos = float(np.dot(a, b) / (na * nb))
    return Metrics(max_abs, rel, cos)


def worst(ms) -> Metrics:
    ms = list(ms)
    return Metrics(max(m.max_abs for m in ms), max(m.rel for m in ms), min(m.cosine for m in ms))


# --- framework runners: (model, x, cotangent masks) -> (output, [grad per mask]) ----------------


def run_torch(model, x: np.ndarray, masks):
    import torch

    xt = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    out = model(xt)
    if isinstance(out, (list, tuple)):
        out = out[0]
    grads = []
    for i, m in enumerate(masks):
        mt = torch.as_tensor(m, dtype=out.dtype)
        (g,) = torch.autograd.grad((out * mt).sum(), xt, retain_graph=i < len(masks) - 1, allow_unused=True)
        grads.append(np.zeros_like(x) if g is None else g.detach().numpy())
    return out.detach().numpy(), grads


def run_keras(model, x: np.ndarray, masks):
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x, dtype=tf.float32)
        grads = []
        out_np = None
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xt)
            out = model(xt, training=False)
            if isinstance(out, (list, tuple)):
                out = out[0]
            targets = [tf.reduce_sum(out * tf.constant(m, dtype=out.dtype)) for m in masks]
        for t in targets:
            g = tape.gradient(t, xt)
            grads.append(np.zeros_like(x) if g is None else g.numpy())
        out_np = out.numpy()
        del tape
        return out_np, grads
    if backend == "torch":
        return run_torch(lambda t: model(t, training=False), x, masks)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def f(xx):
            o = model(xx, training=False)
            return o[0] if isinstance(o, (list, tuple)) else o

        out, vjp = jax.vjp(f, jnp.asarray(x))
        grads = [np.asarray(vjp(jnp.asarray(m, dtype=out.dtype))[0]) for m in masks]
        return np.asarray(out), grads
    raise NotImplementedError(f"Keras backend {backend!r}")


def make_probes(example: np.ndarray, probes: int, seed: int):
    """The user's example plus ``probes`` random inputs with the example's mean/std (seeded)."""
    example = np.asarray(example, dtype=np.float32)
    rng = np.random.default_rng(seed)
    mu = float(example.mean())
    sd = float(example.std()) or 1.0
    out = [("example", example)]
    for _ in range(int(probes)):
        out.append(("random", (rng.standard_normal(example.shape) * sd + mu).astype(np.float32)))
    return out


def verify(run_original, run_translated, probe_inputs, in_perm, out_perm, tolerance) -> Verification:
    """Compare two models on ``probe_inputs`` (in the original layout).

    ``run_*(x, masks) -> (output, grads)``; ``in_perm``/``out_perm`` transpose
    original-layout inputs/outputs into the translation's layout.
    """
    tol = normalize_tolerance(tolerance)
    t0 = time.perf_counter()
    results = []
    for idx, (kind, x) in enumerate(probe_inputs):
        # original: first forward to choose the class, then the gradients
        out_o, _ = run_original(x, [])
        flat = out_o.reshape(out_o.shape[0], -1)
        cls = flat.argmax(axis=1)
        class_mask = np.zeros_like(flat)
        class_mask[np.arange(flat.shape[0]), cls] = 1.0
        class_mask = class_mask.reshape(out_o.shape)
        ones = np.ones_like(out_o)
        out_o, (g_sum_o, g_cls_o) = run_original(x, [ones, class_mask])

        xt = apply_perm(x, in_perm)
        ones_t = apply_perm(ones, out_perm)
        mask_t = apply_perm(class_mask, out_perm)
        out_t, (g_sum_t, g_cls_t) = run_translated(np.ascontiguousarray(xt), [ones_t, np.ascontiguousarray(mask_t)])
        back_in, back_out = inverse_perm(in_perm), inverse_perm(out_perm)
        out_t = apply_perm(out_t, back_out)
        g_sum_t = apply_perm(g_sum_t, back_in)
        g_cls_t = apply_perm(g_cls_t, back_in)
        # sum(outputs) can have an analytically zero gradient (softmax heads): measure its
        # error against 1% of the class-logit gradient so cancellation noise is not "100 % error"
        sum_floor = 1e-2 * float(np.abs(g_cls_o).max())
        cls_floor = 1e-6 * float(np.abs(g_sum_o).max())
        results.append(
            ProbeResult(
                idx,
                kind,
                metrics(out_t, out_o),
                metrics(g_sum_t, g_sum_o, sum_floor),
                metrics(g_cls_t, g_cls_o, cls_floor),
                [int(c) for c in cls],
            )
        )
    w = {
        "output": worst(r.output for r in results),
        "grad_sum": worst(r.grad_sum for r in results),
        "grad_class": worst(r.grad_class for r in results),
    }
    v = Verification(results, tol, True, w, time.perf_counter() - t0)
    v.passed = not v.failures()
    return v
