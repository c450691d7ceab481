"""External implementations behind the same API: ``cl.explain(..., implementation=NAME)``.

Each adapter (one file per toolset) runs the toolset's own implementation of a method on
a model of the toolset's framework, with options aligned to crosslens' convention so
that the same method gives the same numbers whichever implementation runs it:

- ``"captum"`` (PyTorch): every Captum attribution class, primary, layer and neuron;
- ``"tf-keras-vis"`` (Keras): Saliency / SmoothGrad, Gradcam, GradcamPlusPlus, Scorecam,
  Layercam;
- ``"zennit"`` (PyTorch): LRP composites.

When the model's framework differs, the model is translated first
(:func:`crosslens.translate.translate`, verified and cached); inputs go through the
translation's layout conversion and the attributions come back in the original layout.
Adapters import their toolset lazily; :mod:`.options` holds their shared option checks.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ..core.errors import UnsupportedError
from ..core.names import unknown_name_message


@dataclass(frozen=True)
class ToolsetInfo:
    name: str
    framework: str  # the backend name of the models it runs on
    module: str
    package: str  # what to pip install


TOOLSETS = {
    "captum": ToolsetInfo("captum", "torch", "crosslens.toolsets.captum", "captum"),
    "tf-keras-vis": ToolsetInfo("tf-keras-vis", "keras", "crosslens.toolsets.tf_keras_vis",
                                "tf-keras-vis"),
    "zennit": ToolsetInfo("zennit", "torch", "crosslens.toolsets.zennit", "zennit"),
}


def toolset(name: str) -> tuple[ToolsetInfo, Any]:
    """``(info, adapter module)`` of a toolset; unknown names list the valid ones."""
    key = name.lower().replace("_", "-")
    if key in ("tf_keras_vis", "tfkerasvis", "tf-keras-vis"):
        key = "tf-keras-vis"
    if key not in TOOLSETS:
        raise UnsupportedError(unknown_name_message("implementation", name,
                                                    ["crosslens"] + list(TOOLSETS)))
    info = TOOLSETS[key]
    try:
        return info, importlib.import_module(info.module)
    except ImportError as error:
        raise UnsupportedError(f"implementation {info.name!r} needs the package "
                               f"{info.package!r}: pip install {info.package} "
                               f"({error})") from None


class ConservationWarning(UserWarning):
    """LRP through ``implementation="zennit"`` did not conserve relevance.

    Issued when ``sum(relevance) / score`` of a sample is far from 1 (beyond what biases
    absorb): relevance was duplicated or created somewhere in the model. The ratios are in
    the explanation's ``info["conservation"]``.
    """
