"""Export stage: checkpoint -> ONNX (fp32/fp16/int8) -> TensorRT engine, packed as a bundle."""

from ..versions import require

require("export")
