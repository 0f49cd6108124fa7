"""Validate an exported ONNX against PyTorch at shapes the export never traced.

Every precision is checked at once after export (optimum's `_run_validation`, Polygraphy's
`CompareFunc.simple`): per output, max absolute and relative error, the smallest atol (at the
spec's rtol) that would have passed, and top-1 agreement.

    refs = torch_references(model, validation_batches(rate, longest_seconds), rate)  # PyTorch, once per export
    report = validate_onnx(onnx_path, precision, refs)                                # per precision, one session

Two batches at untraced shapes (traced: 2 s at batch 2): the profile's longest input alone (8 s by default:
the longest any runtime gives the graph) and three short rows (0.5, 1.7, 1.3 s), checked three ways, each
catching what the other two cannot:

    one at a time vs torch    batch 1 at every length: a shape or constant frozen at trace time
    batch 3 vs torch          the same answers in a padded batch of an untraced size
    batch 3 vs one at a time  the same runtime with and without padding, at a tighter tolerance for fp32:
                              padding bugs live there (for INT8 dynamic, scales differ per call)

PyTorch runs each row alone (the answer a user means), once for every precision exported from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.audio import pad_batch
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


def validation_batches(sample_rate: int, longest_seconds: float = 8.0, seed: int = 0) -> list[list[np.ndarray]]:
    """Deterministic speech-like test signals: `longest_seconds` alone, and a batch of VALIDATION_SECONDS."""
    rng = np.random.default_rng(seed)
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

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def compare(name: str, ref: np.ndarray, out: np.ndarray, atol: float, rtol: float, min_agreement: float) -> Comparison:
    diff = np.abs(ref.astype(np.float64) - out.astype(np.float64))
    scale = np.abs(ref.astype(np.float64))
    required = float(np.max(diff - rtol * scale)) if diff.size else 0.0
    agreement = float(np.mean(ref.argmax(-1) == out.argmax(-1))) if ref.size else 1.0
    return Comparison(
        name=name, max_abs=float(diff.max()), max_rel=float((diff / np.maximum(scale, 1e-6)).max()),
        required_atol=max(required, 0.0), agreement=agreement, rows=int(ref.shape[0]),
        passed=bool(np.all(diff <= atol + rtol * scale)) and agreement >= min_agreement,
    )


def format_table(rows: list[Comparison], atol: float, rtol: float) -> str:
    lines = [f"{'check':<44} {'max abs':>10} {'max rel':>10} {'atol needed':>12} {'top-1':>7}  result  (atol {atol:g}, rtol {rtol:g})"]
    for r in rows:
        lines.append(f"{r.name:<44} {r.max_abs:>10.3g} {r.max_rel:>10.3g} {r.required_atol:>12.3g} "
                     f"{r.agreement:>7.1%}  {'ok' if r.passed else 'FAIL'}")
    return "\n".join(lines)


def validate_onnx(onnx_path: Path, precision: str, references: list[Reference], threads: int = 2) -> dict[str, Any]:
    """Compare ONNX Runtime (CPU) with PyTorch FP32's `references` (torch_references); returns a JSON-able report."""
    import onnxruntime as ort

    limits = LIMITS[precision]
    tol = limits.validation()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
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
        "precision": precision, "tolerances": tol, "passed": all(r.passed for r in rows),
        "checks": [r.as_dict() for r in rows], "table": format_table(rows, limits.atol, limits.rtol),
    }
