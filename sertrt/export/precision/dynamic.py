"""Dynamic INT8 for ONNX Runtime CPU (docs/export.md): weights quantised once for the target CPU, activations
per call and per tensor (so a row's logits depend slightly on its batch mates). TensorRT cannot take it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ...core.atomic import atomic_path
from ...core.errors import SertrtError
from ...core.precisions import CPU_TARGETS, DEFAULT_CPU_TARGET
from .int8 import INT8_EXCLUDE, _quiet_preprocess_advice
from .surgery import _opset

DYNAMIC_OP_TYPES = ("MatMul",)  # and the wide Convs, as MatMulIntegers: see _convs_as_matmuls
# Narrower Convs stay float: the demo's 32-wide encoder ran no faster as MatMulInteger and 15x further from
# PyTorch. wav2vec2's are 512 (the encoder) and 1024 (the positional Conv).
MIN_CONV_CHANNELS = 256


def to_int8_dynamic(src: Path, dst: Path, *, cpu_target: str = DEFAULT_CPU_TARGET) -> dict[str, Any]:
    """FP32 ONNX -> dynamic INT8 ONNX: MatMuls (and the wide Convs, as MatMuls over unfolded frames) with
    per-channel QInt8 weights, which keep ONNX Runtime on its u8s8 VNNI / dot-product kernels (7-bit for avx2:
    reduce_range against u8s8 saturation), and QUInt8 activations quantised per call. Nodes named with a scope in
    INT8_EXCLUDE stay float.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if cpu_target not in CPU_TARGETS:
        raise SertrtError(f"--cpu-target {cpu_target}: unknown (valid: {', '.join(CPU_TARGETS)})")
    reduce_range = cpu_target == "avx2"
    model, convs = _convs_as_matmuls(onnx.load(str(src)), INT8_EXCLUDE, reduce_range)
    # quantize_dynamic rewrites every Gemm as a float MatMul named "<gemm>_MatMul" before it quantises
    # MatMuls, so a Gemm is excluded under that name (or the head's output layer gets quantised).
    excluded = sorted(n.name if n.op_type == "MatMul" else f"{n.name}_MatMul" for n in model.graph.node
                      if n.op_type in ("MatMul", "Gemm") and any(e in n.name for e in INT8_EXCLUDE))
    with atomic_path(dst) as tmp:
        with _quiet_preprocess_advice():
            quantize_dynamic(model, tmp, per_channel=True, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                             op_types_to_quantize=list(DYNAMIC_OP_TYPES), nodes_to_exclude=excluded)
        model = onnx.load(str(tmp))
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
        "convs_as_matmuls": convs,
        "quantised_ops": {k: ops[k] for k in ("DynamicQuantizeLinear", "MatMulInteger")},
        "excluded_nodes": excluded,
        "opset": _opset(model),
    }


def _convs_as_matmuls(model, exclude: tuple[str, ...], reduce_range: bool):
    """(model, names of the Convs rewritten): every 1-D undilated Conv with constant weights and at least
    MIN_CONV_CHANNELS input channels outside `exclude` (wav2vec2's encoder Convs after the first, which reads the
    waveform, and its grouped positional Conv), as a MatMulInteger over unfolded uint8 frames (ONNX Runtime's
    ConvInteger is slower than its float Conv; MatMulInteger runs on the u8s8 VNNI / dot-product kernels):
    x (B, C, T) -> (B, T, C), zero-padded -> DynamicQuantizeLinear (each frame once, not once per tap)
    -> G groups (B, G, T, C/G) -> Gather of frames s*t + j: (B, G, T', k, C/G), T' = floor((T - k) / s) + 1
    -> (B, G, T', k*C/G) @ W (G, k*C/G, C_out/G), QInt8 per output channel -> float (B, T', C_out) + bias
    -> (B, C_out, T'). With G = 1 the group axis is left out."""
    from onnx import TensorProto
    from onnxslim.third_party import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    convs = [n for n in graph.nodes if n.op == "Conv" and isinstance(n.inputs[1], gs.Constant)
             and len(n.inputs[1].shape) == 3 and n.inputs[1].shape[1] * n.attrs.get("group", 1) >= MIN_CONV_CHANNELS
             and set(n.attrs.get("dilations", [1])) == {1} and not any(e in n.name for e in exclude)]
    qmax = 64 if reduce_range else 127  # onnxruntime.quantization's symmetric QInt8 range (reduce_range: 7-bit)
    for conv in convs:
        name, weight, groups = conv.name, conv.inputs[1].values, conv.attrs.get("group", 1)
        (stride,), (begin, end) = conv.attrs.get("strides", [1]), conv.attrs.get("pads", [0, 0])
        c_out, c_in, k = weight.shape  # c_in per group
        const = lambda suffix, v, dtype=np.int64: gs.Constant(f"{name}/{suffix}", np.array(v, dtype))  # noqa: E731

        def node(op, inputs, dtype=np.float32, **attrs):
            tag = f"{name}/{op}_{len(graph.nodes)}"
            return graph.layer(op=op, name=tag, attrs=attrs, inputs=inputs, outputs=[gs.Variable(tag, dtype=dtype)])[0]

        frames = node("Transpose", [conv.inputs[0]], perm=[0, 2, 1])
        if begin or end:  # zeros quantise to the zero point exactly: DynamicQuantizeLinear's range holds 0
            frames = node("Pad", [frames, const("pads", [0, begin, 0, 0, end, 0])])
        quantised, scale, zero_point = (gs.Variable(f"{name}/frames_{v}", dtype=t) for v, t in
                                        (("quantized", np.uint8), ("scale", np.float32), ("zero_point", np.uint8)))
        graph.layer(op="DynamicQuantizeLinear", name=f"{name}/DynamicQuantizeLinear", inputs=[frames],
                    outputs=[quantised, scale, zero_point])
        axis = 1 if groups == 1 else 2  # time
        if groups > 1:
            quantised = node("Transpose", [node("Reshape", [quantised, const("grouped", [0, 0, groups, c_in])], np.uint8)],
                             np.uint8, perm=[0, 2, 1, 3])
        length = node("Gather", [node("Shape", [quantised], np.int64), const("time_axis", axis)], np.int64)
        starts = node("Range", [const("zero", 0), node("Sub", [length, const("taps_1", k - 1)], np.int64),
                                const("stride", stride)], np.int64)
        index = node("Add", [node("Unsqueeze", [starts, const("axis_1", [1])], np.int64),
                             const("taps", np.arange(k)[None])], np.int64)  # (T', k)
        unfolded = node("Reshape", [node("Gather", [quantised, index], np.uint8, axis=axis),
                                    const("unfolded", [0] * (axis + 1) + [k * c_in])], np.uint8)
        kernel = weight.reshape(groups, -1, c_in, k).transpose(0, 3, 2, 1).reshape(groups, k * c_in, -1)
        kernel = kernel[0] if groups == 1 else kernel
        kernel_scale = np.maximum(np.abs(kernel).max(axis=-2, keepdims=True), 1e-12) / qmax  # zero points 0
        product = node("MatMulInteger", [unfolded, const("weight_quantized", np.round(kernel / kernel_scale), np.int8),
                                         zero_point, const("weight_zero_point", 0, np.int8)], np.int32)
        out = node("Mul", [node("Cast", [product], to=TensorProto.FLOAT),
                           node("Mul", [scale, const("weight_scale", kernel_scale, np.float32)])])
        if groups > 1:
            out = node("Reshape", [node("Transpose", [out], perm=[0, 2, 1, 3]), const("ungrouped", [0, 0, c_out])])
        if len(conv.inputs) > 2:
            out = node("Add", [out, conv.inputs[2]])
        graph.layer(op="Transpose", name=f"{name}/Transpose_out", attrs={"perm": [0, 2, 1]}, inputs=[out],
                    outputs=list(conv.outputs))
        conv.outputs.clear()
    return (gs.export_onnx(graph.cleanup().toposort()) if convs else model), sorted(n.name for n in convs)
