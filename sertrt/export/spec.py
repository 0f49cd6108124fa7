"""The export contract, declared once: it drives torch.onnx.export, the post-export validation,
the TensorRT optimization profile and the bundle's manifest.json (numpy only).

    inputs   waveform (batch, num_samples) float32, raw 16 kHz audio in [-1, 1]
             lengths  (batch,)             int64, valid samples per row (padding is masked)
    output   logits   (batch, num_labels)  float32
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.audio import HOP_SECONDS, RECEPTIVE_FIELD, SAMPLE_RATE, WINDOW_SAMPLES, WINDOW_SECONDS
from ..core.errors import SertrtError

OPSET = 17  # LayerNormalization is one op from 17; TensorRT 10.3 parses it


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    axes: tuple[str, ...]


INPUTS = (
    TensorSpec("waveform", "float32", ("batch", "num_samples")),
    TensorSpec("lengths", "int64", ("batch",)),
)
OUTPUTS = (TensorSpec("logits", "float32", ("batch", "num_labels")),)
# torch.onnx.export's dynamic_axes: every named axis but num_labels, which the checkpoint fixes
DYNAMIC_AXES = {t.name: {i: a for i, a in enumerate(t.axes) if a != "num_labels"} for t in (*INPUTS, *OUTPUTS)}

# Validation runs at shapes the export never traced (2 s at batch 2): the profile's longest input alone, and a
# batch of three short rows (the shortest mostly padding), each also alone.
VALIDATION_SECONDS = (0.5, 1.7, 1.3)


@dataclass
class Profile:
    """A TensorRT optimization profile over (batch, num_samples). A tight default around the
    streaming window: over-wide profiles make wav2vec2 engines about 2x slower."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    min_samples: int = RECEPTIVE_FIELD
    opt_samples: int = WINDOW_SAMPLES
    max_samples: int = 4 * WINDOW_SAMPLES

    def shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """name -> (min, opt, max) shapes for every dynamic input."""
        return {
            "waveform": ((self.min_batch, self.min_samples), (self.opt_batch, self.opt_samples),
                         (self.max_batch, self.max_samples)),
            "lengths": ((self.min_batch,), (self.opt_batch,), (self.max_batch,)),
        }

    def check(self) -> None:
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise SertrtError(f"profile batch must satisfy 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if not (RECEPTIVE_FIELD <= self.min_samples <= self.opt_samples <= self.max_samples):
            raise SertrtError(
                f"profile num_samples must satisfy {RECEPTIVE_FIELD} <= min <= opt <= max, "
                f"got {self.min_samples}/{self.opt_samples}/{self.max_samples}"
            )


@dataclass
class ExportSpec:
    labels: tuple[str, ...]
    sample_rate: int = SAMPLE_RATE
    opset: int = OPSET
    min_samples: int = RECEPTIVE_FIELD  # shorter input must be zero-padded to this by the caller
    window_seconds: float = WINDOW_SECONDS
    hop_seconds: float = HOP_SECONDS
    profile: Profile = field(default_factory=Profile)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = [asdict(t) for t in INPUTS]
        d["outputs"] = [asdict(t) for t in OUTPUTS]
        d["profile_shapes"] = {k: [list(s) for s in v] for k, v in self.profile.shapes().items()}
        return d
