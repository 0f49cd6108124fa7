"""What TensorRT would make of an exported graph, checked without TensorRT (docs/tensorrt-and-jetson.md).

    report = audit_onnx(Path("bundle/model.onnx"))    # {"clean": bool, "findings": [...], ...}
    print(format_audit(report))

Every node is checked against NVIDIA's ONNX parser operator tables per TensorRT version (tensorrt_ops.json, with
its sources), and against the refused, fusion, shapes, qdq and gru rules below. A finding is one line: rule, node,
what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .precision.surgery import constant_tensors

TABLE_FILE = Path(__file__).with_name("tensorrt_ops.json")
SYMBOLS = {"batch", "num_samples"}  # the only symbolic dimensions the export declares

REFUSED = {
    "If": "runtime conditional: TensorRT needs equal-rank branches and cannot fold a shape-driven condition",
    "Loop": "runtime loop: one TensorRT iteration per step, serial",
    "Scan": "runtime loop: one TensorRT iteration per step, serial",
    "CumSum": "TensorRT 10.3 builds CumSum as a loop of one step per element",
    "NonZero": "data-dependent output shape", "Compress": "data-dependent output shape",
    "Unique": "data-dependent output shape", "NonMaxSuppression": "data-dependent output shape",
    "ScatterND": "scatter with runtime indices (slow, int64)", "ScatterElements": "scatter with runtime indices",
    "Scatter": "scatter with runtime indices",
}
# Ops a DequantizeLinear may feed: the layers TensorRT fuses Q/DQ into, and the data-movement ops it
# propagates Q/DQ through (TensorRT developer guide, "Q/DQ layer placement").
QDQ_CONSUMERS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "AveragePool", "MaxPool",
                 "GlobalAveragePool", "Concat", "Reshape", "Transpose", "Slice", "Squeeze", "Unsqueeze",
                 "Gather", "Flatten", "Split"}
# ONNX TensorProto element type -> the table's type names
DTYPES = {1: "FP32", 10: "FP16", 16: "BF16", 6: "INT32", 7: "INT64", 3: "INT8", 2: "UINT8", 9: "BOOL", 11: "DOUBLE"}


@dataclass(frozen=True)
class Finding:
    rule: str  # op-support | refused | fusion | shapes | qdq | gru | opset
    node: str
    message: str
    versions: tuple[str, ...] = ()  # the TensorRT versions it applies to (empty: all)

    def line(self) -> str:
        where = f" (TensorRT {', '.join(self.versions)})" if self.versions else ""
        return f"{self.rule}: {self.node}: {self.message}{where}"


def load_table() -> dict[str, Any]:
    return json.loads(TABLE_FILE.read_text(encoding="utf-8"))


def _nodes(graph) -> list:
    """Every node, subgraphs (If/Loop/Scan bodies) included."""
    out = []
    for node in graph.node:
        out.append(node)
        for attr in node.attribute:
            for g in [attr.g, *attr.graphs]:
                out += _nodes(g)
    return out


WEIGHT_TYPES = (1, 10, 16, 11, 3, 2)  # FP32, FP16, BF16, DOUBLE, INT8, UINT8: weights, never shape values


def split_weights(model) -> tuple[Any, dict[str, Any]]:
    """(the model with its weight matrices as graph inputs of the same type and shape, name -> TensorProto of
    them), for what reads shapes and structure only. A weight is a float or int8 initializer of rank >= 2 and
    more than 64 values that no all-constant node reads (those are folded, so their inputs keep their values)."""
    from onnx import helper

    g = model.graph
    constant = set(constant_tensors(g))
    folded = {i for n in g.node if n.input and all(i in constant or not i for i in n.input) for i in n.input}
    weights = {t.name: t for t in g.initializer if t.data_type in WEIGHT_TYPES and len(t.dims) >= 2
               and math.prod(t.dims) > 64 and t.name not in folded}
    graph = helper.make_graph(
        list(g.node), g.name, [*g.input, *(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                                           for t in weights.values())],
        list(g.output), initializer=[t for t in g.initializer if t.name not in weights], value_info=list(g.value_info))
    light = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                              producer_name=model.producer_name, producer_version=model.producer_version)
    light.metadata_props.extend(model.metadata_props)
    return light, weights


def save_joined(light, weights: dict[str, Any], path: Path) -> None:
    """split_weights undone on `light` (or on what onnxslim made of it), written to `path`: the graph, then each
    weight it reads as one more `graph { initializer }` record, which a protobuf parser merges into the one graph
    (protobuf.dev/programming-guides/encoding, "Last One Wins": embedded messages merge, repeated fields append).
    One serialisation per weight, not a copy of 1.2 GB into the model and one serialisation of it all."""
    def record(field: int, size: int) -> bytes:  # a length-delimited field's tag and varint length
        out = bytearray([field << 3 | 2])
        while size > 0x7F:
            out.append(size & 0x7F | 0x80)
            size >>= 7
        return bytes(out + bytes([size]))

    g = light.graph
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.input if i.name not in weights]
    del g.input[:]
    g.input.extend(kept)
    with open(path, "wb") as f:
        f.write(light.SerializeToString())
        for name, tensor in weights.items():
            if name in used:
                data = tensor.SerializeToString()
                initializer = record(5, len(data))  # GraphProto.initializer = 5, ModelProto.graph = 7
                f.write(record(7, len(initializer) + len(data)) + initializer)
                f.write(data)


def _infer_shapes(model):
    """(model with value_info, error or None): ONNX Runtime's symbolic shape inference, which names every
    dimension by an expression of the inputs' symbols."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="sertrt-audit-") as scratch:
        # On a failure ONNX Runtime saves its partial model (sym_shape_infer_temp.onnx and external data)
        # into the working directory: let that be a folder of ours, removed afterwards.
        os.chdir(scratch)
        try:
            # auto_merge: the conv arithmetic gives Max(0, e) and e for one frame count; they agree for
            # every input the profile allows (num_samples >= one frame), so they are merged
            return SymbolicShapeInference.infer_shapes(model, auto_merge=True, guess_output_rank=False), None
        except Exception as e:  # noqa: BLE001 - the inference raises bare Exceptions on what it cannot follow
            return model, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            os.chdir(here)


def _free_symbols(dim_param: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", dim_param)) - {"floor", "ceiling", "Max", "Min", "Mod", "ceil"}


def audit_onnx(path: str | Path, precision: str | None = None) -> dict[str, Any]:
    """Audit the ONNX at `path` (see the module docstring); `precision` only labels the report."""
    import onnx

    model = onnx.load(str(path))
    table = load_table()
    findings: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    for version, info in table["versions"].items():
        lo, hi = info["opset"]
        if not lo <= opset <= hi:
            findings.append(Finding("opset", "model", f"opset {opset} is outside {lo}..{hi}", (version,)))

    inferred, shape_error = _infer_shapes(split_weights(model)[0])  # shapes need no weight values
    types: dict[str, int] = {}
    shapes: dict[str, list | None] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        t = vi.type.tensor_type
        types[vi.name] = t.elem_type
        shapes[vi.name] = [d.dim_param or d.dim_value for d in t.shape.dim] if t.HasField("shape") else None
    types.update({t.name: t.data_type for t in model.graph.initializer})

    nodes = _nodes(model.graph)
    consumers: dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    for n in nodes:
        name = n.name or f"<{n.op_type}>"
        if n.domain not in ("", "ai.onnx"):
            findings.append(Finding("op-support", name, f"{n.domain}::{n.op_type} is not a standard ONNX op"))
            continue
        dtype = DTYPES.get(types.get(n.input[0], 0)) if n.input and n.input[0] else None
        for version, info in table["versions"].items():
            entry = table["tables"][info["table"]].get(n.op_type)
            if entry is None or not entry["supported"]:
                findings.append(Finding("op-support", name, f"{n.op_type} is not supported by the ONNX parser", (version,)))
            elif dtype and entry["types"] and n.op_type not in ("Cast", "Shape", "Size", "QuantizeLinear") \
                    and dtype not in entry["types"]:
                findings.append(Finding("op-support", name, f"{n.op_type} on {dtype} (supported: {', '.join(entry['types'])})",
                                        (version,)))
        if n.op_type in REFUSED:
            findings.append(Finding("refused", name, f"{n.op_type}: {REFUSED[n.op_type]}"))
        if n.op_type == "Softmax":
            after = consumers.get(n.output[0], [])
            after += [c2 for c in after if c.op_type == "Cast" for c2 in consumers.get(c.output[0], [])]
            for c in after:
                if c.op_type == "IsNaN":
                    findings.append(Finding("fusion", name, "Softmax -> IsNaN -> Where (torch's SDPA export of a boolean "
                                                            "mask) keeps TensorRT from fusing attention"))
        if n.op_type == "GRU":
            attrs = {a.name: a for a in n.attribute}
            acts = [s.decode() for s in attrs["activations"].strings] if "activations" in attrs else []
            direction = attrs["direction"].s.decode() if "direction" in attrs else "forward"
            if direction == "bidirectional" and acts and acts[:2] != acts[2:]:
                findings.append(Finding("gru", name, f"bidirectional GRU with different activations {acts}"))
    findings += _qdq_findings(nodes, consumers, constant_tensors(model.graph))

    # shapes: every tensor a rank, every dimension a constant or an expression of batch/num_samples
    if shape_error is not None:
        findings.append(Finding("shapes", "model", f"symbolic shape inference failed ({shape_error})"))
    else:
        unresolved: list[Finding] = []
        for out in (o for n in nodes if n.op_type != "Constant" for o in n.output if o):
            shape = shapes.get(out)
            if shape is None or set().union(*[_free_symbols(d) for d in shape if isinstance(d, str)]) - SYMBOLS:
                unresolved.append(Finding("shapes", out, "dimension not an expression of batch/num_samples: "
                                          + ("no shape" if shape is None else str(shape))))
        findings += unresolved[:5]
        if len(unresolved) > 5:
            findings.append(Finding("shapes", "model", f"... and {len(unresolved) - 5} more tensors"))

    ops = Counter(n.op_type for n in nodes)
    int64_nodes = sum(1 for n in nodes if n.op_type != "Constant" and n.output and types.get(n.output[0]) == 7)
    return {
        "precision": precision, "clean": not findings, "opset": opset, "nodes": len(nodes),
        "constants": ops.get("Constant", 0), "int64_nodes": int64_nodes, "ops": dict(sorted(ops.items())),
        "versions": {v: info["why"] for v, info in table["versions"].items()},
        "findings": [asdict(f) | {"line": f.line()} for f in findings],
    }


def _qdq_findings(nodes, consumers, tensors) -> list[Finding]:
    """`tensors`: name -> TensorProto of the graph's constant values (initializers and Constant nodes)."""
    from onnx import numpy_helper

    def value(name):
        return numpy_helper.to_array(tensors[name]) if name in tensors else None

    out = []
    for n in nodes:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        name = n.name or f"<{n.op_type}>"
        zero = value(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zero is not None and (zero != 0).any():
            out.append(Finding("qdq", name, "zero-point is not 0 (TensorRT takes symmetric quantisation only)"))
        if n.op_type != "DequantizeLinear":
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        scale = value(n.input[1])
        weight = n.input[0] in tensors
        for c in consumers.get(n.output[0], []):
            if c.op_type not in QDQ_CONSUMERS:
                out.append(Finding("qdq", name, f"DequantizeLinear feeds {c.op_type} ({c.name}), which TensorRT does not fuse Q/DQ into"))
            elif weight and scale is not None and scale.size > 1:
                expected = {"Conv": 0, "ConvTranspose": 1, "MatMul": -1, "Gemm": -1}.get(c.op_type)
                rank = len(tensors[n.input[0]].dims)
                if expected is not None and axis % rank != expected % rank:
                    out.append(Finding("qdq", name, f"weight of {c.op_type} quantised along axis {axis}, not its output "
                                                    f"channels (axis {expected % rank})"))
    return out


def format_audit(report: dict[str, Any]) -> str:
    head = (f"TensorRT audit ({report['precision'] or 'graph'}): {report['nodes']} nodes, opset {report['opset']}, "
            f"{report['constants']} Constants, {report['int64_nodes']} int64 nodes: "
            + ("clean on " + ", ".join(f"TensorRT {v}" for v in report["versions"]) if report["clean"]
               else f"{len(report['findings'])} finding(s)"))
    return "\n".join([head, *("  " + f["line"] for f in report["findings"])])
