"""Analytic FLOPs of one forward pass, per part, from the model's stored config; and the matmul peak they are against.

A multiply-add counts 2 FLOPs; only weighted ops (convolutions, matmuls, attention products) count: norms, GELU and
softmax are memory-bound and add < 1%. The conv stack runs at 3,200 to 100 steps per second, so "2 x parameters per
frame" undercounts wav2vec2.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.dims import HeadDims

# Dense tensor-core peaks from NVIDIA's datasheets, FLOP/s by matmul dtype ("tf32": fp32 matmuls with
# allow_tf32), keyed by a pattern of torch.cuda.get_device_name; the first match wins. No CPU (its rate is its
# load of the moment) and no Jetson Orin (every module reports "Orin", their peaks differ tenfold).
PEAKS: list[tuple[str, dict[str, float]]] = [
    (r"H100.*PCIe", {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51.2e12}),
    (r"H[12]00.*NVL", {"bf16": 835e12, "fp16": 835e12, "tf32": 417.5e12, "fp32": 60e12}),
    (r"H100|H200", {"bf16": 989.4e12, "fp16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12}),  # SXM, GH200
    (r"A100", {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
    (r"\bL4\b", {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12}),
]


def conv_lengths(num_samples: int, kernels: list[int], strides: list[int]) -> list[int]:
    """Output length of each conv layer (no padding), e.g. 32000 -> [6399, 3199, ..., 99]."""
    out, n = [], num_samples
    for k, s in zip(kernels, strides):
        n = (n - k) // s + 1
        out.append(max(n, 0))
    return out


def head_flops(head: HeadDims, num_frames: int) -> dict[str, float]:
    """Rough FLOPs of the HGFM head (other heads: the projection term alone)."""
    t, h, p = num_frames, head.input_size, head.proj_size
    h1, a = head.hidden_size, head.attention_size
    flops = 2.0 * t * h * p  # FC H -> L
    if head.kind == "hgfm":
        flops += 2 * 3 * 2.0 * t * h1 * (p + h1)  # BiGRU: 3 gates, input and recurrent products, 2 directions
        flops += 2 * 2.0 * t * h1 * a  # perceptron attention U k_i on each half
    return {"head": flops}


def model_flops(config: dict[str, Any], head: HeadDims | None, num_samples: int, batch: int = 1) -> dict[str, Any]:
    """{"total": FLOPs of Wav2Vec2Model's forward (and the head's) for `batch` utterances of `num_samples`, "parts":
    per part, "num_frames"}."""
    dims, kernels, strides = config["conv_dim"], config["conv_kernel"], config["conv_stride"]
    lengths = conv_lengths(num_samples, kernels, strides)
    t = lengths[-1]  # num_frames
    h, f, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    k, g = config["num_conv_pos_embeddings"], config["num_conv_pos_embedding_groups"]
    parts = {
        "conv_stack": sum(2.0 * n * c_out * c_in * kernel
                          for c_in, c_out, kernel, n in zip([1, *dims[:-1]], dims, kernels, lengths)),
        "feature_projection": 2.0 * t * dims[-1] * h,
        "positional_conv": 2.0 * t * h * (h // g) * k,  # grouped Conv1d, "same" length after SamePad
        "attention_qkv_out": layers * 4 * 2.0 * t * h * h,
        "attention_scores": layers * 2 * 2.0 * t * t * h,  # QK^T and AV over all heads
        "ffn": layers * 2 * 2.0 * t * h * f,
    }
    if head is not None:
        parts.update(head_flops(head, t))
    parts = {name: batch * v for name, v in parts.items()}
    return {"total": sum(parts.values()), "parts": parts, "num_frames": t, "batch": batch}


def datasheet_peak(device: Any, dtype: Any) -> float | None:
    """FLOP/s of `device`'s dense matmuls in torch `dtype` from PEAKS; None where unknown (a CPU, a GPU not listed)."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    kind = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32")
    return next((peaks[kind] for pattern, peaks in PEAKS if re.search(pattern, name)), None)


def matmul_peak(device: Any, dtype: Any = None, size: int | None = None, seconds: float = 0.2, trials: int = 5) -> float:
    """Measured FLOP/s of a (size, size) @ (size, size) product in `dtype` on `device` (default: bf16 4096 on CUDA,
    fp32 512 on a CPU): the median of `trials` timings, about `seconds` in all."""
    import statistics
    import time

    import torch

    device = torch.device(device)
    cuda = device.type == "cuda"
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    size = size or (4096 if cuda else 512)
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    a = torch.full((size, size), 1.0 / size, dtype=dtype, device=device)
    c = torch.empty_like(a)
    with torch.no_grad():
        for _ in range(2):  # warm-up (library load, kernel choice)
            torch.mm(a, a, out=c)
        sync()
        t0 = time.perf_counter()
        torch.mm(a, a, out=c)
        sync()
        repeats = max(1, int(seconds / trials / max(time.perf_counter() - t0, 1e-9)))
        rates = []
        for _ in range(trials):
            t0 = time.perf_counter()
            for _ in range(repeats):
                torch.mm(a, a, out=c)
            sync()
            rates.append(2.0 * size**3 * repeats / (time.perf_counter() - t0))
    return statistics.median(rates)
