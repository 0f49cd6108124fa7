"""FP16 conversion: FP32 model ONNX -> mixed FP16 ONNX with FP32 waveform/lengths/logits. FP32 keeps what
overflows or loses too much with 5 exponent bits: the in-graph waveform normalisation (its sum of squares over
num_samples passes FP16's 65504 after 4 s of full-scale audio), every reduction, Pow/Sqrt, LayerNormalization,
Softmax, and the head's recurrent modules with their reshuffles (the head is a sliver of the FLOPs).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ...core.atomic import atomic_path
from .surgery import _drop_cast_round_trips, _float_node_names, _merge_duplicate_casts, _opset, cleanup

# Op types always kept in FP32 by to_fp16 (besides onnxruntime's default list of ops without FP16).
FP16_KEEP_OPS = (
    "LayerNormalization", "Softmax", "GRU", "LSTM", "RNN",
    "ReduceSum", "ReduceMean", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ReduceProd",
    "Pow", "Sqrt",
)
RECURRENT_OPS = ("GRU", "LSTM", "RNN")
CONTROL_FLOW_OPS = ("If", "Loop", "Scan")  # the converter cannot keep these in FP32 (subgraph types)


def to_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """FP32 ONNX -> mixed FP16 ONNX with FP32 inputs and outputs; returns what stayed FP32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.shape_inference.infer_shapes(onnx.load(str(src)))
    graph = model.graph
    float_nodes = _float_node_names(model)
    keep_ops = set(DEFAULT_OP_BLOCK_LIST) | set(FP16_KEEP_OPS)
    normalisation = _normalisation_nodes(graph)
    control_flow = {n.name for n in graph.node if n.op_type in CONTROL_FLOW_OPS}
    keep_nodes = (normalisation | _recurrent_scope_nodes(graph)) - control_flow
    computing = [n for n in graph.node if n.name in float_nodes and n.op_type != "Constant"]
    kept = Counter(n.op_type for n in computing if n.op_type in keep_ops or n.name in keep_nodes)
    converted = len(computing) - sum(kept.values())
    casts_before = sum(n.op_type == "Cast" for n in graph.node)

    model = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=sorted(keep_ops), node_block_list=sorted(keep_nodes),
        disable_shape_infer=True,
    )
    merged = _merge_duplicate_casts(model.graph)
    removed = _drop_cast_round_trips(model.graph)
    model = cleanup(model)
    onnx.checker.check_model(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))

    dtypes = Counter(onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in model.graph.initializer)
    return {
        "precision": "fp16",
        "io": "float32",
        "kept_fp32": dict(sorted(kept.items())),
        "kept_fp32_nodes": sum(kept.values()),
        "normalisation_nodes": len(normalisation & float_nodes),
        "fp16_nodes": converted,
        "casts_added": sum(n.op_type == "Cast" for n in model.graph.node) - casts_before,
        "duplicate_casts_merged": merged,
        "cast_round_trips_removed": removed,
        "initializers": dict(sorted(dtypes.items())),
        "opset": _opset(model),
    }


def _normalisation_nodes(graph) -> set[str]:
    """The waveform normalisation: every node the first Conv (the feature encoder's) depends on."""
    first = next((n for n in graph.node if n.op_type == "Conv"), None)
    if first is None:
        return set()
    producer = {o: n for n in graph.node for o in n.output}
    seen: set[str] = set()
    stack = [first.input[0]]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(i for i in node.input if i)
    return seen


def _recurrent_scope_nodes(graph) -> set[str]:
    """Every node in the module that owns a GRU/LSTM (/head/gru/fw/GRU -> /head/gru/...): the
    recurrence and its reshuffles, so FP16<->FP32 casts sit at the module's edge, not around each op.
    (Casting only the GRU itself also crashes onnxruntime 1.32's CPU NchwcTransformer at session load.)"""
    scopes = {n.name.rsplit("/", 2)[0] + "/" for n in graph.node if n.op_type in RECURRENT_OPS and n.name.count("/") >= 2}
    return {n.name for n in graph.node if any(n.name.startswith(s) for s in scopes)}
