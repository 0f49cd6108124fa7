"""What an epoch's metrics say about speed: FLOPs of a training pass, rates and MFU, and the loss of a micro-batch
in gradient accumulation.

    training_flops(config, head, strategy, num_samples, batch)   a (batch, num_samples) micro-batch, forward + backward
    throughput(seconds, valid_samples, batch_samples, flops, peak) -> audio_seconds_per_s, padding_share, mfu, ...
    micro_batch_loss(logits, labels, smoothing, step_utterances, world_size)

The peak MFU divides by is sertrt.model.flops.datasheet_peak: known for listed CUDA GPUs, else no MFU at all.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core.audio import SAMPLE_RATE
from ..core.dims import HeadDims
from ..model.flops import model_flops


def training_flops(config: dict[str, Any], head: HeadDims, strategy: str, num_samples: int, batch: int) -> float:
    """FLOPs of one training pass over a (batch, num_samples) micro-batch of a wav2vec2 model.

    The forward is sertrt.model.flops.model_flops at the padded shape: padded samples are computed like any
    other, so they count (the padding share says how much of it was padding). A part that trains costs its
    forward plus a backward of about twice that (gradients for inputs and for weights), 3x; a frozen part
    its forward, 1x: full 3x everything; semi: conv_stack 1x, the rest 3x; frozen: the upstream 1x, head 3x.
    """
    parts = model_flops(config, head, num_samples, batch)["parts"]
    once = {"full": set(), "semi": {"conv_stack"}, "frozen": set(parts) - {"head"}}[strategy]
    return sum(v * (1 if k in once else 3) for k, v in parts.items())


def throughput(seconds: float, valid_samples: float, batch_samples: float, flops: float | None,
               peak_flops_per_s: float | None) -> dict[str, float | None]:
    """An epoch's rates from its totals (all ranks): audio_seconds_per_s (valid, cropped audio), padding_share
    (padded samples / all samples of the batch tensors run), flops_per_s (training_flops); None where not counted
    (no waveform batches: the stats-lr floor; no FLOP count: upstreams other than wav2vec2). peak_flops_per_s (of
    all devices) and mfu = flops_per_s / peak_flops_per_s only where the peak is known and the MFU is at most 1
    (above it, the peak is not this device's): absent, not None, elsewhere."""
    flops_per_s = flops / seconds if flops is not None else None
    rates = {
        "audio_seconds_per_s": valid_samples / SAMPLE_RATE / seconds if batch_samples else None,
        "padding_share": 1.0 - valid_samples / batch_samples if batch_samples else None,
        "flops_per_s": flops_per_s,
    }
    if flops_per_s is not None and peak_flops_per_s and flops_per_s <= peak_flops_per_s:
        rates.update(peak_flops_per_s=peak_flops_per_s, mfu=flops_per_s / peak_flops_per_s)
    return rates


def micro_batch_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, step_utterances: int | None,
                     world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (the loss to backpropagate, the rows' summed cross-entropy in float64, for the epoch's mean).

    `step_utterances` None: a fixed batch is its own step, its loss the batch's mean (as before accumulation).
    Else the rows' share of the mean over all the step's utterances on all ranks, so the micro-batches' summed
    gradients equal one big batch's; times `world_size`, because DDP divides the ranks' summed gradient by it.
    """
    if step_utterances is None:
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        return loss, loss.detach().double() * len(labels)
    ce = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="sum")
    return ce * (world_size / step_utterances), ce.detach().double()
