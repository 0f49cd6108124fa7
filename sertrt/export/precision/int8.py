"""Static INT8 for TensorRT: explicit Q/DQ, symmetric INT8, zero-points 0, calibrated on feeds, on an FP16 graph:
what NVIDIA's ModelOpt makes with `high_precision_dtype="fp16"`, without nvidia-modelopt[onnx] 0.47, whose pins
(onnx~=1.21, onnxruntime-gpu~=1.24.2, cupy-cuda12x) would replace the onnxruntime every other stage uses.

The encoder's MatMul/Gemm (and Conv if asked) get per-channel weights and Q/DQ on their inputs only (TensorRT's
Q/DQ placement advice); other readers of a quantised tensor get the float tensor back. The rest runs in FP16: a
strongly typed TensorRT network runs each op in its graph type, so an FP32 float part would be slower. FP16 Q/DQ
scales (DequantizeLinear then feeds the FP16 MatMul directly, the pattern TensorRT fuses) need opset 19.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...core.atomic import atomic_path
from ...core.choices import CALIBRATION_METHODS
from ...core.errors import SertrtError
from .calibration import _FeedReader
from .fp16 import to_fp16
from .surgery import _opset, _qdq_only_into, cleanup, constant_tensors

INT8_OP_TYPES = ("MatMul", "Gemm")
# Node-name scopes left in float (TorchScript names carry the module path: /head/gru/fw/GRU). The head holds
# the GRUs (TensorRT has no INT8 GRU); the feature projection writes the transformer's residual stream, where its
# quantisation noise is never diluted (on tiny, 100x the logits error of any other MatMul, for 0.2% of the FLOPs).
INT8_EXCLUDE = ("/head/", "/feature_projection/")
# All three keep every answer on the demo; percentile has the smallest logits error.
DEFAULT_CALIBRATION = "percentile"  # benchmarks/results/int8-calibration.md
QDQ_FP16_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take FP16 scales and data


def to_int8(src: Path, dst: Path, calibration: Iterable[dict[str, np.ndarray]], *,
            op_types: tuple[str, ...] = INT8_OP_TYPES, exclude_first_conv: bool = True,
            method: str = DEFAULT_CALIBRATION) -> dict[str, Any]:
    """FP32 ONNX -> QDQ INT8 ONNX, statically calibrated on `calibration`, an iterable of feeds
    {"waveform": (B, num_samples) float32, "lengths": (B,) int64}.

    Nodes whose name contains a scope in INT8_EXCLUDE stay float; the rest of the graph runs in FP16.
    """
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise SertrtError(f"unknown calibration method {method!r} (valid: {', '.join(CALIBRATION_METHODS)})")

    with atomic_path(dst) as tmp, tempfile.TemporaryDirectory(dir=Path(dst).parent, prefix=".int8-") as scratch:
        graph = onnx.load(str(src)).graph
        excluded = [n.name for n in graph.node if n.op_type in op_types and any(e in n.name for e in INT8_EXCLUDE)]
        first_conv = next((n for n in graph.node if n.op_type == "Conv"), None)
        if exclude_first_conv and first_conv is not None and "Conv" in op_types:
            excluded.append(first_conv.name)
        quantised = {n.name for n in graph.node if n.op_type in op_types and n.name not in excluded}
        qdq = Path(scratch) / "qdq.onnx"
        # percentile/entropy calibrators print() their progress: stdout is for results (export's "wrote ...")
        with _quiet_preprocess_advice(), contextlib.redirect_stdout(sys.stderr):
            # A path, not a ModelProto: onnxruntime 1.20 saves a ModelProto with its weights as
            # external data in a temp folder and then fails to read them back.
            quantize_static(
                str(src), str(qdq), _FeedReader(calibration),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types), per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                calibrate_method=methods[method],
                extra_options={
                    # TensorRT takes only symmetric INT8 (zero-point 0); ORT's activations default to asymmetric.
                    "ActivationSymmetric": True, "WeightSymmetric": True,
                    # Q/DQ on the inputs of weighted ops only (TensorRT's placement advice), not their outputs.
                    "OpTypesToExcludeOutputQuantization": list(op_types),
                },
            )
        model = onnx.load(str(qdq))
        rewired = _qdq_only_into(model.graph, quantised)
        model = cleanup(model)
        onnx.checker.check_model(model)
        onnx.save(version_converter.convert_version(model, QDQ_FP16_OPSET), str(qdq))
        fp16_report = to_fp16(qdq, tmp)
        model = onnx.load(str(tmp))
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
        "per_channel": True,
        "quantize_linear": ops["QuantizeLinear"],
        "dequantize_linear": ops["DequantizeLinear"],
        "quantised_ops": dict(sorted(quantised_ops.items())),
        "excluded_nodes": sorted(excluded),
        "float_consumers_rewired": rewired,
        "max_abs_zero_point": max((abs(z) for z in zps), default=0),
        "float_part": {k: fp16_report[k] for k in ("kept_fp32", "kept_fp32_nodes", "fp16_nodes")},
        "opset": _opset(model),
    }


@contextlib.contextmanager
def _quiet_preprocess_advice() -> Iterator[None]:
    """Drop quantize_static's "consider pre-processing" advice: quant_pre_process changes nothing on our graph."""

    def drop(record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def zero_points(model: Any) -> list[int]:
    """Every zero-point value of every QuantizeLinear/DequantizeLinear of the ModelProto `model`;
    an omitted zero-point is 0. TensorRT needs all of them 0."""
    from onnx import numpy_helper

    tensors = constant_tensors(model.graph)
    values: list[int] = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero = node.input[2] if len(node.input) > 2 else ""
            values += [int(v) for v in numpy_helper.to_array(tensors[zero]).ravel()] if zero else [0]
    return values
