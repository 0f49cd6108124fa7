"""A half-precision model for inference: the upstream's weights cast once to FP16 or BF16.

    half_model(model, "fp16")      # in place, returns the model; "bf16" likewise; "fp32" leaves it as it is

What stays FP32: the waveform normalisation (SERModel.features runs it on FP32 audio, then casts), every
LayerNorm and GroupNorm's parameters (torch's norm kernels take half input with FP32 weight and bias and
compute their statistics in FP32), the layer-weights softmax, and the HGFM head (under 1% of the FLOPs; its
GRU and attention softmax stay exact). Attention softmax runs inside SDPA's fused kernels, which accumulate
in FP32 for half inputs.

Why not autocast: autocast casts every weight on every call (about 260 cast kernels per xlsr-53 forward at
batch 1, which made eager FP16 slower than FP32 on an H200); cast once, the forward holds no casts but the
two at the upstream's ends, and a CUDA graph of it replays only compute.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.errors import SertrtError
from .ser import SERModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NORMS = (nn.LayerNorm, nn.GroupNorm)


def compute_dtype(precision: str) -> torch.dtype:
    if precision not in DTYPES:
        raise SertrtError(f"unknown PyTorch precision {precision!r} (valid: {', '.join(DTYPES)})")
    return DTYPES[precision]


def half_model(model: SERModel, precision: str) -> SERModel:
    """Cast a SERModel's upstream to `precision` in place (norms, layer weights and head kept FP32)."""
    dtype = compute_dtype(precision)
    if dtype == torch.float32:
        return model
    upstream: nn.Module = model.upstream
    upstream.to(dtype)
    for module in upstream.modules():
        if isinstance(module, NORMS):
            module.float()
    layer_weights = getattr(upstream, "layer_weights", None)
    if isinstance(layer_weights, nn.Parameter):
        layer_weights.data = layer_weights.data.float()
    model.head.float()
    model.compute_dtype = dtype
    return model
