"""Keras 3 → ONNX export (tf2onnx) that keeps every layer's output addressable.

Method
------
The model is wrapped in a multi-output Functional model that returns, besides
the real output, the output tensor of every layer.  This matters because the
optimisers of grappler/tf2onnx otherwise fuse ``Conv → BatchNorm`` and the
convolution's own output disappears from the graph, so ``translation.layer("conv")``
could not give the activations of that layer.  Each extra output is traced
back through the ``Transpose`` nodes that tf2onnx inserted for the
NHWC→NCHW conversion to the value on the main path, then the extra outputs
are removed, pairs of inverse ``Transpose`` nodes are cancelled and dead
nodes pruned.  The node producing a layer's value is renamed to the layer's
name, so the onnx2torch module has the Keras layer's name.

Memory: tf2onnx freezes the variables into ``Const`` nodes and copies the
GraphDef several times (grappler, import, its own graph, protobuf).  For
large models use ``weights_as_inputs=True`` (see :func:`keras_to_onnx`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np

from . import onnx_utils as ou
from ..core.arrays import to_numpy

MAIN_OUTPUT = "output"
_LAYER_PREFIX = "crosslens_layer_"


def _functional_layer_outputs(model):
    outs = []
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            o = layer.output
        except Exception:  # shared layer / never called / subclassed
            continue
        if isinstance(o, (list, tuple, dict)):
            continue
        outs.append((layer.name, o))
    return outs


def keras_to_onnx(model, example, *, opset: int = 17, weights_as_inputs: bool = False):
    """Export a Keras model (TensorFlow backend) to ONNX for a PyTorch consumer.

    The ONNX graph takes NCHW input for rank-4 examples (``inputs_as_nchw``)
    and returns NCHW for rank-4 outputs.

    Returns ``(model_proto, layer_values, info)``; ``layer_values[layer] =
    (onnx_value, perm)`` with ``onnx_value = transpose(keras_activation, perm)``
    (``perm`` ``None`` for identity).
    """
    import keras

    from ._deps import require

    require("tf2onnx", "Keras → ONNX export")
    import tensorflow as tf
    import tf2onnx

    if keras.backend.backend() != "tensorflow":
        from .errors import TranslationUnsupportedError

        raise TranslationUnsupportedError(
            f"Keras → PyTorch translation needs the TensorFlow Keras backend (tf2onnx), but the "
            f"current backend is {keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before "
            "importing keras, or explain the model with an implementation for Keras"
        )
    t0 = time.perf_counter()
    example = np.asarray(example)
    rank = example.ndim
    in_name = "input"
    spec = (tf.TensorSpec((None,) + tuple(example.shape[1:]), tf.float32, name=in_name),)

    layer_outs = []
    if getattr(model, "inputs", None) and len(model.inputs) == 1 and len(model.outputs) == 1:
        layer_outs = _functional_layer_outputs(model)
    out_rank = None
    if layer_outs:
        outs = {MAIN_OUTPUT: model.outputs[0]}
        names = {}
        for i, (lname, t) in enumerate(layer_outs):
            key = f"{_LAYER_PREFIX}{i}"
            outs[key] = t
            names[key] = lname
        wrapper = keras.Model(model.inputs, outs, name=model.name)
        out_rank = len(model.outputs[0].shape)
    else:
        wrapper, names = None, {}

    if weights_as_inputs:
        proto = _export_weights_as_inputs(model, wrapper, spec, opset, rank, out_rank)
    else:
        if wrapper is not None:

            @tf.function
            def fn(x):
                return wrapper(x, training=False)

        else:

            @tf.function
            def fn(x):
                return {MAIN_OUTPUT: model(x, training=False)}

            out_rank = len(model(example[:1], training=False).shape)
        with _no_catch_errors():
            proto, _ = tf2onnx.convert.from_function(
                fn,
                input_signature=spec,
                opset=opset,
                inputs_as_nchw=[in_name] if rank == 4 else None,
                outputs_as_nchw=[MAIN_OUTPUT] if out_rank == 4 else None,
            )
    t_export = time.perf_counter() - t0
    layer_values = _postprocess(proto, names)
    if not names:
        layer_values = _scope_mapping(proto, model)
    info = {
        "export_method": "tf2onnx.from_function" + (" (weights as inputs)" if weights_as_inputs else ""),
        "export_seconds": t_export,
        "input_layout": "NCHW" if rank == 4 else None,
    }
    return proto, layer_values, info


@contextlib.contextmanager
def _no_catch_errors():
    """tf2onnx deep-copies the whole graph (weights included) before every optimiser pass unless
    ``TF2ONNX_CATCH_ERRORS`` is set (tf2onnx 1.17 compares the variable's *name*, so any value turns
    the copies off).  Set it only for the duration of our call."""
    key = "TF2ONNX_CATCH_ERRORS"
    old = os.environ.get(key)
    os.environ[key] = "false"
    # tf2onnx logs rewriters it skips as errors ("rewriter ...: exception ..."): noise for a
    # user, since a real failure raises and crosslens reports it naming the layer
    log = logging.getLogger("tf2onnx")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _postprocess(proto, names):
    g = proto.graph
    layer_values = {}
    for key, lname in names.items():
        base, perm = ou.trace_back(g, key)
        # perm maps base -> keras value; we store keras -> base
        inv = None
        if perm is not None and perm != tuple(range(len(perm))):
            inv = tuple(int(i) for i in np.argsort(perm))
        layer_values[lname] = (base, inv)
    keep = [o for o in g.output if not o.name.startswith(_LAYER_PREFIX)]
    del g.output[:]
    g.output.extend(keep)
    ou.prune_dead(g)
    ou.cancel_transposes(g)
    ou.prune_dead(g)
    prod = ou.producers(g)
    graph_inputs = {i.name for i in g.input}
    # rename producing nodes after the layers (last layer wins for shared values)
    desired = {}  # producer node index -> layer name
    index = {o: k for k, n in enumerate(g.node) for o in n.output if o}
    for lname, (value, _) in layer_values.items():
        if value in index:
            desired[index[value]] = lname.replace(".", "/")
    taken = set(desired.values())
    for k, n in enumerate(g.node):
        if k in desired:
            n.name = desired[k]
        elif n.name in taken:
            n.name = n.name + "_"
    ou.uniquify_node_names(g)
    prod = ou.producers(g)
    result = {}
    for lname, (value, perm) in layer_values.items():
        if value in prod:
            result[lname] = (value, perm)
        elif value in graph_inputs:
            result[lname] = (value, perm)
        else:
            result[lname] = (None, None)  # pruned: does not influence the output
    return result


def _scope_mapping(proto, model):
    """Best effort for subclassed models: last node whose name scope mentions the layer."""
    result = {}
    layers = [lay.name for lay in getattr(model, "layers", [])]
    for n in proto.graph.node:
        parts = n.name.split("/")
        for lname in layers:
            if any(p == lname or p == lname + "_1" for p in parts[:-1]):
                result[lname] = (n.output[0], None)
    return result


def _export_weights_as_inputs(model, wrapper, spec, opset, rank, out_rank):
    """Low-memory export: variables become function arguments, re-attached as initializers.

    ``model.stateless_call`` makes the traced graph read the weights from its
    arguments, so tf2onnx never freezes hundreds of MB of constants (the
    freezing and the GraphDef copies are what costs 18+ GB for VGG16).  After
    the conversion the weight inputs are turned into initializers, and the
    transposes tf2onnx put on them (HWIO→OIHW, ...) are folded with numpy.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    target = wrapper if wrapper is not None else model
    tvars = list(target.trainable_variables)
    ntvars = list(target.non_trainable_variables)
    all_vars = tvars + ntvars
    wnames = [f"crosslens_w{i}" for i in range(len(all_vars))]
    wspecs = [tf.TensorSpec(v.shape, v.dtype, name=n) for v, n in zip(all_vars, wnames)]
    nt = len(tvars)

    def fn(x, *ws):
        out, _ = target.stateless_call(list(ws[:nt]), list(ws[nt:]), x, training=False)
        if not isinstance(out, dict):
            out = {MAIN_OUTPUT: out}
        return out

    sig = tuple(spec) + tuple(wspecs)
    tfn = tf.function(fn, input_signature=sig)
    with _no_catch_errors():
        proto, _ = tf2onnx.convert.from_function(
            tfn,
            input_signature=sig,
            opset=opset,
            inputs_as_nchw=[spec[0].name] if rank == 4 else None,
            outputs_as_nchw=[MAIN_OUTPUT] if out_rank == 4 else None,
        )
    g = proto.graph
    values = {n: to_numpy(v) for n, v in zip(wnames, all_vars)}
    keep_inputs = [i for i in g.input if i.name not in values]
    present = {i.name for i in g.input}
    del g.input[:]
    g.input.extend(keep_inputs)
    for name, arr in values.items():
        if name in present:
            g.initializer.append(onnx.numpy_helper.from_array(arr, name))
    del values
    fold_initializer_ops(proto)
    # tf2onnx could not push its NHWC<->NCHW transposes through the BN arithmetic while the weights
    # were graph inputs: run its transpose optimiser again now that they are constants.  Only the
    # cheap passes: the full default list (const folding, duplicate merging) costs ~2 GB more on ResNet50.
    from tf2onnx import optimizer as tf2onnx_optimizer
    from tf2onnx.graph import GraphUtil

    wanted = ("optimize_transpose", "remove_identity", "remove_back_to_back")
    passes = {k: v for k, v in tf2onnx_optimizer._get_optimizers().items() if k in wanted}
    # hide the large initializers (conv / dense kernels) from tf2onnx as plain graph inputs: its
    # optimiser only needs the small per-channel constants to push transposes through BN arithmetic,
    # and handling 500 MB of constants costs it ~6 GB (VGG16)
    g = proto.graph
    big = [init for init in g.initializer if _nbytes(init) > _BIG]
    hidden = {}
    for init in big:
        t = onnx.TensorProto()
        t.CopyFrom(init)
        hidden[init.name] = t
        g.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    keep = [init for init in g.initializer if init.name not in hidden]
    del g.initializer[:]
    g.initializer.extend(keep)
    del keep, big
    kw = GraphUtil.get_onnx_model_properties(proto)
    graph = GraphUtil.create_graph_from_onnx_model(proto)
    doc, gname = proto.graph.doc_string, proto.graph.name
    del proto, g
    graph = tf2onnx_optimizer.optimize_graph(graph, False, optimizers=passes)
    proto = graph.make_model(doc, graph_name=gname, **kw)
    del graph
    g = proto.graph
    rest = [i for i in g.input if i.name not in hidden]
    del g.input[:]
    g.input.extend(rest)
    g.initializer.extend(hidden.values())
    del hidden
    fold_initializer_ops(proto)
    return proto


_BIG = 1 << 16  # bytes


def _nbytes(init) -> int:
    n = 1
    for d in init.dims:
        n *= d
    return n * 4


_NO_FOLD = {"Conv", "ConvTranspose", "MatMul", "Gemm", "If", "Loop", "Scan"}


def fold_initializer_ops(proto):
    """Replace every node whose inputs are all initializers by its value (``onnx.reference``)."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = proto.graph
    opset = ou.opset(proto)
    values = {i.name: None for i in g.initializer}  # lazily converted
    inits = {i.name: i for i in g.initializer}
    new_nodes = []
    new_inits = []
    for n in g.node:
        ins = [i for i in n.input if i]
        if n.op_type in _NO_FOLD or n.domain not in ("", "ai.onnx") or not all(i in values for i in ins):
            new_nodes.append(n)
            continue
        arrs = []
        for i in ins:
            if values[i] is None:
                values[i] = numpy_helper.to_array(inits[i])
            arrs.append(values[i])
        names = [f"i{k}" for k in range(len(arrs))]
        pos = iter(names)
        node = helper.make_node(
            n.op_type,
            [next(pos) if i else "" for i in n.input],
            [f"o{k}" for k in range(len(n.output))],
            **{a.name: helper.get_attribute_value(a) for a in n.attribute},
        )
        vin = [
            helper.make_tensor_value_info(nm, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for nm, a in zip(names, arrs)
        ]
        vout = [helper.make_tensor_value_info(f"o{k}", 0, None) for k in range(len(n.output))]
        m = helper.make_model(helper.make_graph([node], "f", vin, vout), opset_imports=[helper.make_opsetid("", opset)])
        try:
            res = ReferenceEvaluator(m).run(None, dict(zip(names, arrs)))
        except Exception:
            new_nodes.append(n)
            continue
        for name, r in zip(n.output, res):
            if name:
                r = np.asarray(r)
                values[name] = r
                new_inits.append(numpy_helper.from_array(r, name))
                inits[name] = new_inits[-1]
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    ou.prune_dead(g)
