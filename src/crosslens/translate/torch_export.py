"""PyTorch → ONNX export keeping module boundaries visible.

``torch.onnx.export(..., dynamo=True, optimize=False)``: with ``optimize=True``
onnxscript's rewriter fuses ``Conv → BatchNorm`` (the conv module's output then
no longer exists), so we keep the raw graph; the Keras converter folds the
constant/shape sub-graphs itself.  The batch dimension is exported as dynamic
(``torch.export.Dim``), which needs an example with batch ≥ 2: a batch-1
example is repeated.  If the dynamo exporter fails (data-dependent control
flow, unsupported ops), the TorchScript exporter (``dynamo=False``) is tried.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings


def torch_to_onnx(model, example, *, opset: int = 18):
    """Return ``(model_proto, info)``.  ``model`` must already be in eval mode."""
    import torch

    from ._deps import require

    require("onnx", "PyTorch → ONNX export")
    require("onnxscript", "PyTorch → ONNX export")

    x = torch.as_tensor(example, dtype=torch.float32)
    if x.shape[0] < 2:
        x = torch.cat([x, x], 0)
    t0 = time.perf_counter()
    sink = io.StringIO()
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        return _export(model, x, opset, sink, t0)
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)


def _export(model, x, opset, sink, t0):
    import torch

    errors = []  # one line per failed exporter, for the report
    failed = []  # (exporter, exception)
    proto = None
    method = None
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        try:
            batch = torch.export.Dim("batch")
            prog = torch.onnx.export(
                model,
                (x,),
                dynamo=True,
                dynamic_shapes=({0: batch},),
                optimize=False,
                opset_version=opset,
                verbose=False,
                external_data=False,
            )
            proto = prog.model_proto
            method = f"torch.onnx.export(dynamo=True, optimize=False, opset={opset})"
        except Exception as exc:  # pragma: no cover - depends on the model
            from .locate import cause_of

            failed.append(("dynamo exporter", exc))
            errors.append(f"dynamo exporter: {cause_of(exc)}")
        if proto is None:
            buf = io.BytesIO()
            try:
                torch.onnx.export(
                    model,
                    (x,),
                    buf,
                    dynamo=False,
                    input_names=["input"],
                    output_names=["output"],
                    dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                    opset_version=min(opset, 17),
                    do_constant_folding=True,
                )
                import onnx

                proto = onnx.load_from_string(buf.getvalue())
                method = f"torch.onnx.export(dynamo=False, opset={min(opset, 17)})"
            except Exception as exc:
                from .locate import failure

                failed.append(("TorchScript exporter", exc))
                raise failure(failed, model=model, source="torch", target="keras", stage="export",
                              what="the PyTorch → ONNX export") from exc
    info = {"export_method": method, "export_seconds": time.perf_counter() - t0, "export_errors": errors}
    return proto, info
