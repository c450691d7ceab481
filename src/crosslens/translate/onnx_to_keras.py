"""ONNX → Keras 3 converter for the op set real CNNs use.

Why our own: ``onnx2keras`` 0.0.25 does build Keras 3 models for simple
graphs, but (a) it emits ``Lambda`` layers (TF-only code; a ``.keras`` file
of the result cannot be reloaded, which our cache needs), (b) it fails on
the un-optimised graphs of ``torch.onnx.export(dynamo=True)`` (dynamic batch
``Shape``/``Concat``/``Reshape`` chains, ``CastLike``), and (c) its package
metadata requires ``tensorflow``, which pip installs next to
``tensorflow-cpu``.  See notes/translate.md.

Design
------
* The result is a Keras Functional model built from stock layers where they
  exist (Conv2D, DepthwiseConv2D, Dense, BatchNormalization, ReLU, pooling,
  Add/Multiply/Concatenate, Reshape, Permute, Softmax, ...) and from the
  small serialisable layers in :mod:`crosslens.translate.keras_layers`.
* Layout: every symbolic value carries ``perm`` with
  ``stored = transpose(logical_onnx_value, perm)``.  Rank-4 graph inputs are
  stored NHWC (``perm=(0, 2, 3, 1)``), spatial ops work in NHWC, and
  ``Transpose`` nodes are *lazy* (they only change ``perm``).  A ``Permute``
  layer is inserted only where an op needs a particular order (``Flatten``,
  ``Reshape`` of spatial data, ``Gemm``).  Rank-4 graph outputs are returned
  NHWC, everything else in ONNX order.
* Constant sub-graphs (``Constant``, ``CastLike``, the dynamic-batch shape
  arithmetic ``Shape → Gather → Concat → Reshape``) are folded with numpy;
  the unknown batch size is represented by :data:`DYN`.
* Anything else raises :class:`~crosslens.translate.errors.UnsupportedOpError`
  naming the op type and the node name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import UnsupportedOpError

CONVERTER_NAME = "crosslens.onnx_to_keras"

NHWC = (0, 2, 3, 1)


class _Dyn:
    """Unknown (batch) dimension in folded shape arithmetic."""

    def __repr__(self):
        return "DYN"

    def _op(self, *_):
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _op
    __floordiv__ = __rfloordiv__ = __truediv__ = __rtruediv__ = __mod__ = _op

    def __int__(self):
        raise TypeError("dynamic dimension has no static value")


DYN = _Dyn()


@dataclass
class KVal:
    """A symbolic Keras tensor plus the permutation from ONNX order to stored order."""

    tensor: object
    perm: tuple
    layer: str  # name of the Keras layer that produced ``tensor``

    @property
    def rank(self):
        return len(self.perm)

    def logical_shape(self):
        stored = tuple(self.tensor.shape)
        shape = [None] * len(stored)
        for j, ax in enumerate(self.perm):
            shape[ax] = stored[j]
        return shape


def _inv(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _sanitize(name: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_.\-:]", "_", name)
    return name if name.strip("_") else "node"


def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _is_const(v):
    return isinstance(v, np.ndarray)


def _has_dyn(a: np.ndarray) -> bool:
    return a.dtype == object and any(x is DYN for x in a.ravel())


class _Converter:
    def __init__(self, model_proto, layer_names=None, name="translated"):
        import keras

        from . import keras_layers

        self.keras = keras
        self.L = keras_layers
        self.model = model_proto
        self.graph = model_proto.graph
        self.layer_names = dict(layer_names or {})
        self.name = _sanitize(name)
        self.values: dict[str, object] = {}
        self.used_names: set[str] = set()
        self.node = None
        self.opset = {o.domain: o.version for o in model_proto.opset_import}.get("", 13)

    # ------------------------------------------------------------------ helpers
    def unsupported(self, detail="", cause=None):
        raise UnsupportedOpError(self.node.op_type, self.node.name, CONVERTER_NAME, detail) from cause

    def uname(self, base: str) -> str:
        base = _sanitize(base)
        name, i = base, 1
        while name in self.used_names:
            i += 1
            name = f"{base}_{i}"
        self.used_names.add(name)
        return name

    def lname(self, suffix: str = "") -> str:
        base = self.layer_names.get(self.node.name) or self.node.name or self.node.op_type
        return self.uname(base + suffix)

    def get(self, name):
        if name == "":
            return None
        try:
            return self.values[name]
        except KeyError:
            raise UnsupportedOpError(self.node.op_type, self.node.name, CONVERTER_NAME, f"input {name!r} not found")

    def const(self, name, what="input"):
        v = self.get(name)
        if not _is_const(v):
            self.unsupported(f"{what} {name!r} must be a constant")
        return v

    def apply(self, layer, *inputs):
        out = layer(inputs[0] if len(inputs) == 1 else list(inputs))
        return out, layer.name

    def to_perm(self, v: KVal, perm) -> KVal:
        perm = tuple(perm)
        if v.perm == perm:
            return v
        q = tuple(v.perm.index(p) for p in perm)
        if q[0] != 0:
            self.unsupported("cannot move the batch axis")
        layer = self.keras.layers.Permute(tuple(i for i in q[1:]), name=self.lname("_permute"))
        t, n = self.apply(layer, v.tensor)
        return KVal(t, perm, n)

    def identity_perm(self, v: KVal) -> KVal:
        return self.to_perm(v, tuple(range(v.rank)))

    def stored_const(self, c: np.ndarray, rank: int, perm) -> np.ndarray:
        c = np.asarray(c, dtype=np.float32)
        if c.ndim > rank:
            self.unsupported("constant of higher rank than tensor")
        c = c.reshape((1,) * (rank - c.ndim) + c.shape)
        return np.transpose(c, perm)

    # ----------------------------------------------------------------- driver
    def run(self):
        import onnx

        keras = self.keras
        init_names = {i.name for i in self.graph.initializer}
        for init in self.graph.initializer:
            self.values[init.name] = onnx.numpy_helper.to_array(init)
        inputs = []
        for inp in self.graph.input:
            if inp.name in init_names:
                continue
            dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
            rank = len(dims)
            perm = NHWC if rank == 4 else tuple(range(rank))
            stored = [dims[p] for p in perm]
            name = self.uname(inp.name)
            t = keras.Input(shape=tuple(stored[1:]), batch_size=None, name=name, dtype="float32")
            inputs.append(t)
            self.values[inp.name] = KVal(t, perm, name)
        for node in self.graph.node:
            self.node = node
            try:
                outs = self.convert_node(node)
            except UnsupportedOpError:
                raise
            except Exception as exc:  # a Keras layer rejected the arguments: still name the node
                self.unsupported(f"{type(exc).__name__}: {exc}", cause=exc)
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            for name, val in zip(node.output, outs):
                if name:
                    self.values[name] = val
        outputs = []
        for out in self.graph.output:
            v = self.values[out.name]
            if _is_const(v):
                raise UnsupportedOpError("Output", out.name, CONVERTER_NAME, "graph output is a constant")
            if v.rank == 4:
                self.node = type("N", (), {"name": out.name, "op_type": "Output"})()
                v = self.to_perm(v, NHWC)
                self.values[out.name] = v
            outputs.append(v.tensor)
        model = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs, name=self.name
        )
        return model

    def convert_node(self, node):
        fn = getattr(self, "op_" + node.op_type, None)
        if node.domain not in ("", "ai.onnx"):
            self.unsupported(f"custom domain {node.domain!r}")
        ins = [self.get(n) for n in node.input]
        if ins and all(v is None or _is_const(v) for v in ins) and node.op_type not in ("Shape",):
            return self.fold(node, ins)
        if not ins and node.op_type == "Constant":
            return self.fold(node, ins)
        if fn is None:
            self.unsupported()
        return fn(node, ins, _attrs(node))

    # ------------------------------------------------------------ const fold
    def fold(self, node, ins):
        a = _attrs(node)
        op = node.op_type
        try:
            if op == "Constant":
                import onnx

                for key in ("value",):
                    if key in a:
                        return onnx.numpy_helper.to_array(a[key])
                if "value_float" in a:
                    return np.array(a["value_float"], np.float32)
                if "value_int" in a:
                    return np.array(a["value_int"], np.int64)
                if "value_floats" in a:
                    return np.array(a["value_floats"], np.float32)
                if "value_ints" in a:
                    return np.array(a["value_ints"], np.int64)
            if op in ("Identity", "Dropout"):
                return ins[0] if op == "Identity" else [ins[0]]
            if op == "Cast":
                return ins[0] if _has_dyn(ins[0]) else ins[0].astype(_onnx_dtype(a["to"]))
            if op == "CastLike":
                return ins[0] if _has_dyn(ins[0]) else ins[0].astype(ins[1].dtype)
            if op == "Gather":
                return np.take(ins[0], ins[1].astype(np.int64), axis=a.get("axis", 0))
            if op == "Concat":
                arrs = [np.asarray(x) for x in ins]
                if any(x.dtype == object for x in arrs):
                    arrs = [x.astype(object) for x in arrs]
                return np.concatenate(arrs, axis=a["axis"])
            if op == "Unsqueeze":
                axes = a["axes"] if "axes" in a else list(ins[1])
                out = ins[0]
                for ax in sorted(int(x) % (out.ndim + len(axes)) for x in axes):
                    out = np.expand_dims(out, ax)
                return out
            if op == "Squeeze":
                axes = a.get("axes") if "axes" in a else (list(ins[1]) if len(ins) > 1 and ins[1] is not None else None)
                return np.squeeze(ins[0], axis=None if axes is None else tuple(int(x) for x in axes))
            if op == "Reshape" and not _has_dyn(ins[1]):
                shape = [int(s) for s in ins[1]]
                shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
                return ins[0].reshape(shape)
            if op == "Transpose":
                return np.transpose(ins[0], a.get("perm"))
            if op in ("Add", "Sub", "Mul", "Div") and (_has_dyn(ins[0]) or _has_dyn(ins[1])):
                f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.floor_divide}[op]
                return f(ins[0].astype(object), ins[1].astype(object))
            if op == "Slice" and _has_dyn(ins[0]):
                starts, ends = ins[1], ins[2]
                axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
                steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
                sl = [slice(None)] * ins[0].ndim
                for s, e, ax, st in zip(starts, ends, axes, steps):
                    sl[int(ax)] = slice(int(s), int(min(e, 2**62)) if e < 2**62 else None, int(st))
                return ins[0][tuple(sl)]
        except UnsupportedOpError:
            raise
        except Exception as exc:  # pragma: no cover - fall through to the reference evaluator
            err = exc
        else:
            err = None
        if any(_has_dyn(x) for x in ins if x is not None):
            self.unsupported("shape arithmetic with the dynamic batch size" + (f" ({err})" if err else ""))
        return self._reference_eval(node, ins)

    def _reference_eval(self, node, ins):
        import onnx
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        names = [f"i{k}" for k in range(len(ins))]
        inputs = [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for n, v in zip(names, ins)
            if v is not None
        ]
        outs = [helper.make_tensor_value_info(f"o{k}", onnx.TensorProto.UNDEFINED, None) for k in range(len(node.output))]
        n2 = helper.make_node(
            node.op_type,
            [n if v is not None else "" for n, v in zip(names, ins)],
            [o.name for o in outs],
            **_attrs(node),
        )
        g = helper.make_graph([n2], "fold", inputs, outs)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        try:
            res = ReferenceEvaluator(m).run(None, {n: v for n, v in zip(names, ins) if v is not None})
        except Exception as exc:
            self.unsupported(f"constant folding failed: {exc}")
        return [np.asarray(r) for r in res]

    # ------------------------------------------------------------------- ops
    def op_Identity(self, node, ins, a):
        return ins[0]

    def op_Dropout(self, node, ins, a):
        return [ins[0]]

    def op_Cast(self, node, ins, a):
        if _onnx_dtype(a["to"]) not in (np.float32, np.float64, np.float16):
            self.unsupported("cast of a float tensor to a non-float type")
        return ins[0]

    def op_CastLike(self, node, ins, a):
        return ins[0]

    def op_Shape(self, node, ins, a):
        v = ins[0]
        shape = v.logical_shape() if isinstance(v, KVal) else list(v.shape)
        arr = np.array([DYN if d is None else int(d) for d in shape], dtype=object)
        start, end = a.get("start", 0), a.get("end", None)
        arr = arr[start:end]
        if not _has_dyn(arr):
            arr = arr.astype(np.int64)
        return arr

    # elementwise unary -------------------------------------------------------
    def _unary(self, v: KVal, fn, alpha=0.0, beta=0.0, layer=None):
        layer = layer or self.L.Unary(fn, alpha=alpha, beta=beta, name=self.lname())
        t, n = self.apply(layer, v.tensor)
        return KVal(t, v.perm, n)

    def op_Relu(self, node, ins, a):
        return self._unary(ins[0], None, layer=self.keras.layers.ReLU(name=self.lname()))

    def op_LeakyRelu(self, node, ins, a):
        return self._unary(ins[0], "leaky_relu", alpha=a.get("alpha", 0.01))

    def op_Sigmoid(self, node, ins, a):
        return self._unary(ins[0], None, layer=self.keras.layers.Activation("sigmoid", name=self.lname()))

    def op_Tanh(self, node, ins, a):
        return self._unary(ins[0], None, layer=self.keras.layers.Activation("tanh", name=self.lname()))

    def op_HardSigmoid(self, node, ins, a):
        return self._unary(ins[0], "hard_sigmoid", alpha=a.get("alpha", 0.2), beta=a.get("beta", 0.5))

    def op_HardSwish(self, node, ins, a):
        return self._unary(ins[0], "hard_swish")

    def op_Gelu(self, node, ins, a):
        return self._unary(ins[0], "gelu_tanh" if a.get("approximate", "none") == "tanh" else "gelu")

    def op_Elu(self, node, ins, a):
        if a.get("alpha", 1.0) != 1.0:
            self.unsupported("Elu with alpha != 1")
        return self._unary(ins[0], "elu")

    def _simple_unary(name):
        def op(self, node, ins, a):
            return self._unary(ins[0], name)

        return op

    op_Exp = _simple_unary("exp")
    op_Log = _simple_unary("log")
    op_Sqrt = _simple_unary("sqrt")
    op_Abs = _simple_unary("abs")
    op_Neg = _simple_unary("neg")
    op_Erf = _simple_unary("erf")
    op_Reciprocal = _simple_unary("reciprocal")
    op_Softplus = _simple_unary("softplus")
    op_Softsign = _simple_unary("softsign")
    op_Selu = _simple_unary("selu")
    op_Floor = _simple_unary("floor")
    op_Ceil = _simple_unary("ceil")
    op_Sin = _simple_unary("sin")
    op_Cos = _simple_unary("cos")

    def op_Clip(self, node, ins, a):
        lo = a.get("min")
        hi = a.get("max")
        if len(ins) > 1 and ins[1] is not None:
            lo = float(self.const(node.input[1], "min"))
        if len(ins) > 2 and ins[2] is not None:
            hi = float(self.const(node.input[2], "max"))
        if lo == 0.0:
            return self._unary(ins[0], None, layer=self.keras.layers.ReLU(max_value=hi, name=self.lname()))
        return self._unary(ins[0], None, layer=self.L.Clip(lo, hi, name=self.lname()))

    def op_Softmax(self, node, ins, a):
        v = ins[0]
        axis = a.get("axis", -1 if self.opset >= 13 else 1) % v.rank
        if self.opset < 13 and axis != v.rank - 1:
            self.unsupported("Softmax (opset < 13) over several axes")
        layer = self.keras.layers.Softmax(axis=v.perm.index(axis), name=self.lname())
        t, n = self.apply(layer, v.tensor)
        return KVal(t, v.perm, n)

    # elementwise binary ------------------------------------------------------
    def _binary(self, op, a_, b_):
        keras = self.keras
        if isinstance(a_, KVal) and isinstance(b_, KVal):
            if a_.rank != b_.rank:
                self.unsupported("broadcast between tensors of different rank")
            b_ = self.to_perm(b_, a_.perm)
            if op == "add":
                layer = keras.layers.Add(name=self.lname())
            elif op == "mul":
                layer = keras.layers.Multiply(name=self.lname())
            elif op == "sub":
                layer = keras.layers.Subtract(name=self.lname())
            else:
                layer = self.L.Binary(op, name=self.lname())
            t, n = self.apply(layer, a_.tensor, b_.tensor)
            return KVal(t, a_.perm, n)
        const_first = not isinstance(a_, KVal)
        v, c = (b_, a_) if const_first else (a_, b_)
        if _has_dyn(np.asarray(c)):
            self.unsupported("arithmetic between a tensor and the dynamic batch size")
        if c.ndim > v.rank:
            self.unsupported("constant broadcast raises the rank")
        sc = self.stored_const(c, v.rank, v.perm)
        # strip leading broadcast dims (keeps the batch axis broadcastable)
        while sc.ndim > 0 and sc.shape[0] == 1 and sc.ndim > 1:
            sc = sc[0]
        if sc.ndim == v.rank:  # constant varies along the batch axis
            self.unsupported("constant with a batch dimension")
        layer = self.L.ConstBinary(op, sc.shape, const_first=const_first, value=sc, name=self.lname())
        t, n = self.apply(layer, v.tensor)
        return KVal(t, v.perm, n)

    def op_Add(self, node, ins, a):
        return self._binary("add", *ins)

    def op_Sub(self, node, ins, a):
        return self._binary("sub", *ins)

    def op_Mul(self, node, ins, a):
        return self._binary("mul", *ins)

    def op_Div(self, node, ins, a):
        return self._binary("div", *ins)

    def op_Pow(self, node, ins, a):
        return self._binary("pow", *ins)

    def op_Max(self, node, ins, a):
        if len(ins) != 2:
            self.unsupported("Max with != 2 inputs")
        return self._binary("max", *ins)

    def op_Min(self, node, ins, a):
        if len(ins) != 2:
            self.unsupported("Min with != 2 inputs")
        return self._binary("min", *ins)

    def op_Sum(self, node, ins, a):
        out = ins[0]
        for other in ins[1:]:
            out = self._binary("add", out, other)
        return out

    # conv / dense ------------------------------------------------------------
    def _spatial_pads(self, v: KVal, a, kernel, strides, dilations):
        nsp = len(kernel)
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            shape = v.logical_shape()[2:]
            pads_b, pads_e = [], []
            for d, k, s, dl in zip(shape, kernel, strides, dilations):
                if d is None:
                    self.unsupported("auto_pad SAME with unknown spatial size")
                out = -(-d // s)
                total = max(0, (out - 1) * s + (k - 1) * dl + 1 - d)
                small, big = total // 2, total - total // 2
                pads_b.append(small if auto == "SAME_UPPER" else big)
                pads_e.append(big if auto == "SAME_UPPER" else small)
            return pads_b, pads_e
        if auto == "VALID":
            return [0] * nsp, [0] * nsp
        pads = list(a.get("pads", [0] * (2 * nsp)))
        return pads[:nsp], pads[nsp:]

    def op_Conv(self, node, ins, a):
        keras = self.keras
        x = ins[0]
        if not isinstance(x, KVal):
            self.unsupported("constant data input")
        w = self.const(node.input[1], "weight").astype(np.float32)
        b = ins[2] if len(ins) > 2 else None
        if b is not None:
            b = self.const(node.input[2], "bias").astype(np.float32)
        if w.ndim != 4:
            self.unsupported(f"{w.ndim - 2}-D convolution (only 2-D is supported)")
        x = self.to_perm(x, NHWC)
        kernel = list(w.shape[2:])
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        group = a.get("group", 1)
        pb, pe = self._spatial_pads(x, a, kernel, strides, dil)
        padding = "valid"
        t = x.tensor
        if any(pb) or any(pe):
            same = all(s == 1 for s in strides) and all(
                p0 == p1 == (k - 1) * d // 2 and (k - 1) * d % 2 == 0 for p0, p1, k, d in zip(pb, pe, kernel, dil)
            )
            if same:
                padding = "same"
            else:
                pad = keras.layers.ZeroPadding2D(((pb[0], pe[0]), (pb[1], pe[1])), name=self.lname("_pad"))
                t = pad(t)
        cin = x.tensor.shape[-1]
        cout = w.shape[0]
        name = self.lname()
        if group == 1:
            layer = keras.layers.Conv2D(
                cout, kernel, strides=strides, padding=padding, dilation_rate=dil, use_bias=b is not None, name=name
            )
            weights = [w.transpose(2, 3, 1, 0)]
        elif group == cin and cout % cin == 0:
            mult = cout // cin
            if any(s > 1 for s in strides) and any(d > 1 for d in dil):
                self.unsupported("depthwise conv with both stride and dilation > 1")
            layer = keras.layers.DepthwiseConv2D(
                kernel,
                strides=strides,
                padding=padding,
                depth_multiplier=mult,
                dilation_rate=dil,
                use_bias=b is not None,
                name=name,
            )
            weights = [w.reshape(cin, mult, *kernel).transpose(2, 3, 0, 1)]
        else:
            layer = keras.layers.Conv2D(
                cout,
                kernel,
                strides=strides,
                padding=padding,
                dilation_rate=dil,
                groups=group,
                use_bias=b is not None,
                name=name,
            )
            weights = [w.transpose(2, 3, 1, 0)]
        out = layer(t)
        layer.set_weights(weights + ([b] if b is not None else []))
        return KVal(out, NHWC, layer.name)

    def op_Gemm(self, node, ins, a):
        x = ins[0]
        if not isinstance(x, KVal) or a.get("transA", 0):
            self.unsupported("Gemm needs a tensor A without transA")
        w = self.const(node.input[1], "B").astype(np.float32)
        if a.get("transB", 0):
            w = w.T
        w = w * a.get("alpha", 1.0)
        b = None
        if len(ins) > 2 and ins[2] is not None:
            b = np.broadcast_to(self.const(node.input[2], "C").astype(np.float32) * a.get("beta", 1.0), (w.shape[1],))
        return self._dense(x, w, b)

    def _dense(self, x: KVal, w, b):
        if x.perm[-1] != x.rank - 1:
            x = self.identity_perm(x)
        layer = self.keras.layers.Dense(w.shape[1], use_bias=b is not None, name=self.lname())
        out = layer(x.tensor)
        layer.set_weights([w] + ([np.array(b, np.float32)] if b is not None else []))
        return KVal(out, x.perm, layer.name)

    def op_MatMul(self, node, ins, a):
        x, w = ins
        if isinstance(x, KVal) and _is_const(w) and w.ndim == 2:
            return self._dense(x, w.astype(np.float32), None)
        if isinstance(x, KVal) and isinstance(w, KVal):
            x, w = self.identity_perm(x), self.identity_perm(w)
            t, n = self.apply(self.L.MatMul(name=self.lname()), x.tensor, w.tensor)
            return KVal(t, x.perm, n)
        self.unsupported("MatMul with a constant left operand or a batched constant")

    def op_BatchNormalization(self, node, ins, a):
        x = ins[0]
        if len(node.output) > 1 and any(node.output[1:]) or a.get("training_mode", 0):
            self.unsupported("BatchNormalization in training mode")
        scale, bias, mean, var = (self.const(n).astype(np.float32) for n in node.input[1:5])
        layer = self.keras.layers.BatchNormalization(
            axis=x.perm.index(1), epsilon=float(a.get("epsilon", 1e-5)), name=self.lname()
        )
        out = layer(x.tensor)
        layer.set_weights([scale, bias, mean, var])
        return KVal(out, x.perm, layer.name)

    # pooling -----------------------------------------------------------------
    def _pool_geometry(self, x: KVal, a):
        kernel = list(a["kernel_shape"])
        if len(kernel) != 2:
            self.unsupported("only 2-D pooling is supported")
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        if any(d != 1 for d in dil):
            self.unsupported("dilated pooling")
        pb, pe = self._spatial_pads(x, a, kernel, strides, dil)
        if a.get("ceil_mode", 0):
            shape = x.logical_shape()[2:]
            for i, (d, k, s) in enumerate(zip(shape, kernel, strides)):
                if d is None:
                    self.unsupported("ceil_mode with unknown spatial size")
                out = -(-(d + pb[i] + pe[i] - k) // s) + 1
                if (out - 1) * s >= d + pb[i]:
                    out -= 1
                pe[i] += max(0, (out - 1) * s + k - (d + pb[i] + pe[i]))
        return kernel, strides, pb, pe

    def op_MaxPool(self, node, ins, a):
        keras = self.keras
        if len(node.output) > 1 and node.output[1]:
            self.unsupported("MaxPool with Indices output")
        x = self.to_perm(ins[0], NHWC)
        kernel, strides, pb, pe = self._pool_geometry(x, a)
        t = x.tensor
        if any(pb) or any(pe):
            pads = [[0, 0], [pb[0], pe[0]], [pb[1], pe[1]], [0, 0]]
            t = self.L.Pad(pads, "constant", value=float("-inf"), name=self.lname("_pad"))(t)
        layer = keras.layers.MaxPooling2D(kernel, strides, padding="valid", name=self.lname())
        return KVal(layer(t), NHWC, layer.name)

    def op_AveragePool(self, node, ins, a):
        keras = self.keras
        x = self.to_perm(ins[0], NHWC)
        kernel, strides, pb, pe = self._pool_geometry(x, a)
        if any(pb) or any(pe):
            layer = self.L.AvgPoolPadded(
                kernel,
                strides,
                [[pb[0], pe[0]], [pb[1], pe[1]]],
                bool(a.get("count_include_pad", 0)),
                name=self.lname(),
            )
        else:
            layer = keras.layers.AveragePooling2D(kernel, strides, padding="valid", name=self.lname())
        return KVal(layer(x.tensor), NHWC, layer.name)

    def op_GlobalAveragePool(self, node, ins, a):
        x = self.to_perm(ins[0], NHWC)
        layer = self.keras.layers.GlobalAveragePooling2D(keepdims=True, name=self.lname())
        return KVal(layer(x.tensor), NHWC, layer.name)

    def op_GlobalMaxPool(self, node, ins, a):
        x = self.to_perm(ins[0], NHWC)
        layer = self.keras.layers.GlobalMaxPooling2D(keepdims=True, name=self.lname())
        return KVal(layer(x.tensor), NHWC, layer.name)

    def _reduce(self, op, node, ins, a):
        x = ins[0]
        axes = a.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = [int(i) for i in self.const(node.input[1], "axes")]
        if axes is None:
            axes = list(range(x.rank))
        axes = [int(ax) % x.rank for ax in axes]
        if 0 in axes:
            self.unsupported("reduction over the batch axis")
        keep = bool(a.get("keepdims", 1))
        stored_axes = sorted(x.perm.index(ax) for ax in axes)
        layer = self.L.Reduce(op, stored_axes, keep, name=self.lname())
        t = layer(x.tensor)
        if keep:
            perm = x.perm
        else:
            remaining = [p for p in x.perm if p not in axes]
            relabel = {ax: i for i, ax in enumerate(sorted(remaining))}
            perm = tuple(relabel[p] for p in remaining)
        return KVal(t, perm, layer.name)

    def op_ReduceMean(self, node, ins, a):
        return self._reduce("mean", node, ins, a)

    def op_ReduceSum(self, node, ins, a):
        return self._reduce("sum", node, ins, a)

    def op_ReduceMax(self, node, ins, a):
        return self._reduce("max", node, ins, a)

    def op_ReduceMin(self, node, ins, a):
        return self._reduce("min", node, ins, a)

    # shape ops ---------------------------------------------------------------
    def op_Transpose(self, node, ins, a):
        x = ins[0]
        t = a.get("perm", list(range(x.rank))[::-1])
        if t[0] != 0:
            self.unsupported("transpose that moves the batch axis")
        inv_t = _inv(t)
        return KVal(x.tensor, tuple(inv_t[p] for p in x.perm), x.layer)

    def _reshape_to(self, x: KVal, target):
        """Reshape keeping the batch axis; ``target`` is the logical shape (batch first, may hold -1/None)."""
        keras = self.keras
        tgt = [int(t) if not (t is DYN or t is None) else None for t in target]
        if tgt[0] not in (None, -1):
            ex = x.logical_shape()[0]
            if ex is not None and ex != tgt[0]:
                self.unsupported("reshape that changes the batch size")
        rest = [-1 if t is None else t for t in tgt[1:]]
        if rest.count(-1) > 1:
            self.unsupported("reshape with several unknown dimensions")
        # fast path: only size-1 axes change and the non-1 axes are stored in ONNX order
        lshape = x.logical_shape()
        non1_in = [i for i, d in enumerate(lshape) if i > 0 and d != 1]
        non1_in_stored = [p for p in x.perm if p in non1_in]
        in_dims = [lshape[i] for i in non1_in]
        out_dims = [d for d in rest if d != 1]
        if not (non1_in_stored == non1_in and in_dims == out_dims and None not in in_dims and -1 not in out_dims):
            x = self.identity_perm(x)
        layer = keras.layers.Reshape(tuple(rest), name=self.lname())
        return KVal(layer(x.tensor), tuple(range(len(tgt))), layer.name)

    def op_Reshape(self, node, ins, a):
        x, shape = ins
        if not _is_const(shape):
            self.unsupported("non-constant target shape")
        shape = list(shape)
        lshape = x.logical_shape()
        shape = [lshape[i] if (not (s is DYN) and int(s) == 0 and not a.get("allowzero", 0)) else s for i, s in enumerate(shape)]
        return self._reshape_to(x, shape)

    def op_Flatten(self, node, ins, a):
        x = ins[0]
        axis = a.get("axis", 1) % max(x.rank, 1)
        if axis != 1:
            self.unsupported("Flatten with axis != 1")
        return self._reshape_to(x, [None, -1])

    def op_Squeeze(self, node, ins, a):
        x = ins[0]
        axes = a.get("axes")
        if axes is None and len(ins) > 1 and ins[1] is not None:
            axes = [int(i) for i in self.const(node.input[1], "axes")]
        lshape = x.logical_shape()
        if axes is None:
            axes = [i for i, d in enumerate(lshape) if d == 1]
        axes = {int(ax) % x.rank for ax in axes}
        target = [None] + [d for i, d in enumerate(lshape) if i > 0 and i not in axes]
        return self._reshape_to(x, target)

    def op_Unsqueeze(self, node, ins, a):
        x = ins[0]
        axes = a.get("axes")
        if axes is None:
            axes = [int(i) for i in self.const(node.input[1], "axes")]
        out_rank = x.rank + len(axes)
        axes = sorted(int(ax) % out_rank for ax in axes)
        shape = list(x.logical_shape())
        for ax in axes:
            shape.insert(ax, 1)
        if 0 in axes:
            self.unsupported("unsqueeze in front of the batch axis")
        return self._reshape_to(x, [None] + shape[1:])

    def op_Concat(self, node, ins, a):
        vals = [v for v in ins]
        if not all(isinstance(v, KVal) for v in vals):
            self.unsupported("concatenation of tensors with constants")
        perm = vals[0].perm
        vals = [self.to_perm(v, perm) for v in vals]
        axis = a["axis"] % vals[0].rank
        if axis == 0:
            self.unsupported("concatenation along the batch axis")
        layer = self.keras.layers.Concatenate(axis=perm.index(axis), name=self.lname())
        return KVal(layer([v.tensor for v in vals]), perm, layer.name)

    def op_Pad(self, node, ins, a):
        x = ins[0]
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if "pads" in a:
            pads = list(a["pads"])
            value = a.get("value", 0.0)
        else:
            pads = [int(p) for p in self.const(node.input[1], "pads")]
            value = 0.0
            if len(ins) > 2 and ins[2] is not None:
                value = float(np.asarray(self.const(node.input[2], "constant_value")).reshape(-1)[0])
        r = x.rank
        axes = list(range(r))
        if len(ins) > 3 and ins[3] is not None:
            axes = [int(ax) % r for ax in self.const(node.input[3], "axes")]
        n = len(axes)
        logical = [[0, 0] for _ in range(r)]
        for k, ax in enumerate(axes):
            logical[ax] = [pads[k], pads[k + n]]
        if any(p < 0 for pair in logical for p in pair):
            self.unsupported("negative pads")
        if logical[0] != [0, 0]:
            self.unsupported("padding of the batch axis")
        stored = [logical[p] for p in x.perm]
        if mode == "constant" and value == 0.0 and r == 4 and x.perm == NHWC and stored[3] == [0, 0]:
            layer = self.keras.layers.ZeroPadding2D((tuple(stored[1]), tuple(stored[2])), name=self.lname())
        elif mode in ("constant", "reflect", "edge"):
            layer = self.L.Pad(stored, mode, value=value, name=self.lname())
        else:
            self.unsupported(f"pad mode {mode!r}")
        return KVal(layer(x.tensor), x.perm, layer.name)

    def op_Slice(self, node, ins, a):
        x = ins[0]
        starts = [int(s) for s in self.const(node.input[1], "starts")]
        ends = [int(e) for e in self.const(node.input[2], "ends")]
        axes = list(range(len(starts)))
        if len(ins) > 3 and ins[3] is not None:
            axes = [int(ax) % x.rank for ax in self.const(node.input[3], "axes")]
        steps = [1] * len(starts)
        if len(ins) > 4 and ins[4] is not None:
            steps = [int(s) for s in self.const(node.input[4], "steps")]
        slices = [[None, None, None] for _ in range(x.rank)]
        big = 2**62
        for s, e, ax, st in zip(starts, ends, axes, steps):
            if ax == 0 and (s != 0 or e < big):
                self.unsupported("slicing of the batch axis")
            slices[x.perm.index(ax)] = [s, None if abs(e) >= big else e, st]
        layer = self.L.Slice(slices, name=self.lname())
        return KVal(layer(x.tensor), x.perm, layer.name)

    def op_Split(self, node, ins, a):
        x = ins[0]
        axis = a.get("axis", 0) % x.rank
        if axis == 0:
            self.unsupported("split along the batch axis")
        size = x.logical_shape()[axis]
        if "split" in a:
            parts = list(a["split"])
        elif len(ins) > 1 and ins[1] is not None:
            parts = [int(p) for p in self.const(node.input[1], "split")]
        else:
            n = a.get("num_outputs", len(node.output))
            parts = [-(-size // n)] * (n - 1)
            parts.append(size - sum(parts))
        outs, start = [], 0
        sax = x.perm.index(axis)
        for k, p in enumerate(parts):
            slices = [[None, None, None] for _ in range(x.rank)]
            slices[sax] = [start, start + p, 1]
            layer = self.L.Slice(slices, name=self.lname(f"_{k}"))
            outs.append(KVal(layer(x.tensor), x.perm, layer.name))
            start += p
        return outs

    def op_SplitToSequence(self, node, ins, a):
        x = ins[0]
        axis = a.get("axis", 0) % x.rank
        size = x.logical_shape()[axis]
        split = ins[1] if len(ins) > 1 else None
        if split is None:
            parts, squeeze = [1] * size, not a.get("keepdims", 1)
        else:
            split = np.asarray(self.const(node.input[1], "split"))
            squeeze = False
            if split.ndim == 0:
                k = int(split)
                parts = [k] * (size // k) + ([size % k] if size % k else [])
            else:
                parts = [int(p) for p in split]
        outs = self.op_Split(node, [x], {"axis": axis, "split": parts})
        if squeeze:
            outs = [self._reshape_to(o, [None] + [d for i, d in enumerate(o.logical_shape()) if i not in (0, axis)]) for o in outs]
        return [outs]

    def op_SequenceAt(self, node, ins, a):
        seq = ins[0]
        if not isinstance(seq, list):
            self.unsupported("input is not a sequence")
        return seq[int(self.const(node.input[1], "position"))]

    def op_Gather(self, node, ins, a):
        x, idx = ins
        if not _is_const(idx):
            self.unsupported("non-constant indices")
        axis = a.get("axis", 0) % x.rank
        if axis == 0:
            self.unsupported("gather along the batch axis")
        sax = x.perm.index(axis)
        layer = self.L.Take(np.asarray(idx).astype(np.int64), sax, name=self.lname())
        t = layer(x.tensor)
        if np.ndim(idx) == 0:
            remaining = [p for p in x.perm if p != axis]
            relabel = {ax: i for i, ax in enumerate(sorted(remaining))}
            return KVal(t, tuple(relabel[p] for p in remaining), layer.name)
        if np.ndim(idx) == 1:
            return KVal(t, x.perm, layer.name)
        self.unsupported("multi-dimensional gather indices")

    def op_Resize(self, node, ins, a):
        x = self.to_perm(ins[0], NHWC)
        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        ctm = a.get("coordinate_transformation_mode", b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        shape = x.logical_shape()
        if len(ins) > 3 and ins[3] is not None and np.size(ins[3]):
            size = [int(s) for s in self.const(node.input[3], "sizes")][2:]
        else:
            scales = [float(s) for s in self.const(node.input[2], "scales")]
            size = [int(np.floor(d * s)) for d, s in zip(shape[2:], scales[2:])]
        if mode == "nearest" and all(s % d == 0 for s, d in zip(size, shape[2:])):
            layer = self.L.Resize(size, "nearest_int", name=self.lname())
        elif mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel"):
            layer = self.L.Resize(size, "bilinear", name=self.lname())
        else:
            self.unsupported(f"Resize mode={mode} coordinate_transformation_mode={ctm}")
        return KVal(layer(x.tensor), NHWC, layer.name)

    def op_Upsample(self, node, ins, a):
        return self.op_Resize(node, [ins[0], None, ins[1]], a)

    def op_LayerNormalization(self, node, ins, a):
        x = ins[0]
        axis = a.get("axis", -1) % x.rank
        if axis != x.rank - 1:
            self.unsupported("LayerNormalization over several axes")
        x = x if x.perm[-1] == x.rank - 1 else self.identity_perm(x)
        scale = self.const(node.input[1], "scale").astype(np.float32)
        bias = self.const(node.input[2], "bias").astype(np.float32) if len(ins) > 2 and ins[2] is not None else None
        layer = self.keras.layers.LayerNormalization(
            axis=-1, epsilon=float(a.get("epsilon", 1e-5)), center=bias is not None, name=self.lname()
        )
        out = layer(x.tensor)
        layer.set_weights([scale] + ([bias] if bias is not None else []))
        return KVal(out, x.perm, layer.name)


def _onnx_dtype(to):
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(to)


def supported_ops() -> list[str]:
    """ONNX op types this converter handles (constant-only nodes of other types are folded)."""
    return sorted(n[3:] for n in dir(_Converter) if n.startswith("op_"))


def onnx_to_keras(model_proto, *, layer_names=None, name="translated"):
    """Convert an ``onnx.ModelProto`` to a Keras Functional model.

    ``layer_names`` optionally maps ONNX node names to the Keras layer names to use.
    Returns ``(keras_model, value_map)`` where ``value_map[onnx_value_name] =
    (keras_layer_name, perm)`` with ``stored = transpose(onnx_value, perm)``.
    """
    conv = _Converter(model_proto, layer_names=layer_names, name=name)
    model = conv.run()
    value_map = {k: (v.layer, v.perm) for k, v in conv.values.items() if isinstance(v, KVal)}
    return model, value_map
