"""PyTorch FP32 against an engine on labelled audio: the one comparison `sertrt parity` and
`sertrt export --test-manifest` both report.

    compare(torch_logits, engine_logits, targets, labels)   (N, num_labels) each -> agreement, WA/UA, deltas
    manifest_scorer(run)(onnx, labels, precision, data_manifest)   export's score of the exported ONNX
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.audio import RECEPTIVE_FIELD, load_audio, run_batched
from ..core.labels import label_index
from ..core.manifest import read_manifest
from ..core.metrics import classification_report, compare_logits
from ..core.runner import Runner

METRICS = ("wa", "ua", "macro_f1")


def run_batches(runner: Runner, clips: list[np.ndarray], batch_size: int = 8) -> np.ndarray:
    """Logits (len(clips), num_labels) float32 in clip order; clips of similar length batched together."""
    return run_batched([len(c) for c in clips], clips.__getitem__,
                       lambda w, n: runner.infer({"waveform": w, "lengths": np.maximum(n, RECEPTIVE_FIELD)})["logits"],
                       batch_size, RECEPTIVE_FIELD).astype(np.float32)


def compare(ref: np.ndarray, out: np.ndarray, targets: np.ndarray, labels: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Reference (PyTorch) vs engine logits (N, num_labels) on N utterances with true `targets` (N,)."""
    r_ref = classification_report(targets, ref.argmax(1), list(labels))
    r_out = classification_report(targets, out.argmax(1), list(labels))
    errors = compare_logits(ref, out)
    return {
        "count": int(len(targets)),
        "agreement": errors["agreement"],
        "torch": {k: r_ref[k] for k in METRICS},
        "engine": {k: r_out[k] for k in METRICS},
        "delta_points": {k: 100 * (r_out[k] - r_ref[k]) for k in METRICS},
        "logits_max_abs": errors["max_abs"],
        "logits_max_rel": errors["max_rel"],
    }


def manifest_scorer(run: Path) -> Callable[[Path, tuple[str, ...], str, Path], dict[str, Any]]:
    """For `export_bundle(..., score=...)`: scores the exported ONNX (ONNX Runtime CPU) against the run's
    checkpoint on a data manifest, every utterance whole; the bundle card records it as `accuracy` (and an INT8
    export is gated on it)."""
    from ..runtime.runners import OrtRunner
    from .torch_runner import TorchRunner

    def score(onnx_path: Path, labels: tuple[str, ...], precision: str, data_manifest: Path) -> dict[str, Any]:
        utterances = read_manifest(data_manifest)
        clips = [load_audio(u.path) for u in utterances]
        targets = np.array([label_index(u.label, u.path) for u in utterances])
        with TorchRunner(run) as reference, OrtRunner(onnx_path, precision=precision) as engine:
            ref, out = run_batches(reference, clips), run_batches(engine, clips)
        return {"manifest": str(data_manifest), **compare(ref, out, targets, labels)}

    return score
