"""The raw Keras floor: each method hand-written as compiled ``tf.function`` steps, batched.

``KerasFloor(model, layer)`` compiles, once, a batch-polymorphic function per kind of pass
(input gradient of a weighted sum of scores, layer activations + gradient, forward);
the methods stack interpolation points, noise samples, masked inputs and occluded copies
into passes of ``chunk`` samples, as in :mod:`floors_torch`. Inputs are NHWC.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


class KerasFloor:
    def __init__(self, model, layer: str | None = None) -> None:
        self.model = model
        spec = tf.TensorSpec([None] + list(model.inputs[0].shape[1:]), model.inputs[0].dtype)
        index = tf.TensorSpec([None], tf.int64)

        @tf.function(input_signature=[spec, index])
        def grad(x, t):
            with tf.GradientTape() as tape:
                tape.watch(x)
                score = tf.reduce_sum(tf.gather(model(x, training=False), t, axis=1,
                                                batch_dims=1))
            return tape.gradient(score, x)

        @tf.function(input_signature=[spec])
        def forward(x):
            return model(x, training=False)

        self.grad, self.forward = grad, forward
        if layer is not None:
            import keras
            both = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])

            @tf.function(input_signature=[spec, index])
            def cam_grad(x, t):
                with tf.GradientTape() as tape:
                    acts, out = both(x, training=False)
                    score = tf.reduce_sum(tf.gather(out, t, axis=1, batch_dims=1))
                return acts, tape.gradient(score, acts)

            @tf.function(input_signature=[spec])
            def acts_of(x):
                return both(x, training=False)[0]

            self.cam_grad, self.acts_of = cam_grad, acts_of

    # --- methods -------------------------------------------------------------------------
    def saliency(self, x, t, chunk):
        return self.grad(x, t)

    def integrated_gradients(self, x, t, chunk, steps):
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        alphas, weights = (nodes + 1) / 2, weights / 2
        n, per = int(x.shape[0]), max(1, chunk // int(x.shape[0]))
        total = tf.zeros_like(x)
        for a in range(0, steps, per):
            k = min(per, steps - a)
            shape = (k,) + (1,) * len(x.shape)
            al = tf.constant(alphas[a:a + k].reshape(shape), x.dtype)
            w = tf.constant(weights[a:a + k].reshape(shape), x.dtype)
            points = tf.reshape(al * x[None], (k * n,) + tuple(x.shape[1:]))
            grad = tf.reshape(self.grad(points, tf.tile(t, [k])), (k, n) + tuple(x.shape[1:]))
            total += tf.reduce_sum(grad * w, axis=0)
        return total * x

    def smoothgrad(self, x, t, chunk, samples, sigma, noise=None):
        n, per = int(x.shape[0]), max(1, chunk // int(x.shape[0]))
        total = tf.zeros_like(x)
        for a in range(0, samples, per):
            k = min(per, samples - a)
            eps = noise[a:a + k] if noise is not None else \
                tf.random.normal((k,) + tuple(x.shape), dtype=x.dtype) * sigma
            points = tf.reshape(x[None] + eps, (k * n,) + tuple(x.shape[1:]))
            grad = self.grad(points, tf.tile(t, [k]))
            total += tf.reduce_sum(tf.reshape(grad, (k, n) + tuple(x.shape[1:])), axis=0)
        return total / samples

    def grad_cam(self, x, t, chunk, layer=None):
        acts, grads = self.cam_grad(x, t)
        cam = tf.nn.relu(tf.reduce_sum(tf.reduce_mean(grads, axis=(1, 2), keepdims=True) * acts,
                                       axis=-1, keepdims=True))
        return tf.image.resize(cam, x.shape[1:3], method="bilinear")[..., 0]

    def _masks(self, acts, size):
        n, h, w, k = acts.shape
        maps = tf.image.resize(tf.reshape(tf.transpose(acts, (0, 3, 1, 2)), (n * k, h, w, 1)),
                               size, method="bilinear")
        low = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
        high = tf.reduce_max(maps, axis=(1, 2), keepdims=True)
        return tf.reshape((maps - low) / (high - low + 1e-7), (n, k) + tuple(size) + (1,))

    def _cam(self, acts, weights, size):
        cam = tf.nn.relu(tf.reduce_sum(acts * tf.cast(weights[:, None, None, :], acts.dtype),
                                       axis=-1, keepdims=True))
        return tf.image.resize(cam, size, method="bilinear")[..., 0]

    def score_cam(self, x, t, chunk, layer=None):
        acts = self.acts_of(x)
        n, k = int(acts.shape[0]), int(acts.shape[-1])
        size = tuple(x.shape[1:3])
        per = max(1, chunk // n)
        parts = []
        for a in range(0, k, per):
            m = min(per, k - a)
            masks = self._masks(acts[..., a:a + m], size)  # (N, m, H, W, 1)
            points = tf.reshape(x[:, None] * masks, (n * m,) + tuple(x.shape[1:]))
            probs = tf.reshape(tf.nn.softmax(self.forward(points), axis=1), (n, m, -1))
            parts.append(tf.gather(probs, t, axis=2, batch_dims=1))
        return self._cam(acts, tf.concat(parts, axis=1), size)

    def score_cam_loop(self, x, t, chunk, layer=None):
        acts = self.acts_of(x)
        n, k = int(acts.shape[0]), int(acts.shape[-1])
        size = tuple(x.shape[1:3])
        parts = []
        for c in range(k):
            masks = self._masks(acts[..., c:c + 1], size)[:, 0]
            probs = tf.nn.softmax(self.forward(x * masks), axis=1)
            parts.append(tf.gather(probs, t, axis=1, batch_dims=1)[:, None])
        return self._cam(acts, tf.concat(parts, axis=1), size)

    def _window_masks(self, size, patch, stride):
        counts = [math.ceil((d - patch) / stride) + 1 for d in size]
        windows = [(i * stride, j * stride) for i in range(counts[0]) for j in range(counts[1])]
        keep = np.ones((len(windows),) + tuple(size) + (1,), np.float32)
        for j, (r, c) in enumerate(windows):
            keep[j, r:r + patch, c:c + patch] = 0
        return windows, keep

    def occlusion(self, x, t, chunk, patch, stride):
        n, size = int(x.shape[0]), tuple(x.shape[1:3])
        windows, keep = self._window_masks(size, patch, stride)
        keep = tf.constant(keep, x.dtype)
        reference = tf.gather(self.forward(x), t, axis=1, batch_dims=1)
        per = max(1, chunk // n)
        drops = []
        for a in range(0, len(windows), per):
            k = min(per, len(windows) - a)
            points = tf.reshape(keep[a:a + k, None] * x[None], (k * n,) + tuple(x.shape[1:]))
            scores = tf.gather(self.forward(points), tf.tile(t, [k]), axis=1, batch_dims=1)
            drops.append(reference[None] - tf.reshape(scores, (k, n)))
        return self._spread(tf.concat(drops, 0), windows, keep, x)

    def occlusion_loop(self, x, t, chunk, patch, stride):
        size = tuple(x.shape[1:3])
        windows, keep = self._window_masks(size, patch, stride)
        keep = tf.constant(keep, x.dtype)
        reference = tf.gather(self.forward(x), t, axis=1, batch_dims=1)
        drops = [reference - tf.gather(self.forward(x * keep[j]), t, axis=1, batch_dims=1)
                 for j in range(len(windows))]
        return self._spread(tf.stack(drops), windows, keep, x)

    @staticmethod
    def _spread(drops, windows, keep, x):
        """Mean drop over the windows covering each pixel: (W, N) drops, (W, H, W, 1) masks."""
        occluded = 1.0 - keep[..., 0]  # (W, H, W)
        total = tf.einsum("wn,whv->nhv", drops, occluded)
        covered = tf.reduce_sum(occluded, axis=0)
        return tf.broadcast_to((total / covered)[..., None], x.shape)
