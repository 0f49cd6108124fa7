"""Export stage: checkpoint -> ONNX (fp32/fp16/int8) -> TensorRT engine, packed as a bundle."""

from ..core.versions import require

require("export")
