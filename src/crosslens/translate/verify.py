"""Numerical verification of a translation: outputs and input-gradients on probe inputs."""

from __future__ import annotations

import time

import numpy as np

from .layout import apply_perm, inverse_perm
from .report import Metrics, ProbeResult, Verification

#: ``output``/``gradient``: max relative error (max|a-b|/max|b|); ``cosine``: min cosine of gradients.
#: Gradients get a looser max-relative bound because float32 input-gradients of deep ReLU networks
#: are only accurate to a few % at single pixels in *either* framework (round-off flips ReLU/ReLU6
#: masks of pre-activations within ~1e-7 of a kink).  Class-logit gradient vs float64 evaluation:
#: random-init Keras ResNet50: torch-f32 5.6e-3, Keras-f32 7.6e-3; pretrained EfficientNet-Lite0:
#: the *original* torch-f32 model 5.3e-2, its Keras translation 2.6e-3 (notes/translate.md).
#: A systematic error shows in the outputs and in the cosine, which stays > 0.9999 for round-off.
DEFAULT_TOLERANCE = {"output": 1e-4, "gradient": 1e-1, "cosine": 0.999}


def normalize_tolerance(tolerance) -> dict:
    """``None`` → defaults; a float sets the output bound only; a dict overrides the given keys.

    Raises :class:`~crosslens.translate.errors.TranslationOptionError` for unknown keys and for
    values that are not numbers in range (relative errors ≥ 0, cosine in [-1, 1]).
    """
    out = dict(DEFAULT_TOLERANCE)
    if tolerance is None:
        return out
    if isinstance(tolerance, dict):
        unknown = set(tolerance) - set(out)
        if unknown:
            raise _option_error(f"unknown tolerance keys {sorted(map(str, unknown))}; use {sorted(out)}, "
                                "e.g. tolerance={'output': 1e-4, 'gradient': 1e-1, 'cosine': 0.999}")
        out.update({k: _bound(k, v) for k, v in tolerance.items()})
        return out
    out["output"] = _bound("output", tolerance)
    return out


def _option_error(message: str):
    from .errors import TranslationOptionError

    return TranslationOptionError(message)


def _bound(key: str, value) -> float:
    """``value`` as a float bound for ``key``, or a clear error."""
    number = None
    if not isinstance(value, (bool, np.bool_)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or not np.isfinite(number):
        raise _option_error(f"tolerance {key!r} must be a finite number, got {value!r} "
                            f"(default {DEFAULT_TOLERANCE[key]})")
    if key == "cosine" and not -1.0 <= number <= 1.0:
        raise _option_error(f"tolerance 'cosine' is a minimum cosine in [-1, 1], got {value!r} "
                            f"(default {DEFAULT_TOLERANCE[key]})")
    if key != "cosine" and number < 0:
        raise _option_error(f"tolerance {key!r} bounds a relative error and must be >= 0, got "
                            f"{value!r} (default {DEFAULT_TOLERANCE[key]})")
    return number


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


# --- running a model ----------------------------------------------------------------------------
def run_model(model, x: np.ndarray, masks_fn):
    """``(output, [input-gradient of sum(output * mask) for each mask])`` of ``model`` on ``x``.

    Runs through the model's crosslens backend (its forward pass and vector-Jacobian
    product), so translation is verified by the same primitives that explain the model.
    ``masks_fn(output)`` returns the cotangent masks in the model's own layout.
    """
    from ..backends import get_backend
    from ..core.errors import DisconnectedError

    backend = get_backend(model)
    ops = backend.ops
    grads = []
    with backend.session():
        native = backend.prepare(x)
        out = ops.to_numpy(backend.forward(native))
        for mask in masks_fn(out):
            try:
                cotangent = ops.asarray(np.ascontiguousarray(mask, dtype=out.dtype))
                grads.append(ops.to_numpy(backend.vjp(native, cotangent)))
            except DisconnectedError:  # the output does not depend on the input
                grads.append(np.zeros_like(x))
    return out, grads


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


def _class_mask(out: np.ndarray):
    flat = out.reshape(out.shape[0], -1)
    cls = flat.argmax(axis=1)
    mask = np.zeros_like(flat)
    mask[np.arange(flat.shape[0]), cls] = 1.0
    return mask.reshape(out.shape), cls


def verify(original, translated, probe_inputs, perm, tolerance, run=run_model) -> Verification:
    """Compare the ``translated`` model with the ``original`` on ``probe_inputs`` (in the
    original layout): outputs, and input-gradients of the outputs' sum and of each
    probe's class logit (the original's argmax).

    ``perm`` transposes rank-4 original-layout inputs/outputs into the translation's
    layout; ``run(model, x, masks_fn) -> (output, grads)`` runs a model (:func:`run_model`).
    All probes are evaluated as one batch (per-sample results are independent in eval
    mode), then split for the per-probe metrics.
    """
    tol = normalize_tolerance(tolerance)
    t0 = time.perf_counter()
    sizes = [x.shape[0] for _, x in probe_inputs]
    x_all = np.concatenate([x for _, x in probe_inputs], axis=0)
    state = {}

    def masks_original(out):
        mask, cls = _class_mask(out)
        state["cls"], state["mask"] = cls, mask
        return [np.ones_like(out), mask]

    out_o, (g_sum_o, g_cls_o) = run(original, x_all, masks_original)
    in_perm = perm if x_all.ndim == 4 else None
    out_perm = perm if out_o.ndim == 4 else None

    def masks_translated(out_t):
        return [apply_perm(np.ones_like(state["mask"]), out_perm), apply_perm(state["mask"], out_perm)]

    xt = np.ascontiguousarray(apply_perm(x_all, in_perm))
    out_t, (g_sum_t, g_cls_t) = run(translated, xt, masks_translated)
    back_in, back_out = inverse_perm(in_perm), inverse_perm(out_perm)
    out_t = apply_perm(out_t, back_out)
    g_sum_t = apply_perm(g_sum_t, back_in)
    g_cls_t = apply_perm(g_cls_t, back_in)

    results = []
    start = 0
    for idx, ((kind, _), n) in enumerate(zip(probe_inputs, sizes)):
        sl = slice(start, start + n)
        start += n
        # sum(outputs) can have an analytically zero gradient (softmax heads): measure its
        # error against 1% of the class-logit gradient so cancellation noise is not "100 % error"
        sum_floor = 1e-2 * float(np.abs(g_cls_o[sl]).max())
        cls_floor = 1e-6 * float(np.abs(g_sum_o[sl]).max())
        results.append(
            ProbeResult(
                idx,
                kind,
                metrics(out_t[sl], out_o[sl]),
                metrics(g_sum_t[sl], g_sum_o[sl], sum_floor),
                metrics(g_cls_t[sl], g_cls_o[sl], cls_floor),
                [int(c) for c in state["cls"][sl]],
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
