"""An epoch's speed: FLOPs of a training pass, rates and MFU; and a micro-batch's loss under gradient accumulation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core.audio import SAMPLE_RATE
from ..core.dims import HeadDims
from ..model.flops import model_flops


def training_flops(config: dict[str, Any], head: HeadDims, strategy: str, num_samples: int, batch: int) -> float:
    """FLOPs of one training pass over a (batch, num_samples) wav2vec2 micro-batch, padding included: a trained
    part costs its forward plus a backward of about twice that (3x), a frozen part its forward (1x)."""
    parts = model_flops(config, head, num_samples, batch)["parts"]
    once = {"full": set(), "semi": {"conv_stack"}, "frozen": set(parts) - {"head"}}[strategy]
    return sum(v * (1 if k in once else 3) for k, v in parts.items())


def throughput(seconds: float, valid_samples: float, batch_samples: float, flops: float | None,
               peak_flops_per_s: float | None) -> dict[str, float | None]:
    """An epoch's rates from its totals over all ranks: audio_seconds_per_s, padding_share, flops_per_s (None where
    not counted: no waveform batches, or no FLOP count). peak_flops_per_s and mfu only where the peak is known and
    the MFU is at most 1 (above it, the peak is not this device's)."""
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
    """-> (the loss to backpropagate, the rows' summed cross-entropy in float64). `step_utterances` None: the batch's
    mean; else the rows' share of the mean over the step's utterances on all ranks, times `world_size` because DDP
    divides the summed gradient by it."""
    if step_utterances is None:
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        return loss, loss.detach().double() * len(labels)
    ce = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="sum")
    return ce * (world_size / step_utterances), ce.detach().double()
