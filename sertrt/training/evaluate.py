"""`sertrt evaluate RUN --manifest M`: WA / UA / macro-F1, metrics JSON and a confusion-matrix PNG.

The manifest is scored as a stream of batches, each decoded when it is scored: memory holds one batch of
audio however long the manifest, and progress moves from the first batch on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import atomic
from ..core.audio import SAMPLE_RATE, load_audio, run_batched
from ..core.checkpoint import resolve_checkpoint
from ..core.errors import SertrtError
from ..core.labels import label_index
from ..core.manifest import read_manifest
from ..core.metrics import classification_report, softmax
from ..model.io import load_model
from ..model.ser import SERModel
from .data import AudioSet
from .distributed import DistInfo, gather_rows


@torch.no_grad()
def predict_logits(model: SERModel, data: AudioSet, batch_size: int = 8, device: torch.device | str = "cpu",
                   info: DistInfo | None = None) -> np.ndarray:
    """Logits (num_utterances, num_labels) of whole utterances in manifest order, each batch decoded when scored.
    Under DDP (`info`) each rank scores every world_size-th batch and every rank gets all rows, to the bit."""
    plan = data.batches(batch_size, shuffle=False)
    if info is not None:
        plan = plan[info.rank :: info.world_size]
    was_training = model.training
    model.eval()
    logits = np.zeros((len(data), len(model.dims.labels)), dtype=np.float32)
    for indices in plan:
        waveform, lengths, _ = data.collate(indices)
        logits[indices] = model(waveform.to(device), lengths.to(device)).float().cpu().numpy()
    model.train(was_training)
    return gather_rows(logits, info) if info is not None else logits


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global figure to close, no backend to pick

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(4.6, 4.0), dpi=120)
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


@dataclass
class EvaluateOptions:
    run: Path
    manifest: Path
    out: Path | None = None  # default RUN/eval
    batch_size: int = 8
    device: str = "cpu"


def evaluate(opts: EvaluateOptions, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score `opts.manifest` in a stream of batches (`progress(done, total)` in utterances) and write the reports."""
    if opts.batch_size < 1:
        raise SertrtError(f"--batch-size {opts.batch_size}: must be >= 1")
    ckpt = resolve_checkpoint(opts.run)
    model, header = load_model(ckpt)
    model.to(opts.device).eval()
    utterances = read_manifest(opts.manifest)
    truth = np.array([label_index(u.label, u.path) for u in utterances], dtype=np.int64)

    def run(waveform: np.ndarray, lengths: np.ndarray) -> np.ndarray:  # (B, num_samples), (B,) -> (B, num_labels)
        return model(torch.from_numpy(waveform).to(opts.device), torch.from_numpy(lengths).to(opts.device)).float().cpu().numpy()

    with torch.no_grad():
        logits = run_batched([u.duration for u in utterances], lambda i: load_audio(utterances[i].path, SAMPLE_RATE),
                             run, opts.batch_size, progress=progress)
    labels = list(header.dims.labels)
    report = classification_report(truth, logits.argmax(1), labels)
    report.update(checkpoint=str(ckpt), manifest=str(opts.manifest), epoch=header.epoch)
    out_dir = opts.out or (ckpt.parent / "eval")
    stem = Path(opts.manifest).name.removesuffix(".jsonl")
    atomic.write_text(out_dir / f"{stem}.metrics.json", json.dumps(report, indent=1) + "\n")
    probs = softmax(logits)
    atomic.write_text(out_dir / f"{stem}.predictions.jsonl", "".join(
        json.dumps({"path": u.path, "label": u.label, "predicted": labels[int(p.argmax())],
                    "probabilities": [round(float(x), 6) for x in p]}) + "\n"
        for u, p in zip(utterances, probs)
    ))
    plot_confusion(np.array(report["confusion_matrix"]), labels, out_dir / f"{stem}.confusion.png",
                   f"{stem}: WA {report['wa']:.1%}  UA {report['ua']:.1%}  F1 {report['macro_f1']:.1%}")
    report["out_dir"] = str(out_dir)
    return report
