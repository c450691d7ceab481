"""zennit adapter: Layer-wise Relevance Propagation composites on PyTorch models.

``cl.explain(model, x, "lrp", implementation="zennit", composite="epsilon_plus_flat")``
runs zennit's ``Gradient`` attributor under the named composite (any name in
``zennit.composites.COMPOSITES``: ``epsilon_plus``, ``epsilon_plus_flat``,
``epsilon_gamma_box``, ``epsilon_alpha2_beta1``, ``epsilon_alpha2_beta1_flat``,
``guided_backprop``, ``excitation_backprop``, ...), with the target class's score as the
initial relevance: relevance is in the score's units and, under conserving rules, sums to
it (raw and signed, like every crosslens attribution). Batch-norm
layers are merged into the preceding linear layer with zennit's canonizer by default
(``canonize=True``), as LRP requires; the model itself is restored afterwards.
``guided_backprop`` and ``deconvnet`` map to zennit's composites of the same name; they
are gradients, so they start from the one-hot of the target.

zennit imports ``torchvision`` at import time (only for canonizers of torchvision's
ResNet blocks). Where torchvision cannot be imported, zennit is imported with the same
scoped stub crosslens uses for onnx2torch (see :mod:`crosslens.translate._torchvision`):
the stub's classes match no module, so those canonizers simply never apply.
"""
from __future__ import annotations

from typing import Any

import torch

from ..core.errors import OptionError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.targets import ClassTarget

ALIASES = {"guided_backprop": "guided_backprop", "deconvnet": "deconvnet"}


def _zennit():
    from ..translate._torchvision import import_with_torchvision
    return import_with_torchvision("zennit")


def methods() -> list[str]:
    return ["lrp", "guided_backprop", "deconvnet"]


def run(model: torch.nn.Module, layer_object: Any, x: torch.Tensor, method: str, target: Any,
        layer: str | None, options: dict[str, Any]) -> torch.Tensor:
    """zennit's relevance (or modified gradient) of the target class w.r.t. the input."""
    _zennit()  # imports zennit (with the torchvision stub where needed)
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import COMPOSITES

    options = dict(options)
    options.pop("seed", None)
    if layer is not None:
        raise UnsupportedError("the zennit adapter attributes to the input only")
    if not isinstance(target, ClassTarget):
        raise UnsupportedError("the zennit adapter takes class targets")
    if method in ALIASES:
        composite_name = ALIASES[method]
    elif method == "lrp":
        composite_name = options.pop("composite", "epsilon_plus_flat")
    else:
        raise UnsupportedError(unknown_name_message("method for zennit", method, methods()))
    if composite_name not in COMPOSITES:
        raise OptionError(unknown_name_message("zennit composite", composite_name,
                                               list(COMPOSITES)))
    canonizers = [SequentialMergeBatchNorm()] if options.pop("canonize", True) else []
    if composite_name == "epsilon_gamma_box":
        options.setdefault("low", float(x.min()))
        options.setdefault("high", float(x.max()))
    composite = COMPOSITES[composite_name](canonizers=canonizers, **options)
    with torch.no_grad():
        outputs = model(x)
    seed = torch.zeros_like(outputs)
    seed[torch.arange(len(x)), torch.as_tensor(target.indices, device=x.device)] = 1.0
    if method == "lrp":  # relevance starts as the target score itself, so it sums to it
        seed = seed * outputs
    with Gradient(model=model, composite=composite) as attributor:
        _, relevance = attributor(x, seed)
    return relevance.detach()
