"""The precisions a bundle can have, and what each must meet against PyTorch FP32: one table that the
export's validation and `sertrt parity` (and `export --test-manifest`) both read.

    fp32          the ONNX as exported
    fp16          FP16 ONNX with FP32 islands (TensorRT's and GPU ONNX Runtime's)
    int8          explicit QDQ INT8, calibrated (TensorRT's input)
    int8-dynamic  MatMul-only dynamic INT8, no calibration (ONNX Runtime CPU's)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Per precision. Validation runs on synthetic speech at shapes the export never traced (logits within
    atol + rtol * |ref|, and top-1 agreement); parity runs on real utterances (top-1 agreement and the UA
    difference in points), whole and in streaming windows."""

    atol: float
    rtol: float
    validation_agreement: float
    parity_agreement: float
    max_delta_ua: float = 1.0
    # ONNX Runtime session config entries every CPU session of this precision gets (export validation, the runtime,
    # examples/bundle_client.py), so a bundle computes the same on every machine and ONNX Runtime version.
    ort_config: tuple[tuple[str, str], ...] = ()

    def validation(self) -> dict[str, Any]:
        """As the bundle card's validation record writes them."""
        return {"atol": self.atol, "rtol": self.rtol, "min_agreement": self.validation_agreement}

    def parity(self) -> dict[str, Any]:
        """As parity reports them."""
        return {"agreement": self.parity_agreement, "delta_ua": self.max_delta_ua}


LIMITS = {
    "fp32": Limits(atol=1e-4, rtol=1e-3, validation_agreement=1.0, parity_agreement=0.999),
    "fp16": Limits(atol=5e-2, rtol=5e-2, validation_agreement=0.99, parity_agreement=0.995),
    # The QDQ graph runs as written (DequantizeLinear, then the FP16 MatMul), not fused: onnxruntime 1.32 on aarch64
    # fuses DQ -> MatMul -> Q into QLinearMatMul, which takes no FP16 scales, and refuses the model at session creation
    # (found by scripts/jetson_check.sh; 1.23 on aarch64 does not fuse there). On x86-64, 1.32's logits are bit-identical
    # either way, while 1.20 and 1.23 fuse some nodes and move them by up to about 0.01. TensorRT, the backend int8 is
    # for, reads the same Q/DQ and fuses it itself.
    "int8": Limits(atol=0.5, rtol=0.5, validation_agreement=0.90, parity_agreement=0.98,
                   ort_config=(("session.disable_quant_qdq", "1"),)),
    "int8-dynamic": Limits(atol=0.5, rtol=0.5, validation_agreement=0.90, parity_agreement=0.98),
}
PRECISIONS = tuple(LIMITS)
