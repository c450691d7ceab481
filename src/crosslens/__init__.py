"""crosslens: cross-framework neural-network introspection.

One API for attribution methods on PyTorch and Keras models, running natively in the
model's own framework::

    import crosslens as cl
    exp = cl.explain(model, x, "integrated_gradients", target=285, steps=64)
    exp.attributions      # same array type and layout as x
    exp.save("ig.png")
    cl.methods()          # what exists, what it needs, which backends run it
    store = cl.explain_dataset(model, "digits", ["saliency"], ["conv2"], out="runs/a")

Importing crosslens imports no deep-learning framework; a backend is loaded the first
time a model of its framework is explained.
"""
from __future__ import annotations

from . import methods as _methods  # noqa: F401  (registers every method)
from . import viz as _viz  # noqa: F401  (registers the renderer of results)
from .api import activations, explain, layer_calls, layers, methods, visualize
from .compare import compare
from .dataset import Store, StoreError, explain_dataset, open_store
from .inspector.serve import inspect
from .core.errors import (CrosslensError, DisconnectedError, InputError, LayerNotFoundError,
                          LoadError, ModalityError, ModelError, NonFiniteError, OptionError,
                          TargetError, UnknownMethodError, UnsupportedError)
from .core.explanation import Explanation
from .core.influence import (ChannelQoI, ClassDifference, ClassQoI, GaussianDoI, LinearDoI,
                             PointDoI)
from .core.targets import Channel, Neuron
from .toolsets import ConservationWarning
from .modalities import (TabularExplanation, TextExplanation, explain_similarity,
                         explain_tabular, explain_text)

__version__ = "0.1.0"

__all__ = ["explain", "compare", "methods", "layers", "layer_calls", "activations",
           "Explanation", "Neuron", "Channel",
           "CrosslensError", "InputError", "TargetError", "LayerNotFoundError",
           "UnknownMethodError", "UnsupportedError", "DisconnectedError", "OptionError",
           "NonFiniteError", "ModelError", "LoadError", "ModalityError", "ConservationWarning",
           "ClassQoI", "ClassDifference", "ChannelQoI", "PointDoI", "LinearDoI", "GaussianDoI",
           "visualize", "explain_dataset", "open_store", "Store", "StoreError",
           "explain_text", "explain_similarity", "explain_tabular", "TextExplanation",
           "TabularExplanation", "inspect"]
