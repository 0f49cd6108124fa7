"""A half-precision model for inference: the upstream's weights cast once to FP16 or BF16 (`half_model`).

FP32 stays where precision matters: the waveform normalisation, norm parameters (torch's norm kernels take half
input with FP32 weights and keep FP32 statistics), the layer-weights softmax and the head. Not autocast: it casts
every weight on every call (hundreds of cast kernels per xlsr-53 forward); cast once, a CUDA graph replays compute.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.errors import SertrtError
from .ser import SERModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def half_model(model: SERModel, precision: str) -> SERModel:
    """Cast a SERModel's upstream to `precision` in place (norms, layer weights and head kept FP32)."""
    if precision not in DTYPES:
        raise SertrtError(f"unknown PyTorch precision {precision!r} (valid: {', '.join(DTYPES)})")
    dtype = DTYPES[precision]
    if dtype == torch.float32:
        return model
    upstream: nn.Module = model.upstream
    upstream.to(dtype)
    for module in upstream.modules():
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            module.float()
    layer_weights = getattr(upstream, "layer_weights", None)
    if isinstance(layer_weights, nn.Parameter):
        layer_weights.data = layer_weights.data.float()
    model.head.float()
    model.compute_dtype = dtype
    return model
