"""Keras model kinds (Sequential, Functional, subclassed, nested) and compiled, untraced reuse."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import crosslens as cl  # noqa: E402
from crosslens.backends import get_backend  # noqa: E402


def functional():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, keras.layers.Dense(4, name="fc")(h))


class Subclassed(keras.Model):
    """The same network written imperatively, with a raw ``tf.nn.relu`` in ``call``."""

    def __init__(self):
        super().__init__()
        self.conv1 = keras.layers.Conv2D(6, 3, padding="same", name="conv1")
        self.gap = keras.layers.GlobalAveragePooling2D(name="gap")
        self.fc = keras.layers.Dense(4, name="fc")

    def call(self, x):
        return self.fc(self.gap(tf.nn.relu(self.conv1(x))))


def sequential():
    return keras.Sequential([keras.Input((12, 12, 3)),
                             keras.layers.Conv2D(6, 3, padding="same", name="conv1"),
                             keras.layers.ReLU(name="relu"),
                             keras.layers.GlobalAveragePooling2D(name="gap"),
                             keras.layers.Dense(4, name="fc")])


def nested():
    inner = functional()
    inputs = keras.Input((12, 12, 3))
    return keras.Model(inputs, inner(inputs), name="outer"), inner.name


def same_weights(model, reference):
    for name in ("conv1", "fc"):
        model.get_layer(name).set_weights(reference.get_layer(name).get_weights())
    return model


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(3, 12, 12, 3)).astype(np.float32)


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "integrated_gradients"])
def test_every_model_kind_gives_the_functional_models_attributions(method, x):
    reference = functional()
    subclassed = Subclassed()
    subclassed(x[:1])
    models = [same_weights(sequential(), reference), same_weights(subclassed, reference)]
    outer, inner_name = nested()
    same_weights(outer.get_layer(inner_name), reference)
    models.append(outer)
    expected = cl.explain(reference, x, method, target=[0, 1, 2]).attributions
    for model in models:
        got = cl.explain(model, x, method, target=[0, 1, 2]).attributions
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_layers_of_subclassed_and_nested_models_are_addressable(x):
    reference = functional()
    subclassed = Subclassed()
    subclassed(x[:1])
    same_weights(subclassed, reference)
    outer, inner_name = nested()
    same_weights(outer.get_layer(inner_name), reference)
    expected = cl.explain(reference, x, "saliency", target=1, layer="conv1").attributions
    got_sub = cl.explain(subclassed, x, "saliency", target=1, layer="conv1").attributions
    got_nested = cl.explain(outer, x, "saliency", target=1,
                            layer=f"{inner_name}/conv1").attributions
    np.testing.assert_allclose(got_sub, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_nested, expected, rtol=1e-5, atol=1e-7)
    assert f"{inner_name}/conv1" in cl.layers(outer)


def test_compiled_functions_are_traced_once_across_calls_and_chunk_sizes(x):
    model = functional()
    calls = [("saliency", {}), ("integrated_gradients", {"steps": 8}), ("guided_backprop", {})]
    for budget in (None, 4096, None):  # 4 KB: one sample per pass, other chunk sizes
        for method, options in calls:
            cl.explain(model, x, method, target=[0, 1, 2], memory_budget=budget, **options)
    functions = get_backend(model)._fns
    assert functions, "the Keras backend should run compiled functions"
    counts = {key[0]: fn.__wrapped__.experimental_get_tracing_count()
              for key, fn in functions.items()}
    assert all(count == 1 for count in counts.values()), counts
