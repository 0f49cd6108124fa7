"""ONNX graph surgery shared by the precision converters: rewiring a GraphProto in place and reading
its types; pruning and ordering by onnx-graphsurgeon (`cleanup`).

Everything here decides on the graph's tensor types and edges, never on the converters' node names,
which differ between onnxruntime versions (tested on 1.20, 1.30 and 1.32).
"""

from __future__ import annotations

from typing import Any

_FLOAT, _FLOAT16 = 1, 10  # TensorProto element types
_FLOATS = (_FLOAT, _FLOAT16, 11, 16)  # and DOUBLE, BFLOAT16


def _merge_duplicate_casts(graph) -> int:
    """One Cast per (input, target type). onnxruntime's FP16 converter before 1.32 adds a Cast for every
    FP32-kept reader of an FP16 tensor, all writing one output name (not SSA: onnx.checker rejects it);
    later versions share one. A Cast whose output is a graph output or read inside a subgraph is left alone."""
    protected = {o.name for o in graph.output}
    for node in graph.node:
        protected |= _subgraph_inputs(node)
    first: dict[tuple[str, Any], str] = {}
    rename: dict[str, str] = {}
    duplicates = []
    for i, node in enumerate(graph.node):
        if node.op_type != "Cast":
            continue
        key = (node.input[0], _attr(node, "to"))
        if key not in first:
            first[key] = node.output[0]
        elif node.output[0] == first[key] or node.output[0] not in protected:
            duplicates.append(i)
            rename[node.output[0]] = first[key]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for i in reversed(duplicates):
        del graph.node[i]
    seen: set[str] = set()
    for i, info in reversed(list(enumerate(graph.value_info))):  # the converter also repeats value_info
        if info.name in seen:
            del graph.value_info[i]
        seen.add(info.name)
    return len(duplicates)


def _drop_cast_round_trips(graph) -> int:
    """FP32 -> FP16 -> FP32 between two kept-FP32 ops (or from the FP32 graph input) rounds the value
    for nothing; readers of the second Cast get the FP32 tensor itself (so the normalisation reads the
    waveform). An FP32 model has no FP32 -> FP16 Casts of its own: only the converter's pairs match."""
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    producer = {o: n for n in graph.node for o in n.output}
    to_fp32 = {}
    for node in graph.node:
        if node.op_type != "Cast" or _attr(node, "to") != _FLOAT:
            continue
        up = producer.get(node.input[0])
        if up is not None and up.op_type == "Cast" and _attr(up, "to") == _FLOAT16 and types.get(up.input[0]) == _FLOAT:
            to_fp32[node.output[0]] = up.input[0]
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in to_fp32 and name not in outputs:
                node.input[i] = to_fp32[name]
    return len(to_fp32)


def _qdq_only_into(graph, quantised: set[str]) -> int:
    """Feed float consumers of a quantised activation the float tensor, not the Q->DQ copy
    quantize_static hands every reader."""
    producer = {o: n for n in graph.node for o in n.output}
    initializers = {t.name for t in graph.initializer}
    rewired = 0
    for node in graph.node:
        if node.name in quantised or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] in initializers:
                continue
            node.input[i] = q.input[0]
            rewired += 1
    return rewired


def constant_tensors(graph) -> dict[str, Any]:
    """name -> TensorProto of the initializers and of Constant nodes' `value`."""
    tensors = {t.name: t for t in graph.initializer}
    tensors.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"})
    return tensors


def _attr(node, name: str) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _opset(model) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _float_node_names(model) -> set[str]:
    """Names of nodes that compute a floating-point tensor (after shape inference)."""
    g = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].type == n.attribute[0].TENSOR:
            types[n.output[0]] = n.attribute[0].t.data_type
    return {n.name for n in g.node if any(types.get(t) in _FLOATS for t in n.output if t)}


def _subgraph_inputs(node) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing graph."""
    names: set[str] = set()
    for a in node.attribute:
        for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
            produced = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                names |= {i for i in n.input if i and i not in produced} | (_subgraph_inputs(n) - produced)
    return names


def cleanup(model):
    """A copy of `model` without unread nodes, unread initializers and stale value_info, its nodes in
    topological order (converters append theirs at the end; TensorRT's parser reads nodes in order):
    onnx-graphsurgeon's cleanup().toposort(), the copy onnxslim ships."""
    from onnxslim.third_party import onnx_graphsurgeon as gs

    return gs.export_onnx(gs.import_onnx(model).cleanup().toposort())
