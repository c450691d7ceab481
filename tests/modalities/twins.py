"""Twin PyTorch / Keras models of text, tabular and time-series inputs (float64).

Each Keras model is built (or trained) first; ``torch_twin(kind, keras_model)`` copies its
weights into the PyTorch model of the same architecture, mapping the layouts:

- Dense ``(in, out)`` -> Linear ``(out, in)``; Conv1D ``(k, in, out)`` -> Conv1d
  ``(out, in, k)``; Embedding tables are the same.
- LSTM: both frameworks order the gates ``i, f, c(g), o``; Keras has one bias, so
  PyTorch gets ``b_ih = bias`` and ``b_hh = 0``.
- GRU (Keras ``reset_after=True``, PyTorch's formulation): Keras orders the gates
  ``z, r, h``, PyTorch ``r, z, n``; Keras' bias row 0 is the input bias, row 1 the
  recurrent one.
- MultiHeadAttention: Keras' query / key / value kernels ``(D, heads, head_dim)`` are
  the rows of PyTorch's ``in_proj_weight`` ``(3 D, D)`` (transposed, heads major); the
  output kernel ``(heads, head_dim, D)`` is ``out_proj.weight`` transposed. LayerNorm
  epsilons are set equal (1e-5).

Layouts: text ids ``(N, T)`` in both; series ``(N, T, C)`` for Keras, ``(N, C, T)`` for
PyTorch (its recurrent twins transpose inside ``forward``); tables ``(N, F)``.
"""
from __future__ import annotations

import numpy as np

DTYPE = "float64"
TEXT_KINDS = ("lstm", "gru", "conv", "attention", "transformer")
SERIES_KINDS = ("conv", "lstm", "gru")


def _keras():
    import keras
    return keras


def _attention_layer():
    """A single-head self-attention (scaled dot product) as a Keras layer."""
    keras = _keras()
    ops = keras.ops

    class SelfAttention(keras.layers.Layer):
        def call(self, inputs):
            q, k, v = inputs
            scale = float(q.shape[-1]) ** -0.5
            weights = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))) * scale, axis=-1)
            return ops.matmul(weights, v)

    return SelfAttention


# --- Keras ----------------------------------------------------------------------------------

def keras_text(kind: str, vocab: int = 24, dim: int = 6, hidden: int = 5, classes: int = 3,
               length: int = 7, seed: int = 0):
    """Embedding "emb" -> ``kind`` -> Dense "fc" over token ids ``(N, length)``."""
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    ids = keras.Input((length,), dtype="int32", name="ids")
    h = layers.Embedding(vocab, dim, name="emb", dtype=DTYPE)(ids)
    if kind == "lstm":
        h = layers.LSTM(hidden, name="rnn", dtype=DTYPE)(h)
    elif kind == "gru":
        h = layers.GRU(hidden, name="rnn", dtype=DTYPE)(h)
    elif kind == "conv":  # the ReLU apart: "conv" is the pre-activation, as in PyTorch
        h = layers.Conv1D(hidden, 3, padding="same", name="conv", dtype=DTYPE)(h)
        h = layers.ReLU(name="relu", dtype=DTYPE)(h)
        h = layers.GlobalMaxPooling1D(name="pool", dtype=DTYPE)(h)
    elif kind == "attention":
        q, k, v = (layers.Dense(dim, name=n, dtype=DTYPE)(h) for n in ("q", "k", "v"))
        a = _attention_layer()(name="attn", dtype=DTYPE)([q, k, v])
        h = layers.Add(name="res", dtype=DTYPE)([h, a])
        h = layers.GlobalAveragePooling1D(name="pool", dtype=DTYPE)(h)
    elif kind == "transformer":  # post-norm encoder block without the feed-forward part
        a = layers.MultiHeadAttention(2, dim // 2, name="mha", dtype=DTYPE)(h, h)
        h = layers.LayerNormalization(epsilon=1e-5, name="norm", dtype=DTYPE)(
            layers.Add(name="res", dtype=DTYPE)([h, a]))
        h = layers.GlobalAveragePooling1D(name="pool", dtype=DTYPE)(h)
    else:
        raise ValueError(kind)
    out = layers.Dense(classes, name="fc", dtype=DTYPE)(h)
    return keras.Model(ids, out)


def keras_series(kind: str, steps: int = 12, channels: int = 3, hidden: int = 4,
                 classes: int = 2, seed: int = 0):
    """``kind`` over ``(N, steps, channels)`` -> Dense "fc"."""
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    x = keras.Input((steps, channels), dtype=DTYPE, name="series")
    if kind == "conv":
        h = layers.Conv1D(hidden, 3, padding="same", activation="relu", name="conv",
                          dtype=DTYPE)(x)
        h = layers.GlobalAveragePooling1D(name="pool", dtype=DTYPE)(h)
    elif kind in ("lstm", "gru"):
        h = (layers.LSTM if kind == "lstm" else layers.GRU)(hidden, name="rnn", dtype=DTYPE)(x)
    else:
        raise ValueError(kind)
    return keras.Model(x, layers.Dense(classes, name="fc", dtype=DTYPE)(h))


def keras_tabular(features: int, classes: int, hidden: int = 8, seed: int = 0):
    """Dense "hidden" (ReLU) -> Dense "fc" over ``(N, features)``."""
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    x = keras.Input((features,), dtype=DTYPE, name="features")
    h = layers.Dense(hidden, activation="relu", name="hidden", dtype=DTYPE)(x)
    return keras.Model(x, layers.Dense(classes, name="fc", dtype=DTYPE)(h))


# --- PyTorch twins --------------------------------------------------------------------------

def _torch_classes():
    import torch
    from torch import nn

    class Text(nn.Module):
        def __init__(self, kind, vocab, dim, hidden, classes):
            super().__init__()
            self.kind = kind
            self.emb = nn.Embedding(vocab, dim)
            if kind in ("lstm", "gru"):
                self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(dim, hidden,
                                                                   batch_first=True)
            elif kind == "conv":
                self.conv = nn.Conv1d(dim, hidden, 3, padding=1)
            elif kind == "transformer":
                self.mha = nn.MultiheadAttention(dim, 2, batch_first=True)
                self.norm = nn.LayerNorm(dim)
            else:
                self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
            self.fc = nn.Linear(dim if kind in ("attention", "transformer") else hidden,
                                classes)

        def forward(self, ids):
            h = self.emb(ids)
            if self.kind in ("lstm", "gru"):
                h = self.rnn(h)[0][:, -1]
            elif self.kind == "conv":
                h = torch.relu(self.conv(h.transpose(1, 2))).amax(dim=2)
            elif self.kind == "transformer":
                h = self.norm(h + self.mha(h, h, h, need_weights=False)[0]).mean(dim=1)
            else:
                q, k, v = self.q(h), self.k(h), self.v(h)
                w = torch.softmax(q @ k.transpose(1, 2) * q.shape[-1] ** -0.5, dim=-1)
                h = (h + w @ v).mean(dim=1)
            return self.fc(h)

    class Series(nn.Module):
        """Takes ``(N, C, T)``."""

        def __init__(self, kind, channels, hidden, classes):
            super().__init__()
            self.kind = kind
            if kind == "conv":  # modules, so that LRP sees the ReLU and the pooling
                self.conv = nn.Conv1d(channels, hidden, 3, padding=1)
                self.relu, self.pool = nn.ReLU(), nn.AdaptiveAvgPool1d(1)
                self.flatten = nn.Flatten()
            else:
                self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(channels, hidden,
                                                                   batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, x):
            if self.kind == "conv":
                h = self.flatten(self.pool(self.relu(self.conv(x))))
            else:
                h = self.rnn(x.transpose(1, 2))[0][:, -1]
            return self.fc(h)

    class Tabular(nn.Module):
        def __init__(self, features, hidden, classes):
            super().__init__()
            self.hidden, self.relu = nn.Linear(features, hidden), nn.ReLU()
            self.fc = nn.Linear(hidden, classes)

        def forward(self, x):
            return self.fc(self.relu(self.hidden(x)))

    return Text, Series, Tabular


def _weights(keras_model, name):
    return [np.asarray(w, dtype=np.float64) for w in keras_model.get_layer(name).get_weights()]


def _dense(linear, weights):
    import torch
    linear.weight.data = torch.as_tensor(weights[0].T.copy())
    linear.bias.data = torch.as_tensor(weights[1].copy())


def _conv(conv, weights):
    import torch
    conv.weight.data = torch.as_tensor(weights[0].transpose(2, 1, 0).copy())
    conv.bias.data = torch.as_tensor(weights[1].copy())


def _recurrent(rnn, weights, kind):
    import torch
    kernel, recurrent, bias = weights
    if kind == "lstm":
        b_ih, b_hh = bias, np.zeros_like(bias)
    else:  # Keras z, r, h -> torch r, z, n
        h = kernel.shape[1] // 3
        order = np.r_[h:2 * h, 0:h, 2 * h:3 * h]
        kernel, recurrent = kernel[:, order], recurrent[:, order]
        b_ih, b_hh = bias[0][order], bias[1][order]
    rnn.weight_ih_l0.data = torch.as_tensor(kernel.T.copy())
    rnn.weight_hh_l0.data = torch.as_tensor(recurrent.T.copy())
    rnn.bias_ih_l0.data = torch.as_tensor(b_ih.copy())
    rnn.bias_hh_l0.data = torch.as_tensor(b_hh.copy())


def _attention(model, keras_model):
    """Keras MultiHeadAttention "mha" and LayerNormalization "norm" -> the torch modules."""
    import torch
    qk, qb, kk, kb, vk, vb, ok, ob = _weights(keras_model, "mha")
    dim = qk.shape[0]
    model.mha.in_proj_weight.data = torch.as_tensor(np.concatenate(
        [w.reshape(dim, -1).T for w in (qk, kk, vk)]))
    model.mha.in_proj_bias.data = torch.as_tensor(np.concatenate([qb.ravel(), kb.ravel(),
                                                                  vb.ravel()]))
    model.mha.out_proj.weight.data = torch.as_tensor(ok.reshape(-1, dim).T.copy())
    model.mha.out_proj.bias.data = torch.as_tensor(ob.copy())
    gamma, beta = _weights(keras_model, "norm")
    model.norm.weight.data, model.norm.bias.data = torch.as_tensor(gamma), torch.as_tensor(beta)


def torch_text(kind: str, keras_model):
    """The PyTorch twin of :func:`keras_text` with ``keras_model``'s weights."""
    import torch
    Text, _, _ = _torch_classes()
    table = _weights(keras_model, "emb")[0]
    fc = _weights(keras_model, "fc")
    hidden = fc[0].shape[0]
    model = Text(kind, table.shape[0], table.shape[1], hidden, fc[0].shape[1]).double()
    model.emb.weight.data = torch.as_tensor(table.copy())
    if kind in ("lstm", "gru"):
        _recurrent(model.rnn, _weights(keras_model, "rnn"), kind)
    elif kind == "conv":
        _conv(model.conv, _weights(keras_model, "conv"))
    elif kind == "transformer":
        _attention(model, keras_model)
    else:
        for name in ("q", "k", "v"):
            _dense(getattr(model, name), _weights(keras_model, name))
    _dense(model.fc, fc)
    return model.eval()


def torch_series(kind: str, keras_model):
    """The PyTorch twin of :func:`keras_series` (input ``(N, C, T)``)."""
    _, Series, _ = _torch_classes()
    fc = _weights(keras_model, "fc")
    channels = keras_model.inputs[0].shape[-1]
    model = Series(kind, channels, fc[0].shape[0], fc[0].shape[1]).double()
    if kind == "conv":
        _conv(model.conv, _weights(keras_model, "conv"))
    else:
        _recurrent(model.rnn, _weights(keras_model, "rnn"), kind)
    _dense(model.fc, fc)
    return model.eval()


def torch_tabular(keras_model):
    """The PyTorch twin of :func:`keras_tabular`."""
    _, _, Tabular = _torch_classes()
    hidden, fc = _weights(keras_model, "hidden"), _weights(keras_model, "fc")
    model = Tabular(hidden[0].shape[0], hidden[0].shape[1], fc[0].shape[1]).double()
    _dense(model.hidden, hidden)
    _dense(model.fc, fc)
    return model.eval()
