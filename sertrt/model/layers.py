"""Mask-aware building blocks shared by upstreams and heads. Shapes: (B, T, D) with lengths (B,)."""

from __future__ import annotations

import torch
import torch.nn as nn


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) -> (B, max_len) float mask, 1 on valid positions; built arithmetically (export-friendly)."""
    steps = torch.arange(max_len, device=lengths.device)
    return (steps.unsqueeze(0) < lengths.unsqueeze(1)).to(torch.float32)


def masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """`norm` (an nn.GroupNorm over time) with each row's statistics over its first `lengths` steps only:
    (B, C, T), (B,) -> (B, C, T); a padded row normalises as it would alone. Statistics in FP32; means over T
    divided by the valid share of T, never a frame count, which passes FP16's 65504 after 20 s (an FP16 export)."""
    batch, channels, steps = x.shape
    mask = lengths_to_mask(lengths, steps)[:, None, None, :]  # (B, 1, 1, T)
    y = x.float().reshape(batch, norm.num_groups, channels // norm.num_groups, steps)  # (B, G, C/G, T)
    share = mask.mean(-1, keepdim=True)  # (B, 1, 1, 1) valid steps / T
    mean = (y * mask).mean((2, 3), keepdim=True) / share
    var = ((y - mean) * mask).pow(2).mean((2, 3), keepdim=True) / share
    y = ((y - mean) / torch.sqrt(var + norm.eps)).reshape(batch, channels, steps)
    if norm.affine:
        y = y * norm.weight[:, None].float() + norm.bias[:, None].float()
    return y.to(x.dtype)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length: (B, T, D) -> (B, T, D); padding stays at the end. A forward
    RNN over this is an exact backward RNN, with Gather ops instead of packed sequences (bad in ONNX/TensorRT)."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    rev = lengths.unsqueeze(1) - 1 - steps
    index = torch.where(rev >= 0, rev, steps)  # (B, T)
    return torch.gather(x, 1, index.unsqueeze(-1).expand_as(x))


def last_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x[b, lengths[b] - 1]: (B, T, D) -> (B, D)."""
    # maximum, not clamp: clamp on int64 exports as Clip, which TensorRT takes on floats only
    # (and relu on int64 has no ONNX Runtime CPU kernel)
    index = torch.maximum(lengths - 1, torch.zeros_like(lengths)).view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return torch.gather(x, 1, index)[:, 0]  # not .squeeze(1): that exports as a runtime If (rank 2 or 3)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T, 1) -> (B, D)."""
    return (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MaskedBiRNN(nn.Module):
    """Bidirectional GRU/LSTM as two forward RNNs, the second over per-utterance reversed input."""

    def __init__(self, rnn_cls: type[nn.Module], input_size: int, hidden_size: int):
        super().__init__()
        self.fw = rnn_cls(input_size, hidden_size, batch_first=True)
        self.bw = rnn_cls(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) -> forward (B, T, h), backward (B, T, h), both in natural time order."""
        fw, _ = self.fw(x)
        bw, _ = self.bw(reverse_padded(x, lengths))
        return fw, reverse_padded(bw, lengths)


def time_mask_spans(frame_lengths: torch.Tensor, num_frames: int, prob: float, length: int,
                    min_masks: int = 0) -> torch.Tensor:
    """SpecAugment's time mask as transformers' `_compute_mask_indices` draws it, on the lengths' device with no host
    sync: (B,) valid frames -> (B, num_frames) bool. Per row, floor(prob * frames / length + e) spans (at least
    `min_masks`, no more than fit) of `length` frames from distinct uniform starts; padding is never masked."""
    device = frame_lengths.device
    lengths = torch.clamp(frame_lengths, max=num_frames).to(torch.float32)

    epsilon = torch.rand((), device=device)
    room = lengths - (length - 1)  # starts in [0, len - length]
    count = torch.clamp(torch.floor(prob * lengths / length + epsilon), min=float(min_masks))
    count = torch.clamp(torch.minimum(count, room), max=float(num_frames // length), min=0.0)  # (B,)
    most = max(int(prob * num_frames / length + 1.0), min_masks, 1)  # from shapes: a Python int, no sync
    # distinct uniform starts: the `most` smallest of random keys, impossible starts' keys pushed past the rest
    positions = torch.arange(num_frames, device=device, dtype=torch.float32)
    keys = torch.where(positions[None, :] < room[:, None], torch.rand((len(lengths), num_frames), device=device), 2.0)
    starts = torch.argsort(keys, dim=1)[:, :most].to(torch.float32)  # (B, most)
    active = torch.arange(most, device=device)[None, :] < count[:, None]  # (B, most)
    t = torch.arange(num_frames, device=device, dtype=torch.float32)[None, None, :]
    inside = (t >= starts[..., None]) & (t < starts[..., None] + length) & active[..., None]
    return inside.any(dim=1)
