"""The graph view's data for PyTorch (tensors followed through functional operations),
Keras (nested models collapsible) and ONNX models."""
from __future__ import annotations

import numpy as np

from crosslens.backends import get_backend
from crosslens.inspector.graph import model_graph
from reference.builders import build_keras, build_torch


def _parents(graph):
    return {n["id"]: n["parent"] for n in graph["nodes"]}


def test_torch_resnet_edges_follow_the_skip_connection(resnet_spec):
    import torch
    model = build_torch(resnet_spec, dtype=torch.float32)
    graph = model_graph(model, get_backend(model), np.zeros((1, 1, 8, 8), np.float32))
    edges = {tuple(e) for e in graph["edges"]}
    assert ("relu", "block.conv1") in edges
    # the residual add joins the block's input (relu) and bn2 (a module or a function)
    into_add = {a for a, b in edges if b == "block.add"}
    if into_add:
        assert into_add == {"relu", "block.bn2"}
    else:
        assert ("relu", "block.relu_out") in edges and ("block.bn2", "block.relu_out") in edges
    assert _parents(graph)["block.conv1"] == "block"
    node = next(n for n in graph["nodes"] if n["id"] == "block")
    assert node["type"] != "Input" and node["shape"] == [8, 8, 8]
    assert ("fc", "output") in edges


def test_keras_nested_model_is_a_collapsible_block(resnet_spec):
    model = build_keras(resnet_spec, dtype="float32")
    graph = model_graph(model, get_backend(model), np.zeros((1, 8, 8, 1), np.float32))
    parents = _parents(graph)
    assert parents["block/conv1"] == "block" and parents["block"] is None
    edges = {tuple(e) for e in graph["edges"]}
    assert ("relu", "block") in edges and ("block", "gap") in edges
    assert ("block/conv1", "block/bn1") in edges and ("block/add", "block/relu_out") in edges
    assert ("block/relu_out", "block") in edges and ("fc", "output") in edges
    shapes = {n["id"]: n["shape"] for n in graph["nodes"]}
    assert shapes["block/conv1"] == [8, 8, 8] and shapes["fc"] == [10]


def _onnx_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="features.conv",
                              pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="features/relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name=""),
             helper.make_node("MatMul", ["f", "fc"], ["y"], name="head")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 3, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 2])], [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((4, 2)).astype(np.float32), "fc")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    return path


def test_onnx_graph_nodes_and_edges(tmp_path):
    from crosslens.loading import load_model
    path = _onnx_file(tmp_path)
    model = load_model(str(path))
    graph = model_graph(model, get_backend(model), np.zeros((1, 3, 8, 8), np.float32),
                        str(path))
    ids = [n["id"] for n in graph["nodes"]]
    assert ids == ["input", "features/conv", "features/relu", "pool", "Flatten", "head",
                   "output"]
    edges = {tuple(e) for e in graph["edges"]}
    assert {("input", "features/conv"), ("features/conv", "features/relu"),
            ("Flatten", "head"), ("head", "output")} <= edges
    conv = graph["nodes"][1]
    assert conv["type"] == "Conv" and conv["params"] == 4 * 3 * 9 and conv["is_layer"]
    assert conv["shape"] == [4, 8, 8]


def test_an_onnx_file_is_inspected_with_its_own_graph(tmp_path):
    from crosslens.inspector import Inspector
    x = np.random.default_rng(1).uniform(0, 1, (12, 3, 8, 8)).astype(np.float32)
    ins = Inspector(str(_onnx_file(tmp_path)), x, tmp_path / "store", progress=False)
    assert ins.session()["model"]["framework"] == "onnx"
    assert [n["id"] for n in ins.graph()["nodes"]][1:3] == ["features/conv", "features/relu"]
    assert ins.matrix("features/relu")["rows"][0]["size"] == 12


def test_a_subclassed_keras_model_is_chained_in_call_order():
    import keras

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
            self.conv = keras.layers.Conv2D(4, 3, name="conv")  # made after pool, runs first
            self.head = keras.layers.Dense(3, name="head")

        def call(self, x):
            return self.head(self.pool(self.conv(x)))

    model = Net()
    x = np.zeros((1, 8, 8, 1), np.float32)
    model(x)
    graph = model_graph(model, get_backend(model), x)
    assert {tuple(e) for e in graph["edges"]} == {("input", "conv"), ("conv", "pool"),
                                                  ("pool", "head"), ("head", "output")}
