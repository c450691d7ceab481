"""Activation capture helpers for layer-mapping tests."""

from __future__ import annotations

import numpy as np


def torch_activation(model, module_name, x):
    import torch

    module = dict(model.named_modules())[module_name]
    store = {}

    def hook(_m, _inp, out):
        store["out"] = out[0] if isinstance(out, (tuple, list)) else out

    h = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    finally:
        h.remove()
    return store["out"].detach().numpy()


def keras_activation(model, layer_name, x):
    import keras

    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    sub = keras.Model(inputs, model.get_layer(layer_name).output)
    return np.asarray(sub(np.asarray(x, dtype=np.float32), training=False))


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
