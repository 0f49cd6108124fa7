"""Static INT8 for TensorRT: explicit Q/DQ, symmetric INT8, zero-points 0, calibrated on feeds, on an
FP16 graph (what NVIDIA's ModelOpt makes with `high_precision_dtype="fp16"`).

INT8 quantises the encoder's MatMul/Gemm (and Conv if asked) with per-channel weights, on their inputs
only (TensorRT's Q/DQ placement advice; ORT would also fake-quantise their outputs). The head (no INT8
GRU in TensorRT), the feature projection, the first Conv (raw waveform in), LayerNorm and Softmax stay
float, and Q/DQ feed only the quantised ops: ORT hands the dequantised copy to every reader of a
quantised tensor (Shape, Reshape, ...), so those get the float tensor back (.surgery._qdq_only_into).

Everything not quantised runs in FP16, as in the fp16 bundle (.fp16 decides what stays FP32): a
strongly typed TensorRT network runs each op in its graph type, so an INT8 engine whose float part is
FP32 would be slower than the FP16 engine. The Q/DQ scales are FP16 too (DequantizeLinear then feeds the
FP16 MatMul directly, the pattern TensorRT fuses), which needs opset 19: the INT8 graph is converted to
opset 19 first (TensorRT 10.3 parses up to 20).

Why not ModelOpt itself: nvidia-modelopt[onnx] 0.47 pins onnx~=1.21 and, on x86-64 Linux,
onnxruntime-gpu~=1.24.2 and cupy-cuda12x, which would replace the onnxruntime every other stage uses
(and its CUDA 12 wheels) in the export environment; its core also needs torch. The steps here are the
same ones (ORT's calibrator, symmetric per-channel Q/DQ on MatMul, FP16 elsewhere), on our own graph.

ONNX Runtime CPU runs the QDQ model (the post-export check uses it), but slower than FP32: time the
built engine on the GPU.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.atomic import atomic_path
from ...core.choices import CALIBRATION_METHODS
from ...core.errors import SertrtError
from .calibration import _FeedReader
from .surgery import _opset, _qdq_only_into, cleanup, constant_tensors

if TYPE_CHECKING:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

INT8_OP_TYPES = ("MatMul", "Gemm")
# Node-name scopes left in float by to_int8 (TorchScript names carry the module path: /head/gru/fw/GRU).
# The head holds the GRUs (no INT8 GRU in TensorRT). The feature projection writes the transformer's
# residual stream directly, so its quantisation noise is never diluted: on tiny it alone cost 100x the
# logits error of any other MatMul, for 0.2% of XLSR's MatMul FLOPs.
INT8_EXCLUDE = ("/head/", "/feature_projection/")
# On the demo's test speakers all three keep every answer; percentile had the smallest logits error, also once
# convolutions were quantised too (benchmarks/results/int8-calibration.md).
DEFAULT_CALIBRATION = "percentile"
HIGH_PRECISIONS = ("fp16", "fp32")  # what the non-quantised part of the INT8 graph runs in
QDQ_FP16_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take FP16 scales and data


def to_int8(
    src: Path,
    dst: Path,
    calibration: Iterable[dict[str, np.ndarray]] | CalibrationDataReader,
    *,
    per_channel: bool = True,
    op_types: tuple[str, ...] = INT8_OP_TYPES,
    exclude_first_conv: bool = True,
    exclude: tuple[str, ...] = INT8_EXCLUDE,
    method: str = DEFAULT_CALIBRATION,
    preprocess: bool = False,
    high_precision: str = "fp16",
) -> dict[str, Any]:
    """FP32 ONNX -> QDQ INT8 ONNX for TensorRT: symmetric QInt8 activations and weights (zero-points 0),
    per-channel weights, statically calibrated on `calibration` (an iterable of feeds
    {"waveform": (B, num_samples) float32, "lengths": (B,) int64} or a CalibrationDataReader).

    Ops whose node name contains a scope in `exclude` stay float. `preprocess` runs onnxruntime's
    quant_pre_process first (ONNX shape inference + ORT basic optimisation; its symbolic shape
    inference fails on our graph, so that part is skipped). `high_precision`: what the rest runs in,
    "fp16" (TensorRT's INT8 artifact) or "fp32".
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise SertrtError(f"unknown calibration method {method!r} (valid: {', '.join(CALIBRATION_METHODS)})")
    if high_precision not in HIGH_PRECISIONS:
        raise SertrtError(f"unknown high precision {high_precision!r} (valid: {', '.join(HIGH_PRECISIONS)})")
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
        qdq = Path(scratch) / "qdq.onnx"
        # percentile/entropy calibrators print() their progress: stdout is for results (export's "wrote ...")
        with _quiet_preprocess_advice(), contextlib.redirect_stdout(sys.stderr):
            # A path, not a ModelProto: onnxruntime 1.20 saves a ModelProto with its weights as
            # external data in a temp folder and then fails to read them back.
            quantize_static(
                str(model_in), str(qdq), reader,
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
        model = onnx.load(str(qdq))
        rewired = _qdq_only_into(model.graph, quantised)
        model = cleanup(model)
        onnx.checker.check_model(model)
        fp16_report = None
        if high_precision == "fp16":
            from onnx import version_converter

            from .fp16 import to_fp16

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
        "per_channel": per_channel,
        "preprocess": preprocess,
        "quantize_linear": ops["QuantizeLinear"],
        "dequantize_linear": ops["DequantizeLinear"],
        "quantised_ops": dict(sorted(quantised_ops.items())),
        "excluded_nodes": sorted(excluded),
        "float_consumers_rewired": rewired,
        "max_abs_zero_point": max((abs(z) for z in zps), default=0),
        "high_precision": high_precision,
        "float_part": {k: fp16_report[k] for k in ("kept_fp32", "kept_fp32_nodes", "fp16_nodes")} if fp16_report else None,
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


def zero_points(model: str | Path | onnx.ModelProto) -> list[int]:
    """Every zero-point value of every QuantizeLinear/DequantizeLinear (a path or a ModelProto);
    an omitted zero-point is 0. TensorRT needs all of them 0."""
    import onnx
    from onnx import numpy_helper

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    tensors = constant_tensors(model.graph)
    values: list[int] = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or not node.input[2]:
            values.append(0)
            continue
        values += [int(v) for v in numpy_helper.to_array(tensors[node.input[2]]).ravel()]
    return values
