"""Model dimensions: everything needed to rebuild a model, stored in every checkpoint (whisper's
`ModelDimensions`). Plain data, no torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .audio import SAMPLE_RATE
from .labels import LABELS


@dataclass
class UpstreamSpec:
    """What a checkpoint stores to rebuild its upstream without the hub or the original files."""

    name: str  # a name in UPSTREAM_NAMES, or the path / hub id the weights came from
    kind: str  # "wav2vec2" | "fbank" | "mfcc" | "cnn-lstm" | "stats-lr"
    config: dict[str, Any] = field(default_factory=dict)  # Wav2Vec2Config.to_dict() or baseline sizes
    source_layers: int | None = None  # layers before `--upstream-layers` cut them to num_hidden_layers; None: uncut
    layer_weights: bool = False  # `--layer-weights`: a learnt softmax-weighted sum of every hidden layer

    @property
    def layers(self) -> dict[str, int]:
        """Transformer layers the model runs, and how many the upstream had before `--upstream-layers`
        ({} for the manual baselines, which have none)."""
        if self.kind != "wav2vec2":
            return {}
        kept = self.config["num_hidden_layers"]
        return {"upstream_layers": kept, "upstream_source_layers": self.source_layers or kept}


@dataclass
class HeadDims:
    kind: str = "hgfm"
    input_size: int = 1024  # H: the upstream's hidden_size
    proj_size: int = 256  # L
    hidden_size: int = 128  # h1 (HGFM), channels (FCN, CNN-SA-DNN)
    attention_size: int = 128  # perceptron attention width
    num_heads: int = 4  # CNN-SA-DNN self-attention heads
    num_labels: int = 4
    dropout: float = 0.1


@dataclass
class ModelDims:
    upstream: UpstreamSpec
    head: HeadDims
    labels: tuple[str, ...] = LABELS
    sample_rate: int = SAMPLE_RATE

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (labels as a list), as checkpoints store it."""
        return {**dataclasses.asdict(self), "labels": list(self.labels)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelDims:
        return cls(
            upstream=UpstreamSpec(**d["upstream"]),
            head=HeadDims(**d["head"]),
            labels=tuple(d["labels"]),
            sample_rate=int(d["sample_rate"]),
        )
