"""Cross-framework model translation (PyTorch ⇄ Keras 3 through ONNX), verified numerically.

Public API::

    from crosslens.translate import translate, load_onnx, to_layout

    tr = translate(torch_model, to="keras", example=x_nchw)   # Translation
    keras_model, report = tr                                   # unpacks as (model, report)
    print(report)                                              # op counts, versions, verification
    tr.layer("layer4.1.conv2")                                 # corresponding Keras layer name
    x_nhwc = tr.convert_input(x_nchw); attr_nchw = tr.convert_back(attr_nhwc)

    module = load_onnx("model.onnx")   # differentiable torch module, modules named after ONNX nodes

Heavy dependencies (torch, tensorflow/keras, onnx, tf2onnx, onnx2torch, onnxscript)
are imported lazily, inside the functions that need them.
"""

from .errors import (
    ConversionError,
    MissingDependencyError,
    OnnxLoadError,
    PrunedLayerError,
    TranslationError,
    TranslationInputError,
    TranslationMismatchError,
    TranslationOptionError,
    TranslationUnsupportedError,
    UnknownLayerError,
    UnsupportedModelError,
    UnsupportedOpError,
)
from .layout import LayerRef, Translation, to_layout

__all__ = [
    "translate",
    "clear_memory_cache",
    "load_onnx",
    "to_layout",
    "Translation",
    "LayerRef",
    "TranslationReport",
    "TranslationError",
    "TranslationInputError",
    "TranslationOptionError",
    "TranslationMismatchError",
    "TranslationUnsupportedError",
    "UnsupportedModelError",
    "UnsupportedOpError",
    "UnknownLayerError",
    "PrunedLayerError",
    "ConversionError",
    "MissingDependencyError",
    "OnnxLoadError",
    "TorchvisionUnavailableError",
]


from .pipeline import clear_memory_cache, translate
from .report import TranslationReport


def load_onnx(path_or_proto):
    """Load an ONNX model as a differentiable torch module (see :func:`.onnx_to_torch.load_onnx`)."""
    from .onnx_to_torch import load_onnx as _load

    return _load(path_or_proto)


def __getattr__(name):
    if name == "TorchvisionUnavailableError":
        from ._torchvision import TorchvisionUnavailableError

        return TorchvisionUnavailableError
    raise AttributeError(name)
