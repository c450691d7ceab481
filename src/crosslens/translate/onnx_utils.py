"""Small ONNX graph utilities (pure ``onnx`` protobuf manipulation)."""

from __future__ import annotations

import collections


def _perm_attr(node):
    for a in node.attribute:
        if a.name == "perm":
            return tuple(a.ints)
    return None


def compose(p_first, p_second):
    """Permutation of ``transpose(transpose(x, p_first), p_second)``."""
    return tuple(p_first[i] for i in p_second)


def producers(graph):
    return {o: n for n in graph.node for o in n.output if o}


def consumers(graph):
    out = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            out[i].append(n)
    return out


def trace_back(graph, value, stop_at=()):
    """Follow ``value`` back through Transpose/Identity nodes.

    Returns ``(base_value, perm)`` such that ``value == transpose(base_value, perm)``.
    """
    prod = producers(graph)
    perm = None
    while value in prod and value not in stop_at:
        n = prod[value]
        if n.op_type == "Transpose":
            p = _perm_attr(n)
            perm = p if perm is None else compose(p, perm)
            value = n.input[0]
        elif n.op_type == "Identity":
            value = n.input[0]
        else:
            break
    return value, perm


def cancel_transposes(graph) -> int:
    """Bypass ``Transpose(Transpose(x, p), q)`` pairs whose composition is the identity."""
    changed = 0
    graph_outputs = {o.name for o in graph.output}
    while True:
        prod = producers(graph)
        rename = {}
        for n in graph.node:
            if n.op_type != "Transpose" or n.output[0] in graph_outputs:
                continue
            src = prod.get(n.input[0])
            if src is None or src.op_type != "Transpose":
                continue
            p = compose(_perm_attr(src), _perm_attr(n))
            if p == tuple(range(len(p))):
                rename[n.output[0]] = src.input[0]
        if not rename:
            return changed
        for n in graph.node:
            for k, i in enumerate(n.input):
                if i in rename:
                    n.input[k] = rename[i]
        changed += len(rename)
        prune_dead(graph)


def prune_dead(graph) -> int:
    """Remove nodes (and unused initializers) that do not contribute to a graph output."""
    needed = {o.name for o in graph.output}
    keep = []
    for n in reversed(list(graph.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    removed = len(graph.node) - len(keep)
    if removed:
        del graph.node[:]
        graph.node.extend(keep)
    used_inits = [i for i in graph.initializer if i.name in needed]
    if len(used_inits) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(used_inits)
    return removed


def uniquify_node_names(graph, reserved=()) -> dict:
    """Give every node a unique, non-empty name without '.' (onnx2torch turns '.' into '/').

    Returns ``{old_name_or_index: new_name}`` for renamed nodes.
    """
    seen = set(reserved)
    renamed = {}
    for idx, n in enumerate(graph.node):
        base = n.name.replace(".", "/") if n.name else n.op_type
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen.add(name)
        if name != n.name:
            renamed[n.name or idx] = name
            n.name = name
    return renamed


def op_counts(model_proto) -> dict:
    c = collections.Counter(n.op_type for n in model_proto.graph.node)
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def opset(model_proto) -> int:
    for o in model_proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return -1


def module_scopes(node) -> list[str] | None:
    """Module paths a node belongs to, outermost first, from exporter metadata or node name.

    dynamo exporter: metadata ``pkg.torch.onnx.name_scopes`` = ``['', 'block', 'block.1', 'op']``;
    TorchScript exporter: node name ``/block/block.1/Conv``.
    """
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                import ast

                scopes = ast.literal_eval(p.value)
            except Exception:
                scopes = None
            if isinstance(scopes, (list, tuple)) and len(scopes) >= 2:
                return [s for s in scopes[1:-1] if s]
            return []
    if node.name.startswith("/"):
        parts = node.name.split("/")
        return [s for s in parts[1:-1] if s]
    return None


def module_outputs(graph) -> dict:
    """``{module_path: value_name}``: the last value produced inside a module and used outside it."""
    nodes = list(graph.node)
    scopes = []
    node_of_input = collections.defaultdict(list)
    for idx, n in enumerate(nodes):
        s = module_scopes(n)
        scopes.append(set(s) if s else set())
        for i in n.input:
            node_of_input[i].append(idx)
    graph_outputs = {o.name for o in graph.output}
    result = {}
    for idx, n in enumerate(nodes):
        mods = scopes[idx]
        if not mods:
            continue
        for out in n.output:
            if not out:
                continue
            users = node_of_input.get(out, [])
            for m in mods:
                if out in graph_outputs or any(m not in scopes[u] for u in users):
                    result[m] = out  # later nodes overwrite: last escaping value wins
    return result
