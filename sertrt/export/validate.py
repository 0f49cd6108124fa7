"""Validate an exported ONNX against PyTorch at shapes the export never traced (traced: 2 s at batch 2): the
profile's longest input alone, and three short rows, checked three ways (docs/export.md):

    one at a time vs torch    batch 1 at every length: a shape or constant frozen at trace time
    batch 3 vs torch          the same answers in a padded batch of an untraced size
    batch 3 vs one at a time  the same runtime with and without padding: padding bugs live there
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.audio import pad_batch
from ..core.metrics import compare_logits
from ..core.precisions import LIMITS
from .spec import VALIDATION_SECONDS


def speech_like(seconds: float, rng: np.random.Generator, sample_rate: int = 16000) -> np.ndarray:
    """A voiced, syllable-rate-modulated harmonic signal with a gliding f0 and a noise floor:
    (num_samples,) float32. Not speech, but never silent and with speech's coarse structure."""
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = rng.uniform(90, 280) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
    voiced = np.sin(2 * np.pi * np.cumsum(f0) / sample_rate) + 0.3 * np.sin(4 * np.pi * np.cumsum(f0) / sample_rate)
    envelope = np.abs(np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    x = rng.uniform(0.05, 0.5) * voiced * envelope + 0.01 * rng.standard_normal(n)
    return x.astype(np.float32)


def validation_batches(sample_rate: int, longest_seconds: float = 8.0) -> list[list[np.ndarray]]:
    """Deterministic speech-like test signals: `longest_seconds` alone, and a batch of VALIDATION_SECONDS."""
    rng = np.random.default_rng(0)
    return [[speech_like(longest_seconds, rng, sample_rate)], [speech_like(s, rng, sample_rate) for s in VALIDATION_SECONDS]]


@dataclass
class Reference:
    """PyTorch's logits for each row of a validation batch, run alone: (B, num_labels)."""

    clips: list[np.ndarray]
    logits: np.ndarray
    sample_rate: int


def torch_references(model, batches: list[list[np.ndarray]], sample_rate: int) -> list[Reference]:
    import torch

    model = model.eval().cpu()
    with torch.no_grad():
        return [Reference(clips, np.concatenate([model(torch.from_numpy(c[None]), torch.tensor([len(c)])).numpy()
                                                 for c in clips]), sample_rate) for clips in batches]


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    required_atol: float  # the atol that would have passed at the spec's rtol
    agreement: float  # top-1 agreement over rows
    rows: int
    passed: bool


def compare(name: str, ref: np.ndarray, out: np.ndarray, atol: float, rtol: float, min_agreement: float) -> Comparison:
    e = compare_logits(ref, out, rtol)
    return Comparison(name, e["max_abs"], e["max_rel"], e["required_atol"], e["agreement"], int(ref.shape[0]),
                      passed=e["required_atol"] <= atol and e["agreement"] >= min_agreement)


def format_table(rows: list[Comparison], atol: float, rtol: float) -> str:
    lines = [f"{'check':<44} {'max abs':>10} {'max rel':>10} {'atol needed':>12} {'top-1':>7}  result  (atol {atol:g}, rtol {rtol:g})"]
    for r in rows:
        lines.append(f"{r.name:<44} {r.max_abs:>10.3g} {r.max_rel:>10.3g} {r.required_atol:>12.3g} "
                     f"{r.agreement:>7.1%}  {'ok' if r.passed else 'FAIL'}")
    return "\n".join(lines)


def validate_onnx(onnx_path: Path, precision: str, references: list[Reference]) -> dict[str, Any]:
    """Compare ONNX Runtime (CPU) with PyTorch FP32's `references` (torch_references); returns a JSON-able report."""
    import onnxruntime as ort

    limits = LIMITS[precision]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    for key, value in limits.ort_config:
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    rows: list[Comparison] = []
    for ref in references:
        clips, n = ref.clips, len(ref.clips)
        seconds = "/".join(f"{len(c) / ref.sample_rate:g}" for c in clips)
        alone = np.concatenate([session.run(["logits"], {"waveform": c[None], "lengths": np.array([len(c)])})[0] for c in clips])
        rows.append(compare(f"{'batch 1' if n == 1 else 'one at a time'} ({seconds} s) vs torch", ref.logits, alone,
                            limits.atol, limits.rtol, limits.validation_agreement))
        if n == 1:
            continue
        waveform, lengths = pad_batch(clips)
        batched = session.run(["logits"], {"waveform": waveform, "lengths": lengths})[0]
        rows.append(compare(f"batch {n} vs torch", ref.logits, batched, limits.atol, limits.rtol, limits.validation_agreement))
        # Batched vs one at a time in the same runtime: only padding can make these differ, except
        # with dynamic INT8, whose activation scales are taken per call over the whole batch.
        rows.append(compare(f"batch {n} vs one at a time", alone, batched, 1e-3 if precision == "fp32" else limits.atol,
                            1e-3 if precision == "fp32" else limits.rtol,
                            limits.validation_agreement if precision == "int8-dynamic" else 1.0))
    return {
        "precision": precision, "tolerances": limits.validation(), "passed": all(r.passed for r in rows),
        "checks": [asdict(r) for r in rows], "table": format_table(rows, limits.atol, limits.rtol),
    }
