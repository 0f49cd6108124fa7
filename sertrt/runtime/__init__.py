"""Runtime stage: torch-free inference on exported bundles (numpy at import; TensorRT and CUDA imported lazily)."""

from ..core.versions import require

require("runtime")
