"""Reduced-precision copies of the FP32 model ONNX, with the precision in the graph (TensorRT 11 is
strongly typed: no builder flags), plus calibration feeds read from a manifest.

    to_fp16(model.onnx, model_fp16.onnx)                  FP16 compute, FP32 waveform/lengths/logits
    to_int8(model.onnx, model_int8.onnx, feeds)           explicit Q/DQ, symmetric INT8, zero-points 0 (TensorRT)
    to_int8_dynamic(model.onnx, model_int8_dynamic.onnx)  MatMul-only dynamic INT8 (ONNX Runtime CPU)
    manifest_calibration(calib_manifest.jsonl)            [{"waveform": (1, num_samples), "lengths": (1,)}]

FP16 keeps in FP32 what overflows or loses too much with 5 exponent bits: the in-graph waveform
normalisation (its sum of squares over num_samples passes FP16's 65504 after 4 s of full-scale audio),
every reduction, Pow/Sqrt, LayerNormalization, Softmax, and the recurrent modules of the head with
their reshuffles (numerics; the head is a sliver of the FLOPs). The converter's FP32->FP16->FP32 cast
pairs between two FP32 ops are removed, so the normalisation reads the FP32 waveform itself, and
identical Casts are merged into one. Both work on the graph's types, not the converter's node names,
which differ between onnxruntime versions (tested on 1.20, 1.30 and 1.32).

INT8 quantises the encoder's MatMul/Gemm (and Conv if asked) with per-channel weights, on their inputs
only (TensorRT's Q/DQ placement advice; ORT would also fake-quantise their outputs). The head (no INT8
GRU in TensorRT), the feature projection, the first Conv (raw waveform in), LayerNorm and Softmax stay
float, and Q/DQ feed only the quantised ops: ORT hands the dequantised copy to every reader of a
quantised tensor (Shape, Reshape, ...), so those get the float tensor back.

INT8-dynamic is the CPU artifact: TensorRT cannot take it (DynamicQuantizeLinear/MatMulInteger are not
its INT8 format), and ONNX Runtime CPU ran it faster than both FP32 and the QDQ model (benchmarks/).
Weights are quantised once, activations per call and per tensor, so a row's logits depend slightly on
its batch mates.

ONNX Runtime CPU runs all three files (the post-export check uses it). For FP16 it upcasts ops that
have no FP16 CPU kernel, so ORT-CPU validates FP16 storage at op boundaries, not FP16 arithmetic as
TensorRT does it; and ORT-CPU runs a QDQ model slower than FP32. Re-check and time the built engine on the GPU.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_path
from ..audio import SAMPLE_RATE
from ..errors import SertrtError

if TYPE_CHECKING:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

# Op types always kept in FP32 by to_fp16 (besides onnxruntime's default list of ops without FP16).
FP16_KEEP_OPS = (
    "LayerNormalization", "Softmax", "GRU", "LSTM", "RNN",
    "ReduceSum", "ReduceMean", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "ReduceProd",
    "Pow", "Sqrt",
)
RECURRENT_OPS = ("GRU", "LSTM", "RNN")
CONTROL_FLOW_OPS = ("If", "Loop", "Scan")  # the converter cannot keep these in FP32 (subgraph types)
INT8_OP_TYPES = ("MatMul", "Gemm")
# Node-name scopes left in float by to_int8 (TorchScript names carry the module path: /head/gru/fw/GRU).
# The head holds the GRUs (no INT8 GRU in TensorRT). The feature projection writes the transformer's
# residual stream directly, so its quantisation noise is never diluted: on tiny it alone cost 100x the
# logits error of any other MatMul, for 0.2% of XLSR's MatMul FLOPs.
INT8_EXCLUDE = ("/head/", "/feature_projection/")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DYNAMIC_OP_TYPES = ("MatMul",)  # Conv as ConvInteger measured 2x slower than FP32 Conv on ORT CPU
_FLOAT, _FLOAT16 = 1, 10  # TensorProto element types
_FLOATS = (_FLOAT, _FLOAT16, 11, 16)  # and DOUBLE, BFLOAT16


# ---------------------------------------------------------------------------------------------
# FP16


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
    kept = Counter(
        n.op_type for n in graph.node
        if n.name in float_nodes and (n.op_type in keep_ops or n.name in keep_nodes) and n.op_type != "Constant"
    )
    converted = sum(
        1 for n in graph.node
        if n.name in float_nodes and not (n.op_type in keep_ops or n.name in keep_nodes) and n.op_type != "Constant"
    )
    casts_before = sum(n.op_type == "Cast" for n in graph.node)

    model = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=sorted(keep_ops), node_block_list=sorted(keep_nodes),
        disable_shape_infer=True,
    )
    merged = _merge_duplicate_casts(model.graph)
    removed = _drop_cast_round_trips(model.graph)
    _prune(model.graph)
    _topological_sort(model.graph)
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


def _merge_duplicate_casts(graph) -> int:
    """One Cast per (input, target type). onnxruntime's converter before 1.32 adds a Cast for every
    FP32-kept reader of an FP16 tensor, all writing one output name (the graph is then not in SSA
    form and onnx.checker rejects it); later versions share one. Either way the result is the same
    graph. A Cast whose output is a graph output or read inside a subgraph is left alone."""
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
            if node.output[0] != first[key]:
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
    for nothing; readers of the second Cast get the FP32 tensor itself. Decided on tensor types, not on
    the converter's node names (which change between onnxruntime versions); the model's own Casts are
    never FP32 -> FP16 (it is an FP32 model), so only the converter's pairs match."""
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


# ---------------------------------------------------------------------------------------------
# INT8


class _FeedReader:
    """An iterable of feeds as onnxruntime's CalibrationDataReader (get_next -> dict or None)."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def to_int8(
    src: Path,
    dst: Path,
    calibration: Iterable[dict[str, np.ndarray]] | CalibrationDataReader,
    *,
    per_channel: bool = True,
    op_types: tuple[str, ...] = INT8_OP_TYPES,
    exclude_first_conv: bool = True,
    exclude: tuple[str, ...] = INT8_EXCLUDE,
    method: str = "minmax",
    preprocess: bool = False,
) -> dict[str, Any]:
    """FP32 ONNX -> QDQ INT8 ONNX for TensorRT: symmetric QInt8 activations and weights (zero-points 0),
    per-channel weights, statically calibrated on `calibration` (an iterable of feeds
    {"waveform": (B, num_samples) float32, "lengths": (B,) int64} or a CalibrationDataReader).

    Ops whose node name contains a scope in `exclude` stay float. `preprocess` runs onnxruntime's
    quant_pre_process first (ONNX shape inference + ORT basic optimisation; its symbolic shape
    inference fails on our graph, so that part is skipped).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise SertrtError(f"unknown calibration method {method!r} (valid: {', '.join(CALIBRATION_METHODS)})")
    reader = calibration if hasattr(calibration, "get_next") else _FeedReader(calibration)

    with atomic_path(dst) as tmp, tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".int8-") as scratch:
        pre = Path(scratch) / "preprocessed.onnx"
        if preprocess:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model_in = pre if preprocess else Path(src)
        graph = onnx.load(str(model_in)).graph
        excluded = [n.name for n in graph.node if n.op_type in op_types and any(e in n.name for e in exclude)]
        first_conv = next((n for n in graph.node if n.op_type == "Conv"), None)
        if exclude_first_conv and first_conv is not None and "Conv" in op_types:
            excluded.append(first_conv.name)
        quantised = {n.name for n in graph.node if n.op_type in op_types and n.name not in excluded}
        with _quiet_preprocess_advice():
            # A path, not a ModelProto: onnxruntime 1.20 saves a ModelProto with its weights as
            # external data in a temp folder and then fails to read them back.
            quantize_static(
                str(model_in), str(tmp), reader,
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=per_channel,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                calibrate_method=methods[method],
                extra_options={
                    # TensorRT takes only symmetric INT8 (zero-point 0); ORT's activations default to asymmetric.
                    "ActivationSymmetric": True, "WeightSymmetric": True,
                    # Q/DQ on the inputs of weighted ops only (TensorRT's placement advice), not their outputs.
                    "OpTypesToExcludeOutputQuantization": list(op_types),
                },
            )
        model = onnx.load(str(tmp))
        rewired = _qdq_only_into(model.graph, quantised)
        _prune(model.graph)
        _topological_sort(model.graph)
        onnx.checker.check_model(model)
        zps = zero_points(model)
        if any(zps):  # a bug, not a user error: the options above must make them all 0
            raise AssertionError(f"{dst}: non-zero Q/DQ zero-points {sorted(set(zps))}: TensorRT rejects them")
        onnx.save(model, str(tmp))

    ops = Counter(n.op_type for n in model.graph.node)
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    quantised_ops = Counter(n.op_type for n in model.graph.node if n.op_type in op_types and any(i in dq_out for i in n.input))
    return {
        "precision": "int8",
        "format": "QDQ",
        "calibration_method": method,
        "per_channel": per_channel,
        "preprocess": preprocess,
        "quantize_linear": ops["QuantizeLinear"],
        "dequantize_linear": ops["DequantizeLinear"],
        "quantised_ops": dict(sorted(quantised_ops.items())),
        "excluded_nodes": sorted(excluded),
        "float_consumers_rewired": rewired,
        "max_abs_zero_point": max((abs(z) for z in zps), default=0),
        "opset": _opset(model),
    }


def to_int8_dynamic(src: Path, dst: Path, *, exclude: tuple[str, ...] = INT8_EXCLUDE) -> dict[str, Any]:
    """FP32 ONNX -> dynamic INT8 ONNX for ONNX Runtime CPU: MatMul only, per-channel QUInt8 weights,
    QUInt8 asymmetric activations quantised per call (DynamicQuantizeLinear -> MatMulInteger, which ORT
    fuses into MatMulIntegerToFloat). No calibration.

    Measured on xlsr-53 on this AVX2 CPU without VNNI, where u8 x s8 products go through saturating
    16-bit pair sums: int8 weights ran ~9% faster but the logits cosine to FP32 fell to 0.984 (0.998
    with uint8; reduce_range did not help). Conv as ConvInteger ran 2x slower than FP32 Conv, so Conv
    stays float. Ops whose node name contains a scope in `exclude` stay float: the head, and the
    feature projection, whose error goes straight into the residual stream (quantised, xlsr-53's
    logits cosine fell to 0.976).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    # quantize_dynamic rewrites every Gemm as a float MatMul named "<gemm>_MatMul" before it quantises
    # MatMuls, so a Gemm is excluded under that name (or the head's output layer gets quantised).
    excluded = sorted(n.name if n.op_type == "MatMul" else f"{n.name}_MatMul" for n in graph.node
                      if n.op_type in ("MatMul", "Gemm") and any(e in n.name for e in exclude))
    with atomic_path(dst) as tmp:
        with _quiet_preprocess_advice():
            quantize_dynamic(Path(src), tmp, per_channel=True, weight_type=QuantType.QUInt8,
                             op_types_to_quantize=list(DYNAMIC_OP_TYPES), nodes_to_exclude=excluded)
        model = onnx.load(str(tmp), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    return {
        "precision": "int8-dynamic",
        "format": "dynamic",
        "target": "ONNX Runtime CPU (TensorRT takes the QDQ int8 bundle instead)",
        "per_channel": True,
        "weights": "QUInt8 per channel",
        "activations": "QUInt8 asymmetric, quantised per call",
        "op_types": list(DYNAMIC_OP_TYPES),
        "quantised_ops": {k: ops[k] for k in ("DynamicQuantizeLinear", "MatMulInteger")},
        "excluded_nodes": excluded,
        "opset": _opset(model),
    }


@contextlib.contextmanager
def _quiet_preprocess_advice() -> Iterator[None]:
    """quantize_static logs "consider pre-processing" on every call; measured here, quant_pre_process
    changes nothing on our graph (tiny: identical logits), so the advice is noise."""

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "pre-process" not in record.getMessage()

    root, drop = logging.getLogger(), Drop()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _qdq_only_into(graph, quantised: set[str]) -> int:
    """Feed float consumers of a quantised activation the float tensor, not its Q->DQ copy."""
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


def zero_points(model: str | Path | onnx.ModelProto) -> list[int]:
    """Every zero-point value of every QuantizeLinear/DequantizeLinear (a path or a ModelProto);
    an omitted zero-point is 0. TensorRT needs all of them 0."""
    import onnx
    from onnx import numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    tensors = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    tensors[node.output[0]] = a.t
    values: list[int] = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or not node.input[2]:
            values.append(0)
            continue
        values += [int(v) for v in numpy_helper.to_array(tensors[node.input[2]]).ravel()]
    return values


# ---------------------------------------------------------------------------------------------
# Calibration data


def manifest_calibration(
    manifest: Path, num: int = 64, seconds: float = 2.0, seed: int = 0, min_utterances: int = 16
) -> list[dict[str, np.ndarray]]:
    """Up to `num` utterances, stratified over labels (round-robin, shuffled per seed), each centre-
    cropped or zero-padded to `seconds` (the streaming window):
    [{"waveform": (1, num_samples) float32, "lengths": (1,) int64}], lengths = valid samples."""
    from ..audio import load_audio
    from ..manifest import read_manifest

    if num < min_utterances:
        raise SertrtError(f"calibration num={num} is below the minimum of {min_utterances} utterances")
    utterances = read_manifest(manifest, check_audio=False)  # load_audio names any bad file it meets
    if len(utterances) < min_utterances:
        raise SertrtError(
            f"{manifest}: {len(utterances)} utterance(s), INT8 calibration needs at least {min_utterances}"
        )
    n = int(round(seconds * SAMPLE_RATE))
    feeds = []
    for i in _stratified_pick([u.label for u in utterances], num, seed):
        audio = load_audio(utterances[i].path, SAMPLE_RATE)
        if len(audio) > n:
            start = (len(audio) - n) // 2
            audio = audio[start : start + n]
        waveform = np.zeros((1, n), dtype=np.float32)
        waveform[0, : len(audio)] = audio
        feeds.append({"waveform": waveform, "lengths": np.array([len(audio)], dtype=np.int64)})
    return feeds


def _stratified_pick(labels: list[str], num: int, seed: int) -> list[int]:
    """Up to `num` indices, one label at a time in turn, each label's order shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    queues = [[int(i) for i in rng.permutation(idx)] for _, idx in sorted(by_label.items())]
    chosen: list[int] = []
    while len(chosen) < num and any(queues):
        for q in queues:
            if q and len(chosen) < num:
                chosen.append(q.pop(0))
    return chosen


# ---------------------------------------------------------------------------------------------
# Graph helpers


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


def _prune(graph) -> None:
    """Drop nodes whose outputs nobody reads, then unread initializers and stale value_info
    (deleting in place: re-adding would copy every weight)."""
    outputs = {o.name for o in graph.output}
    while True:
        used = set(outputs)
        for n in graph.node:
            used |= set(n.input) | _subgraph_inputs(n)
        dead = [i for i, n in enumerate(graph.node) if not any(o in used for o in n.output if o)]
        for i in reversed(dead):
            del graph.node[i]
        if not dead:
            break
    for i in reversed(range(len(graph.initializer))):
        if graph.initializer[i].name not in used:
            del graph.initializer[i]
    names = {o for n in graph.node for o in n.output} | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for i in reversed(range(len(graph.value_info))):
        if graph.value_info[i].name not in names:
            del graph.value_info[i]


def _topological_sort(graph) -> None:
    """Stable topological order (the converters append their nodes at the end; TensorRT's parser
    reads nodes in order). Subgraph reads from the outer scope count as dependencies."""
    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{producer[x] for x in (*n.input, *_subgraph_inputs(n)) if x in producer} for n in nodes]
    users: list[list[int]] = [[] for _ in nodes]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise AssertionError("graph has a cycle")
    del graph.node[:]
    graph.node.extend(order)
