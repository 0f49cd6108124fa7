"""The SER model: raw 16 kHz waveform + lengths -> emotion logits (upstream, then head).

    logits (B, num_labels) = SERModel(waveform (B, num_samples), lengths (B,))

Waveform normalisation (zero mean, unit variance over each utterance's valid samples, as the
wav2vec2 feature extractor does) lives inside the model, so the exported graph takes raw audio.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from ..core.choices import HEAD_NAMES, STRATEGIES
from ..core.dims import HeadDims, ModelDims
from ..core.errors import SertrtError
from ..core.labels import LABELS
from .heads import build_head
from .layers import lengths_to_mask
from .upstream import build_upstream, resolve_upstream


def normalize_waveform(waveform: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-utterance zero-mean/unit-variance over valid samples; padding stays 0. (B, N) -> (B, N)."""
    mask = lengths_to_mask(lengths, waveform.shape[1])
    count = lengths.to(waveform.dtype).clamp(min=1.0).unsqueeze(1)
    mean = (waveform * mask).sum(1, keepdim=True) / count
    centered = (waveform - mean) * mask
    var = centered.pow(2).sum(1, keepdim=True) / count
    return centered / torch.sqrt(var + eps)


class SERModel(nn.Module):
    def __init__(self, dims: ModelDims, upstream: nn.Module | None = None):
        super().__init__()
        self.dims = dims
        self.upstream = upstream if upstream is not None else build_upstream(dims.upstream)
        self.head = build_head(dims.head)
        self.frozen_upstream = False  # set by apply_strategy("frozen"): no upstream graph in training
        self.compute_dtype = torch.float32  # the upstream's; half_model (model/half.py) sets FP16 or BF16

    def features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The upstream's frames for raw audio: (B, num_frames, H), frame lengths (B,)."""
        min_samples = self.upstream.min_samples
        if waveform.shape[1] < min_samples:  # shorter than one frame: zero-pad to one frame
            waveform = nn.functional.pad(waveform, (0, min_samples - waveform.shape[1]))
        # maximum, not clamp: clamp on int64 exports as Clip, which TensorRT takes on floats only
        lengths = torch.maximum(lengths, torch.full_like(lengths, min_samples))
        if waveform.dtype != torch.float32:  # the normalisation runs in FP32 whatever the weights are
            waveform = waveform.float()
        normalized = normalize_waveform(waveform, lengths)
        if self.compute_dtype != torch.float32:  # a half model (model/half.py): cast once, at the upstream's door
            normalized = normalized.to(self.compute_dtype)
        return self.upstream(normalized, lengths)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.no_grad() if self.training and self.frozen_upstream else contextlib.nullcontext():
            hidden, frame_lengths = self.features(waveform, lengths)
        if hidden.dtype != torch.float32:  # a half upstream; the head stays FP32
            hidden = hidden.float()
        return self.head(hidden, frame_lengths)


def build_model(
    upstream: str = "tiny",
    head: str = "hgfm",
    proj_size: int | None = None,
    hidden_size: int | None = None,
    dropout: float = 0.1,
    upstream_layers: int | None = None,
    layer_weights: bool = False,
    pretrained: str | None = None,
) -> SERModel:
    """A fresh model: `upstream` is a named config (random init, or `pretrained` weights of that architecture) or
    a pretrained directory / hub id; `upstream_layers=K` keeps its first K transformer layers (stored in the dims)."""
    if upstream == "stats-lr":
        head = "lr"  # the classical floor is one model: utterance statistics + logistic regression
    if head not in HEAD_NAMES:
        raise SertrtError(f"unknown head {head!r} (valid: {', '.join(HEAD_NAMES)})")
    spec, up = resolve_upstream(upstream, upstream_layers, layer_weights, pretrained)
    small = up.hidden_size <= 128  # tiny and the manual baselines get a small head by default
    dims = HeadDims(
        kind=head,
        input_size=up.hidden_size,
        proj_size=proj_size or (64 if small else 256),
        hidden_size=hidden_size or (64 if small else 128),
        attention_size=64 if small else 128,
        num_labels=len(LABELS),
        dropout=dropout,
    )
    return SERModel(ModelDims(upstream=spec, head=dims), upstream=up)


def apply_strategy(model: SERModel, strategy: str, freeze_feature_encoder: bool = False) -> None:
    """The paper's fine-tune strategies: frozen upstream, `semi` (CNN encoder frozen), `full`;
    `freeze_feature_encoder` keeps the CNN encoder fixed under `full` too (which makes it `semi`)."""
    if strategy not in STRATEGIES:
        raise SertrtError(f"unknown strategy {strategy!r} (valid: {', '.join(STRATEGIES)})")
    model.upstream.requires_grad_(strategy != "frozen")
    model.frozen_upstream = strategy == "frozen"
    if strategy == "semi" or freeze_feature_encoder:
        if model.dims.upstream.kind != "wav2vec2":
            what = "strategy 'semi'" if strategy == "semi" else "--freeze-feature-encoder"
            raise SertrtError(f"{what} needs a wav2vec2 upstream, not {model.dims.upstream.name!r}")
        model.upstream.model.freeze_feature_encoder()  # transformers' Wav2Vec2Model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
