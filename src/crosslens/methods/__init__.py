"""Method implementations, written once against the backend interface.

Importing this package registers every method; it imports no framework.
"""
from . import gradient, integrated, noise, guided, activations  # noqa: F401
from . import cam  # noqa: F401
from . import perturbation, layer, influence, shapley, gradient_shap  # noqa: F401
from . import lime, permutation  # noqa: F401
from . import lrp, deeplift, taylor  # noqa: F401
