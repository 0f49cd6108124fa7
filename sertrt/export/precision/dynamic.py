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

DYNAMIC_OP_TYPES = ("MatMul",)  # Convs are quantised as MatMuls: see _convs_as_matmuls
# Narrower Convs (the demo's 32) stay float: no faster as MatMulInteger, 15x further from PyTorch; wav2vec2's are 512.
MIN_CONV_CHANNELS = 256


def to_int8_dynamic(src: Path, dst: Path, *, exclude: tuple[str, ...] = INT8_EXCLUDE,
                    cpu_target: str = DEFAULT_CPU_TARGET) -> dict[str, Any]:
    """FP32 ONNX -> dynamic INT8 ONNX: MatMuls (and the wide encoder Convs as MatMuls) with per-channel QInt8
    weights, which keep ONNX Runtime on its u8s8 VNNI / dot-product kernels (7-bit for avx2: reduce_range against
    u8s8 saturation), and QUInt8 activations quantised per call. Nodes named with a scope in `exclude` stay float.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if cpu_target not in CPU_TARGETS:
        raise SertrtError(f"--cpu-target {cpu_target}: unknown (valid: {', '.join(CPU_TARGETS)})")
    reduce_range = cpu_target == "avx2"
    model, convs = _convs_as_matmuls(onnx.load(str(src)), exclude)
    # quantize_dynamic rewrites every Gemm as a float MatMul named "<gemm>_MatMul" before it quantises
    # MatMuls, so a Gemm is excluded under that name (or the head's output layer gets quantised).
    excluded = sorted(n.name if n.op_type == "MatMul" else f"{n.name}_MatMul" for n in model.graph.node
                      if n.op_type in ("MatMul", "Gemm") and any(e in n.name for e in exclude))
    with atomic_path(dst) as tmp:
        with _quiet_preprocess_advice():
            quantize_dynamic(model, tmp, per_channel=True, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                             op_types_to_quantize=list(DYNAMIC_OP_TYPES), nodes_to_exclude=excluded)
        model = onnx.load(str(tmp))
        if convs:
            onnx.save(model := _quantise_before_unfolding(model, convs), str(tmp))
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


def _convs_as_matmuls(model, exclude: tuple[str, ...]):
    """(model, names of the Convs rewritten): every 1-D, group-1, unpadded, undilated Conv with constant
    weights and at least MIN_CONV_CHANNELS input channels (not the first, which reads the waveform), outside
    `exclude`, as frames unfolded into channels + MatMul (ONNX Runtime's ConvInteger is slower than its float
    Conv; MatMulInteger runs on the u8s8 VNNI / dot-product kernels), the same result to float rounding:
    x (B, C, T) -> (B, T, C) -> k strided Slices (B, T', C), T' = floor((T - k) / s) + 1 for every offset
    -> Concat (B, T', k*C) @ W (k*C, C_out) + bias -> (B, C_out, T')."""
    from onnxslim.third_party import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    convs = [n for n in graph.nodes if n.op == "Conv" and isinstance(n.inputs[1], gs.Constant) and len(n.inputs[1].shape) == 3
             and n.inputs[1].shape[1] >= MIN_CONV_CHANNELS and n.attrs.get("group", 1) == 1 and not any(n.attrs.get("pads", [0]))
             and set(n.attrs.get("dilations", [1])) == {1} and not any(e in n.name for e in exclude)]
    for conv in convs:
        weight, (stride,) = conv.inputs[1].values, conv.attrs.get("strides", [1])
        c_out, c_in, k = weight.shape
        name = conv.name
        var = lambda suffix: gs.Variable(f"{name}/{suffix}", dtype=np.float32)  # noqa: E731
        i64 = lambda suffix, v: gs.Constant(f"{name}/{suffix}", np.array([v], np.int64))  # noqa: E731
        x = var("frames")
        nodes = [gs.Node("Transpose", f"{name}/Transpose_in", {"perm": [0, 2, 1]}, [conv.inputs[0]], [x])]
        shifted = [var(f"frames_{j}") for j in range(k)]
        for j, frame in enumerate(shifted):  # frame t reads x[s*t + j]; ends counted from the end keep T' rows for every j
            end = j - (k - 1) if j < k - 1 else np.iinfo(np.int64).max
            starts, ends, axes, steps = (i64(f"{a}_{j}", v) for a, v in
                                         (("starts", j), ("ends", end), ("axes", 1), ("steps", stride)))
            nodes.append(gs.Node("Slice", f"{name}/Slice_{j}", inputs=[x, starts, ends, axes, steps], outputs=[frame]))
        unfolded, out = var("unfolded"), var("MatMul_output")
        kernel = gs.Constant(f"{name}/weight_as_matmul", np.ascontiguousarray(weight.transpose(2, 1, 0).reshape(k * c_in, c_out)))
        nodes += [gs.Node("Concat", f"{name}/Concat", {"axis": 2}, shifted, [unfolded]),
                  gs.Node("MatMul", f"{name}_MatMul", inputs=[unfolded, kernel], outputs=[out])]
        if len(conv.inputs) > 2:
            nodes.append(gs.Node("Add", f"{name}/Add_bias", inputs=[out, conv.inputs[2]], outputs=[out := var("Add_output")]))
        nodes.append(gs.Node("Transpose", f"{name}/Transpose_out", {"perm": [0, 2, 1]}, [out], list(conv.outputs)))
        conv.outputs.clear()
        graph.nodes += nodes
    return (gs.export_onnx(graph.cleanup().toposort()) if convs else model), sorted(n.name for n in convs)


def _quantise_before_unfolding(model, convs: list[str]):
    """The rewritten Convs' DynamicQuantizeLinear moved from the unfolded (B, T', k*C) onto the frames (B, T, C):
    the Slices and the Concat then copy uint8, and each frame is quantised once, not k times. The unfolded frames
    are the frames but for at most `stride` at the end, so the scale is that of (nearly) the same values."""
    from onnxslim.third_party import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    nodes = {n.name: n for n in graph.nodes}
    for name in convs:
        concat = nodes[f"{name}/Concat"]
        (quantise,) = concat.outputs[0].outputs
        assert quantise.op == "DynamicQuantizeLinear", f"{name}: {quantise.op} reads the unfolded frames"
        unfolded, frames = quantise.outputs[0], concat.inputs[0].inputs[0].inputs[0]
        quantise.inputs[0], quantise.outputs[0] = frames, gs.Variable(f"{name}/frames_quantized", dtype=np.uint8)
        for shifted in concat.inputs:
            shifted.inputs[0].inputs[0], shifted.dtype = quantise.outputs[0], np.uint8
        concat.outputs[0] = unfolded
    return gs.export_onnx(graph.cleanup().toposort())
