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

    def validation(self) -> dict[str, Any]:
        """As the bundle card's validation record writes them."""
        return {"atol": self.atol, "rtol": self.rtol, "min_agreement": self.validation_agreement}

    def parity(self) -> dict[str, Any]:
        """As parity reports them."""
        return {"agreement": self.parity_agreement, "delta_ua": self.max_delta_ua}


LIMITS = {
    "fp32": Limits(atol=1e-4, rtol=1e-3, validation_agreement=1.0, parity_agreement=0.999),
    "fp16": Limits(atol=5e-2, rtol=5e-2, validation_agreement=0.99, parity_agreement=0.995),
    "int8": Limits(atol=0.5, rtol=0.5, validation_agreement=0.90, parity_agreement=0.98),
    "int8-dynamic": Limits(atol=0.5, rtol=0.5, validation_agreement=0.90, parity_agreement=0.98),
}
PRECISIONS = tuple(LIMITS)
