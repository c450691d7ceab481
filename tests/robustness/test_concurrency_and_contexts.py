"""Calls from several threads, inside grad-disabled contexts, and on models changed between
calls: results equal the plain sequential ones, and the model is left unchanged."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

import crosslens as cl

from . import models as M
from .catalogue import image
from .fingerprint import assert_unchanged, fingerprint

CALLS = [("saliency", {"target": 1}), ("integrated_gradients", {"target": 1, "steps": 8}),
         ("smoothgrad", {"target": 2, "samples": 3, "seed": 0}),
         ("grad_cam", {"target": 1}), ("occlusion", {"target": 1, "patch": 4})]


def _run_threads(model, x, layer: str, threads: int = 3, rounds: int = 2):
    """Every call of ``CALLS`` (and a layer gradient) from several threads at once."""
    results: dict = {}
    errors: list = []
    barrier = threading.Barrier(threads)

    def work(k: int) -> None:
        try:
            barrier.wait()
            for r in range(rounds):
                for method, options in CALLS:
                    results[(k, r, method)] = cl.explain(model, x, method, **options).numpy()
                results[(k, r, "layer")] = cl.explain(model, x, "saliency", target=1,
                                                      layer=layer).numpy()
        except Exception as error:  # reported below, with the thread's number
            errors.append((k, repr(error)))

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert not errors, errors
    return results


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_concurrent_calls_equal_sequential_ones(fw):
    # a train-mode model with BatchNorm and Dropout: any call computed in train mode, or
    # any statistics update, shows in the results or the fingerprint
    model = copy.deepcopy(M.torch_cnn("train")) if fw == "torch" else M.keras_cnn()
    layer = "0" if fw == "torch" else "conv"
    x = image(fw)
    before = fingerprint(model)
    sequential = {method: cl.explain(model, x, method, **options).numpy()
                  for method, options in CALLS}
    sequential["layer"] = cl.explain(model, x, "saliency", target=1, layer=layer).numpy()
    results = _run_threads(model, x, layer)
    for (_, _, method), value in results.items():
        np.testing.assert_array_equal(value, sequential[method], err_msg=method)
    assert_unchanged(model, before)
    if fw == "torch":
        assert model.training and all(m.training for m in model.modules())


def test_calls_on_different_models_run_in_parallel():
    """The lock is per model: two models explained at once do not wait on each other."""
    from crosslens.backends import model_lock

    a, b = M.torch_linear(), M.torch_mlp()
    assert model_lock(a) is model_lock(a) and model_lock(a) is not model_lock(b)
    held = threading.Event()
    done = threading.Event()

    def hold_a():
        with model_lock(a):
            held.set()
            done.wait(timeout=30)

    holder = threading.Thread(target=hold_a)
    holder.start()
    held.wait(timeout=30)
    try:  # a is locked by another thread; b must still be explainable
        x = M.rng(4).standard_normal((4, 6)).astype(np.float32)
        assert cl.explain(b, x, "saliency", target=1).numpy().shape == (4, 6)
    finally:
        done.set()
        holder.join()


# --- grad-disabled contexts -----------------------------------------------------------------

def _linear_reference(x):
    w, _ = M.linear_weights()
    return np.broadcast_to(w[1].reshape(M.IMAGE), x.shape) * x


@pytest.mark.parametrize("context", ["no_grad", "inference_mode", "set_grad_enabled_false"])
@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", "grad_cam"])
def test_gradient_methods_work_inside_grad_disabled_contexts(context, method):
    model = M.torch_linear() if method != "grad_cam" else M.torch_cnn("eval")
    x = torch.as_tensor(image("torch"))
    outside = cl.explain(model, x, method, target=1).numpy()
    before = fingerprint(model)
    manager = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
               "set_grad_enabled_false": lambda: torch.set_grad_enabled(False)}[context]
    with manager():
        inside = cl.explain(model, x, method, target=1)
        assert not torch.is_grad_enabled()  # the caller's context is intact afterwards
    np.testing.assert_array_equal(inside.numpy(), outside)
    if method != "grad_cam":
        np.testing.assert_allclose(outside, _linear_reference(x.numpy()), rtol=1e-5, atol=1e-6)
    assert_unchanged(model, before)


def test_input_created_in_inference_mode():
    model = M.torch_linear()
    with torch.inference_mode():
        x = torch.as_tensor(image("torch")) * 1.0
    assert x.is_inference()
    got = cl.explain(model, x, "gradient_x_input", target=1).attributions
    np.testing.assert_allclose(got.numpy(), _linear_reference(x.numpy()), rtol=1e-5, atol=1e-6)


def test_model_built_in_inference_mode_is_refused_with_the_fix():
    with torch.inference_mode():
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 5))
    with pytest.raises(cl.UnsupportedError, match="outside inference_mode"):
        cl.explain(model, image("torch"), "saliency", target=1)


# --- stale state: a model changed between calls ------------------------------------------------

def test_torch_model_changed_after_the_first_call():
    model = copy.deepcopy(M.torch_linear())
    x = image("torch")
    cl.explain(model, x, "saliency", target=1)
    model.append(torch.nn.Linear(M.CLASSES, 3))  # a new head
    leaf = torch.as_tensor(x).requires_grad_(True)
    (want,) = torch.autograd.grad(model(leaf)[:, 2].sum(), leaf)
    np.testing.assert_allclose(cl.explain(model, x, "saliency", target=2).numpy(),
                               want.numpy(), rtol=1e-6)
    model.double()  # new dtype: the backend must not keep the float32 one
    exp = cl.explain(model, x.astype(np.float64), "saliency", target=2)
    assert exp.attributions.dtype == np.float64
    np.testing.assert_allclose(exp.attributions, want.numpy(), rtol=1e-5)


def test_keras_activation_replaced_after_the_first_call():
    import keras
    inp = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")
    model = keras.Model(inp, keras.layers.Dense(3, name="fc")(hidden(inp)))
    x = M.rng(4).standard_normal((4, 6)).astype(np.float32)
    relu_grad = cl.explain(model, x, "saliency", target=1).numpy()
    hidden.activation = keras.activations.linear  # the traced function would be stale
    w1, _ = hidden.get_weights()
    w2, _ = model.get_layer("fc").get_weights()
    np.testing.assert_allclose(cl.explain(model, x, "saliency", target=1).numpy(),
                               np.tile((w1 @ w2)[:, 1], (4, 1)), rtol=1e-5)
    assert not np.allclose(relu_grad, np.tile((w1 @ w2)[:, 1], (4, 1)))


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_callable_target_whose_closure_changes(fw):
    model = M.torch_linear() if fw == "torch" else M.keras_linear()
    x = image(fw)
    chosen = {"k": 1}
    score = lambda out: out[:, chosen["k"]]  # noqa: E731
    first = cl.explain(model, x, "saliency", target=score).numpy()
    chosen["k"] = 3
    second = cl.explain(model, x, "saliency", target=score).numpy()
    np.testing.assert_array_equal(first, cl.explain(model, x, "saliency", target=1).numpy())
    np.testing.assert_array_equal(second, cl.explain(model, x, "saliency", target=3).numpy())


def test_keras_traces_of_callables_do_not_accumulate():
    from crosslens.backends import get_backend
    model = M.keras_linear()
    x = image("keras")
    for k in range(4):
        cl.explain(model, x, "saliency", target=lambda out, k=k: out[:, k])
    backend = get_backend(model)
    assert not backend._call_fns  # dropped when each call ended
    assert not any(key[0] == "gradient" and key[3][0] == "ScoreTarget"
                   for key in backend._fns)
