"""Upstreams: waveform in, frame features out (s3prl's contract; the head sees only this).

    forward(waveform (B, num_samples) float32 @ 16 kHz, lengths (B,) int64)
        -> hidden (B, num_frames, hidden_size), frame_lengths (B,) int64

plus `hidden_size`, `downsample_rate` (samples per frame) and `min_samples` (shortest input that yields one
frame). XLSR/wav2vec2 are transformers' Wav2Vec2Model, optionally cut to its first K transformer layers
(`--upstream-layers`; K=0 keeps conv features + positional conv); Fbank and MFCC are computed with torch alone.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn as nn

from ..core.audio import FBANK_FFT, FBANK_HOP, FBANK_WINDOW, RECEPTIVE_FIELD, SAMPLE_RATE
from ..core.dims import UpstreamSpec
from ..core.errors import SertrtError
from .layers import MaskedBiRNN, lengths_to_mask, masked_group_norm, masked_mean, time_mask_spans

# The published architectures (shared/reference/corpora-configs-hgfm.md §2.1). xlsr-53 and
# xls-r-300m share one architecture; they differ in their pretrained weights.
_LARGE_STABLE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    conv_dim=[512] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
    conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, layer_norm_eps=1e-5,
    hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, feat_proj_dropout=0.1,
    layerdrop=0.1, mask_time_prob=0.075, mask_time_length=10,
)
_BASE_LAYOUT = dict(conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False)  # post-LN, group norm
# tiny: XLSR's layout and 20 ms frames, sized for CPU tests; tiny-base: wav2vec2-base's layout at tiny's size
_TINY = dict(_LARGE_STABLE, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
             conv_dim=[32] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, layerdrop=0.0,
             mask_time_prob=0.05, mask_time_length=5)
WAV2VEC2_CONFIGS: dict[str, dict[str, Any]] = {
    "xlsr-53": _LARGE_STABLE,
    "xls-r-300m": _LARGE_STABLE,
    "wav2vec2-base": dict(_LARGE_STABLE, **_BASE_LAYOUT, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072, layerdrop=0.05, mask_time_prob=0.05),
    "tiny": _TINY,
    "tiny-base": dict(_TINY, **_BASE_LAYOUT),
}
MANUAL_UPSTREAMS = ("fbank", "mfcc", "cnn-lstm", "stats-lr")  # stats-lr: the classical floor (with the lr head)
# Attention back-ends whose mask format Wav2Vec2Upstream builds: boolean (sdpa) or additive (eager).
_ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
UPSTREAM_NAMES = (*WAV2VEC2_CONFIGS, *MANUAL_UPSTREAMS)
# What makes weights fit a named config (the rest, dropouts and masking, may differ between checkpoints).
_ARCHITECTURE = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim", "conv_kernel",
                 "conv_stride", "conv_bias", "feat_extract_norm", "do_stable_layer_norm", "num_conv_pos_embeddings",
                 "num_conv_pos_embedding_groups")


def check_layers(name: str, layers: int, total: int) -> None:
    """K must name a prefix of the `total` transformer layers; K=0 keeps conv features only."""
    if not 0 <= layers <= total:
        raise SertrtError(f"--upstream-layers {layers}: {name} has {total} transformer layers (valid: 0 to {total})")


def num_layers(name: str) -> int:
    """Transformer layers of a named wav2vec2 config or a pretrained directory / hub id (config only)."""
    if name in MANUAL_UPSTREAMS:
        raise SertrtError(f"--upstream-layers needs a wav2vec2 upstream, not {name!r} "
                          f"(valid: {', '.join(WAV2VEC2_CONFIGS)} or a pretrained directory / hub id)")
    if name in WAV2VEC2_CONFIGS:
        return WAV2VEC2_CONFIGS[name]["num_hidden_layers"]
    return pretrained_config(name).num_hidden_layers


def pretrained_config(name: str):
    """The Wav2Vec2Config of a pretrained directory / hub id (config.json only). Any other name is a typo, refused at
    once with the valid names instead of after the hub's connection retries; so is another model type (HuBERT,
    data2vec, ...): Wav2Vec2Model would load it with a warning and leave its weights random."""
    if name not in UPSTREAM_NAMES and not Path(name).expanduser().is_dir() and "/" not in name:
        raise SertrtError(f"unknown upstream {name!r} (valid: {', '.join(UPSTREAM_NAMES)}, a pretrained directory, "
                          "or a hub id such as facebook/wav2vec2-large-xlsr-53)")
    from transformers import Wav2Vec2Config

    try:
        config, _ = Wav2Vec2Config.get_config_dict(name)
    except (OSError, ValueError) as e:
        raise SertrtError(f"{name}: cannot load a pretrained wav2vec2 model ({_first_line(e)})") from None
    if config.get("model_type") != "wav2vec2":
        raise SertrtError(f"{name}: its config.json is model_type {config.get('model_type')!r}, not a wav2vec2 model")
    return Wav2Vec2Config.from_dict(config)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


@contextlib.contextmanager
def _held_load_report() -> Iterator[list[logging.LogRecord]]:
    """Hold back transformers' "LOAD REPORT" table: with the upper layers cut on purpose it lists every tensor
    of every dropped layer."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            held.append(record)
            return False
        return True

    logger = logging.getLogger("transformers.modeling_utils")
    logger.addFilter(hold)
    try:
        yield held
    finally:
        logger.removeFilter(hold)


def _load_pretrained(name: str, layers: int | None):
    """Wav2Vec2Model.from_pretrained; with `layers` (checked by resolve_upstream), only the first K are built."""
    from transformers import Wav2Vec2Model

    total = pretrained_config(name).num_hidden_layers
    with _held_load_report() as held:
        try:
            model, info = Wav2Vec2Model.from_pretrained(
                name, output_loading_info=True, **({} if layers is None else {"num_hidden_layers": layers}))
        except (OSError, ValueError) as e:
            raise SertrtError(f"{name}: cannot load a pretrained wav2vec2 model ({_first_line(e)})") from None
    if layers is None or info["missing_keys"] or info["mismatched_keys"]:  # transformers' own full report
        for record in held:
            logging.getLogger(record.name).handle(record)
    if layers is None:
        return model
    # Checkpoint keys are "encoder.layers.<i>...", or "wav2vec2.encoder..." in a pretraining checkpoint.
    dropped = re.compile(r"(^|\.)encoder\.layers\.(\d+)\.")
    other = sorted(k for k in info["unexpected_keys"]
                   if not ((m := dropped.search(k)) and int(m.group(2)) >= layers))
    message = f"{name}: keeping the first {layers} of its {total} transformer layers"
    if other:  # e.g. the quantizer of a Wav2Vec2ForPreTraining checkpoint, unused with or without K
        message += f"; {len(other)} other checkpoint tensors unused ({', '.join(other[:2])}{', ...' if len(other) > 2 else ''})"
    warnings.warn(message, stacklevel=2)
    return model


class Wav2Vec2Upstream(nn.Module):
    """transformers' Wav2Vec2Model behind the upstream contract; last hidden layer out."""

    def __init__(self, config: dict[str, Any], pretrained: str | None = None, layers: int | None = None,
                 layer_weights: bool = False):
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        if pretrained is not None:
            self.model = _load_pretrained(pretrained, layers)
        else:
            self.model = Wav2Vec2Model(Wav2Vec2Config(**config))
        cfg = self.model.config
        self.hidden_size = cfg.hidden_size
        self.downsample_rate = math.prod(cfg.conv_stride)
        self.min_samples = RECEPTIVE_FIELD
        # SUPERB's featurizer: softmax(w)-weighted sum of every layer's states, each layer-normalised (no affine);
        # zeros start as the plain mean. The weights are parameters, so checkpoints and exports carry them.
        self.layer_weights = nn.Parameter(torch.zeros(cfg.num_hidden_layers + 1)) if layer_weights else None
        if cfg._attn_implementation not in _ATTENTION_IMPLEMENTATIONS:
            raise SertrtError(f"attention implementation {cfg._attn_implementation!r} is not supported "
                              f"(valid: {', '.join(_ATTENTION_IMPLEMENTATIONS)})")

    @contextlib.contextmanager
    def attention_implementation(self, name: str) -> Iterator[None]:
        """Run with another of transformers' attention back-ends for a while: the export uses "eager", a
        plain masked softmax, where torch's ONNX export of SDPA with a boolean mask adds IsNaN + Where
        after every Softmax (which keeps TensorRT from fusing attention). Same numbers either way."""
        before = self.model.config._attn_implementation
        self.model.set_attn_implementation(name)
        try:
            yield
        finally:
            self.model.set_attn_implementation(before)

    def config_dict(self) -> dict[str, Any]:
        dropped = ("_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype")
        return {k: v for k, v in self.model.config.to_dict().items() if k not in dropped}

    def frame_lengths(self, lengths: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """Valid frames per row after the conv feature encoder (or its first `layers` layers): (B,) samples
        -> (B,) frames, by the conv arithmetic floor((n - kernel) / stride) + 1 per layer, on the lengths' device."""
        cfg = self.model.config
        for kernel, stride in zip(cfg.conv_kernel[:layers], cfg.conv_stride[:layers]):
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.to(torch.long)

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Wav2Vec2Model's forward, step by step, with the frame mask built arithmetically from `lengths`.

        transformers' own frame mask syncs with the host (a CUDA graph capture fails) and exports as
        ScatterND/CumSum; this one gives a row in a padded batch transformers' numbers for that row alone.
        """
        model = self.model
        features = self._conv_features(waveform, lengths).transpose(1, 2)  # (B, num_frames, C)
        frame_lengths = self.frame_lengths(lengths)
        hidden, _ = model.feature_projection(features)  # (B, num_frames, D)
        frame_mask = lengths_to_mask(frame_lengths, hidden.shape[1]).to(torch.bool)  # (B, num_frames)
        if self.training:
            hidden = self._spec_augment(hidden, frame_lengths, frame_mask)
        hidden = self._encode(hidden, frame_mask)
        if model.adapter is not None:
            hidden = model.adapter(hidden)
        return hidden, frame_lengths

    def _conv_features(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """transformers' conv feature encoder, (B, num_samples) -> (B, C, num_frames), except that a group-norm
        first layer (wav2vec2-base) takes its statistics over each row's valid frames only; later layers are local."""
        encoder = self.model.feature_extractor
        first, *rest = encoder.conv_layers
        if not isinstance(getattr(first, "layer_norm", None), nn.GroupNorm):
            return encoder(waveform)
        valid = self.frame_lengths(lengths, layers=1)

        def run(x: torch.Tensor) -> torch.Tensor:
            return first.activation(masked_group_norm(first.conv(x), valid, first.layer_norm))

        # transformers' layers checkpoint their own forward under --grad-checkpointing; this one likewise
        checkpointed = first.gradient_checkpointing and self.training and torch.is_grad_enabled()
        hidden = waveform[:, None]  # (B, 1, num_samples)
        hidden = first._gradient_checkpointing_func(run, hidden) if checkpointed else run(hidden)
        for layer in rest:
            hidden = layer(hidden)
        return hidden

    def _spec_augment(self, hidden: torch.Tensor, frame_lengths: torch.Tensor,
                      frame_mask: torch.Tensor) -> torch.Tensor:
        """transformers' SpecAugment on the CPU; on a GPU its numpy sampling would sync every step, so the time mask
        is drawn on the device (layers.time_mask_spans). Feature masking (0 in every config here) stays theirs."""
        model, cfg = self.model, self.model.config
        if not hidden.is_cuda or not cfg.apply_spec_augment or cfg.mask_feature_prob > 0:
            return model._mask_hidden_states(hidden, attention_mask=frame_mask)
        if cfg.mask_time_prob <= 0:
            return hidden
        mask = time_mask_spans(frame_lengths, hidden.shape[1], cfg.mask_time_prob, cfg.mask_time_length, cfg.mask_time_min_masks)
        return torch.where(mask[..., None], model.masked_spec_embed.to(hidden.dtype), hidden)

    def _encode(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """transformers' Wav2Vec2Encoder(StableLayerNorm).forward with a ready (B, 1, 1, num_frames)
        key mask: padded frames are zeroed, then never attended to."""
        encoder, cfg = self.model.encoder, self.model.config
        hidden = hidden * frame_mask.unsqueeze(-1).to(hidden.dtype)
        keys = frame_mask[:, None, None, :]
        # sdpa takes a boolean mask (True = attend), eager adds a float bias
        attention_mask = keys if cfg._attn_implementation != "eager" else \
            (~keys).to(hidden.dtype) * torch.finfo(hidden.dtype).min
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not cfg.do_stable_layer_norm:  # post-LN layout (wav2vec2-base): norm before the layers
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden)
        states = [hidden]
        for layer in encoder.layers:
            if not (self.training and cfg.layerdrop > 0.0 and torch.rand([]) < cfg.layerdrop):  # LayerDrop
                hidden = layer(hidden, attention_mask=attention_mask)
            states.append(hidden)
        if cfg.do_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)
        if self.layer_weights is None:
            return hidden
        states[-1] = hidden
        weights = torch.softmax(self.layer_weights, dim=0)
        stacked = torch.stack([nn.functional.layer_norm(h, (self.hidden_size,)) for h in states])  # (L + 1, B, T, D)
        return (weights.view(-1, 1, 1, 1) * stacked).sum(0)


def _mel_filterbank(n_mels: int, n_fft: int, rate: int) -> torch.Tensor:
    """HTK-style triangular mel filters: (n_fft // 2 + 1, n_mels), equally spaced on mel = 2595 log10(1 + f / 700)."""
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    top = (2595.0 * torch.log10(1.0 + torch.tensor(rate / 2.0) / 700.0)).item()
    edges = 700.0 * (10.0 ** (torch.linspace(0, top, n_mels + 2, dtype=torch.float64) / 2595.0) - 1.0)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lower[None]) / (center - lower)[None]
    down = (upper[None] - freqs[:, None]) / (upper - center)[None]
    return torch.clamp(torch.minimum(up, down), min=0.0).to(torch.float32)


def _dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II basis: (n_in, n_out)."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    basis = torch.cos(math.pi / n_in * (n[:, None] + 0.5) * k[None])
    basis[:, 0] *= 1.0 / math.sqrt(2.0)
    return (basis * math.sqrt(2.0 / n_in)).to(torch.float32)


class FbankUpstream(nn.Module):
    """Log-mel filterbank (80-d) or MFCC (13-d): 25 ms Hamming frames every 10 ms, per-utterance CMN."""

    def __init__(self, kind: str = "fbank", n_mels: int = 80, n_mfcc: int = 13):
        super().__init__()
        self.kind = kind
        self.register_buffer("window", torch.hamming_window(FBANK_WINDOW, periodic=False), persistent=False)
        self.register_buffer("mel", _mel_filterbank(n_mels, FBANK_FFT, SAMPLE_RATE), persistent=False)
        if kind == "mfcc":
            self.register_buffer("dct", _dct_matrix(n_mels, n_mfcc), persistent=False)
        self.hidden_size = n_mfcc if kind == "mfcc" else n_mels
        self.downsample_rate = FBANK_HOP
        self.min_samples = FBANK_WINDOW

    def power_spectrum(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(power (B, T, 257) of the Hamming-windowed frames, frame_lengths (B,))."""
        frames = waveform.unfold(1, FBANK_WINDOW, FBANK_HOP) * self.window  # (B, T, 400)
        power = torch.fft.rfft(frames, n=FBANK_FFT).abs().pow(2)  # (B, T, 257)
        return power, torch.div(lengths - FBANK_WINDOW, FBANK_HOP, rounding_mode="floor") + 1

    def log_features(self, power: torch.Tensor) -> torch.Tensor:
        """Power (B, T, 257) -> log-mel (B, T, n_mels), or MFCC (B, T, n_mfcc); before mean normalisation."""
        feats = torch.log(power @ self.mel + 1e-6)
        return feats @ self.dct if self.kind == "mfcc" else feats

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        power, frame_lengths = self.power_spectrum(waveform, lengths)
        feats = self.log_features(power)
        mask = lengths_to_mask(frame_lengths, feats.shape[1]).unsqueeze(-1)
        return (feats - masked_mean(feats, mask).unsqueeze(1)) * mask, frame_lengths


class StatsUpstream(nn.Module):
    """The classical floor's features (`--upstream stats-lr`, with the `lr` head): per 25 ms frame 13 MFCCs and log
    energy; over the valid frames their mean, std, delta std and range, the share of active frames (within 4 nats of
    the loudest) and the log duration: one (B, 1, 58) "frame" per utterance (openSMILE-style functionals)."""

    def __init__(self):
        super().__init__()
        self.mfcc = FbankUpstream("mfcc")
        width = self.mfcc.hidden_size + 1
        self.hidden_size = 4 * width + 2
        self.downsample_rate = FBANK_HOP
        self.min_samples = FBANK_WINDOW

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        power, frame_lengths = self.mfcc.power_spectrum(waveform, lengths)
        energy = torch.log(power.sum(-1, keepdim=True) + 1e-6)  # (B, T, 1)
        x = torch.cat([self.mfcc.log_features(power), energy], dim=-1)  # (B, T, 14)
        mask = lengths_to_mask(frame_lengths, x.shape[1]).unsqueeze(-1)
        mean = masked_mean(x, mask)
        std = torch.sqrt(masked_mean((x - mean.unsqueeze(1)) ** 2, mask) + 1e-6)
        delta, delta_mask = x[:, 2:] - x[:, :-2], mask[:, 2:]  # a delta is valid where its right frame is
        delta_mean = masked_mean(delta, delta_mask)
        delta_std = torch.sqrt(masked_mean((delta - delta_mean.unsqueeze(1)) ** 2, delta_mask) + 1e-6)
        far = 1e4 * (1.0 - mask)  # pushes padded frames out of max and min
        spread = (x - far).amax(1) - (x + far).amin(1)
        loudest = (energy - far[..., :1]).amax(1, keepdim=True)  # (B, 1, 1)
        active = masked_mean((energy > loudest - 4.0).to(x.dtype), mask)  # (B, 1)
        duration = torch.log(lengths.to(x.dtype) / SAMPLE_RATE).unsqueeze(1)  # (B, 1)
        stats = torch.cat([mean, std, delta_std, spread, active, duration], dim=-1)
        return stats.unsqueeze(1), torch.ones_like(frame_lengths)


class CnnLstmUpstream(nn.Module):
    """The CNN-LSTM baseline (Etienne et al.): Fbank -> 2 x (Conv1d, LayerNorm, ReLU) -> BiLSTM."""

    def __init__(self, channels: int = 128, lstm_hidden: int = 128):
        super().__init__()
        self.fbank = FbankUpstream("fbank")
        self.convs = nn.ModuleList([nn.Conv1d(80, channels, 3, padding=1), nn.Conv1d(channels, channels, 3, padding=1)])
        self.norms = nn.ModuleList([nn.LayerNorm(channels), nn.LayerNorm(channels)])
        self.rnn = MaskedBiRNN(nn.LSTM, channels, lstm_hidden)
        self.hidden_size = 2 * lstm_hidden
        self.downsample_rate = FBANK_HOP
        self.min_samples = FBANK_WINDOW

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, frame_lengths = self.fbank(waveform, lengths)
        mask = lengths_to_mask(frame_lengths, x.shape[1]).unsqueeze(-1)
        for conv, norm in zip(self.convs, self.norms):
            # Zeroing padded frames before each conv makes a padded batch see what a lone utterance sees.
            x = torch.relu(norm(conv((x * mask).transpose(1, 2)).transpose(1, 2)))
        fw, bw = self.rnn(x * mask, frame_lengths)
        return torch.cat([fw, bw], dim=-1) * mask, frame_lengths


def build_upstream(spec: UpstreamSpec) -> nn.Module:
    if spec.kind == "wav2vec2":
        return Wav2Vec2Upstream(spec.config, layer_weights=spec.layer_weights)
    if spec.kind in ("fbank", "mfcc"):
        return FbankUpstream(spec.kind)
    if spec.kind == "cnn-lstm":
        return CnnLstmUpstream(**spec.config)
    if spec.kind == "stats-lr":
        return StatsUpstream()
    raise SertrtError(f"unknown upstream kind {spec.kind!r} (valid: wav2vec2, {', '.join(MANUAL_UPSTREAMS)})")


def resolve_upstream(name: str, layers: int | None = None, layer_weights: bool = False,
                     pretrained: str | None = None) -> tuple[UpstreamSpec, nn.Module]:
    """A name in UPSTREAM_NAMES (random init) or a local directory / hub id (pretrained weights), or a named
    wav2vec2 config with `pretrained` weights (a directory / hub id whose config must have the name's architecture);
    `layers=K` keeps the first K transformer layers of a wav2vec2 upstream; `layer_weights` sums all of its layers."""
    if layer_weights and name in MANUAL_UPSTREAMS:
        raise SertrtError(f"--layer-weights needs a wav2vec2 upstream (layers to weigh), not {name!r}")
    source_layers = None
    if layers is not None:
        source_layers = num_layers(name)  # a config read, no weights; rejects the manual upstreams
        check_layers(name, layers, source_layers)
    if pretrained is not None:
        if name not in WAV2VEC2_CONFIGS:
            raise SertrtError(f"--pretrained {pretrained}: names the weights of a wav2vec2 --upstream "
                              f"({', '.join(WAV2VEC2_CONFIGS)}), not of {name!r}")
        config = pretrained_config(pretrained)
        wrong = [f"{k} {getattr(config, k)}, not {v}" for k, v in WAV2VEC2_CONFIGS[name].items()
                 if k in _ARCHITECTURE and getattr(config, k) != v]
        if wrong:
            raise SertrtError(f"--pretrained {pretrained}: its config is not {name}'s architecture ({'; '.join(wrong)})")
    elif name in WAV2VEC2_CONFIGS:
        config = copy.deepcopy(WAV2VEC2_CONFIGS[name])
        if layers is not None:
            config["num_hidden_layers"] = layers
        spec = UpstreamSpec(name, "wav2vec2", config, source_layers, layer_weights)
        up = build_upstream(spec)
        spec.config = up.config_dict()
        return spec, up
    elif name in MANUAL_UPSTREAMS:
        spec = UpstreamSpec(name, name, {})
        return spec, build_upstream(spec)
    up = Wav2Vec2Upstream({}, pretrained=pretrained or name, layers=layers, layer_weights=layer_weights)
    return UpstreamSpec(name, "wav2vec2", up.config_dict(), source_layers, layer_weights), up
