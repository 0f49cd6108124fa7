"""Dynamic INT8 for ONNX Runtime CPU: MatMul-only, weights quantised once for the target CPU, activations per call.

INT8-dynamic is the CPU artifact: TensorRT cannot take it (DynamicQuantizeLinear/MatMulInteger are not
its INT8 format), and ONNX Runtime CPU ran it faster than both FP32 and the QDQ model (benchmarks/).
Weights are quantised once, activations per call and per tensor, so a row's logits depend slightly on
its batch mates. It leaves the same scopes float as the static INT8 (.int8.INT8_EXCLUDE).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ...core.atomic import atomic_path
from ...core.errors import SertrtError
from ...core.precisions import CPU_TARGETS, DEFAULT_CPU_TARGET
from .int8 import INT8_EXCLUDE, _quiet_preprocess_advice
from .surgery import _opset

DYNAMIC_OP_TYPES = ("MatMul",)  # Conv stays float: see to_int8_dynamic


def to_int8_dynamic(src: Path, dst: Path, *, exclude: tuple[str, ...] = INT8_EXCLUDE,
                    cpu_target: str = DEFAULT_CPU_TARGET) -> dict[str, Any]:
    """FP32 ONNX -> dynamic INT8 ONNX for ONNX Runtime CPU: MatMul only, per-channel QInt8 weights (7-bit,
    reduce_range, for `cpu_target` avx2: see core.precisions.CPU_TARGETS), QUInt8 asymmetric activations
    quantised per call (DynamicQuantizeLinear -> MatMulInteger, which ORT fuses into MatMulIntegerToFloat).
    No calibration.

    QInt8 weights keep ONNX Runtime on its u8s8 kernels, which VNNI and ARM's dot product speed up (QUInt8 would
    put it on u8u8); avx2 without VNNI gets reduce_range against u8s8 saturation. Conv stays float: ConvInteger
    is slower than float Conv, and feature-encoder Convs quantised as MatMuls push the logits past the
    int8-dynamic tolerance (docs/benchmarks.md). Ops whose node name contains a scope in `exclude` stay float:
    the head, and the feature projection, whose error goes straight into the residual stream.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if cpu_target not in CPU_TARGETS:
        raise SertrtError(f"--cpu-target {cpu_target}: unknown (valid: {', '.join(CPU_TARGETS)})")
    reduce_range = cpu_target == "avx2"
    graph = onnx.load(str(src), load_external_data=False).graph
    # quantize_dynamic rewrites every Gemm as a float MatMul named "<gemm>_MatMul" before it quantises
    # MatMuls, so a Gemm is excluded under that name (or the head's output layer gets quantised).
    excluded = sorted(n.name if n.op_type == "MatMul" else f"{n.name}_MatMul" for n in graph.node
                      if n.op_type in ("MatMul", "Gemm") and any(e in n.name for e in exclude))
    with atomic_path(dst) as tmp:
        with _quiet_preprocess_advice():
            quantize_dynamic(Path(src), tmp, per_channel=True, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                             op_types_to_quantize=list(DYNAMIC_OP_TYPES), nodes_to_exclude=excluded)
        model = onnx.load(str(tmp), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    return {
        "precision": "int8-dynamic",
        "format": "dynamic",
        "target": "ONNX Runtime CPU (TensorRT takes the QDQ int8 bundle instead)",
        "per_channel": True,
        "cpu_target": cpu_target,
        "weights": f"QInt8 per channel{' (7-bit: reduce_range)' if reduce_range else ''}",
        "activations": "QUInt8 asymmetric, quantised per call",
        "op_types": list(DYNAMIC_OP_TYPES),
        "quantised_ops": {k: ops[k] for k in ("DynamicQuantizeLinear", "MatMulInteger")},
        "excluded_nodes": excluded,
        "opset": _opset(model),
    }
