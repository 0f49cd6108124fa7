"""Reduced-precision copies of the FP32 model ONNX, with the precision in the graph (TensorRT 11 is
strongly typed: no builder flags), plus calibration feeds read from a manifest.

    to_fp16(model.onnx, model_fp16.onnx)                  FP16 compute, FP32 waveform/lengths/logits
    to_int8(model.onnx, model_int8.onnx, feeds)           explicit Q/DQ, symmetric INT8, zero-points 0 (TensorRT)
    to_int8_dynamic(model.onnx, model_int8_dynamic.onnx)  dynamic INT8 (ONNX Runtime CPU)
    manifest_calibration(calib_manifest.jsonl)            [{"waveform": (1, num_samples), "lengths": (1,)}]
    split_calibration(calib_manifest.jsonl)               (calibration utterances, held-out utterances)

Graph rewriting shared by these lives in .surgery. ONNX Runtime CPU validates all three (FP16 only as storage at op
boundaries, QDQ slower than FP32): re-check and time the built engine on the GPU.
"""

from .calibration import manifest_calibration, split_calibration
from .dynamic import to_int8_dynamic
from .fp16 import to_fp16
from .int8 import DEFAULT_CALIBRATION, to_int8, zero_points

__all__ = ["DEFAULT_CALIBRATION", "manifest_calibration", "split_calibration", "to_fp16", "to_int8", "to_int8_dynamic", "zero_points"]
