"""`sertrt evaluate RUN --manifest M`: WA / UA / macro-F1, metrics JSON and a confusion-matrix PNG."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import atomic
from ..core.checkpoint import resolve_checkpoint
from ..core.errors import SertrtError
from ..core.manifest import read_manifest
from ..core.metrics import classification_report, softmax
from ..model.io import load_model
from ..model.ser import SERModel
from .data import AudioSet


@torch.no_grad()
def predict_logits(
    model: SERModel, data: AudioSet, batch_size: int = 8, device: torch.device | str = "cpu",
    max_samples: int | None = None,
) -> np.ndarray:
    """Logits (num_utterances, num_labels) in manifest order, whole utterances unless `max_samples`."""
    was_training = model.training
    model.eval()
    out = np.zeros((len(data), len(model.dims.labels)), dtype=np.float32)
    for indices in data.batches(batch_size, shuffle=False):
        waveform, lengths, _ = data.collate(indices, max_samples=max_samples)
        logits = model(waveform.to(device), lengths.to(device))
        out[indices] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=120)
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
    plt.close(fig)


@dataclass
class EvaluateOptions:
    run: Path
    manifest: Path
    out: Path | None = None  # default RUN/eval
    batch_size: int = 8
    device: str = "cpu"


def evaluate(opts: EvaluateOptions) -> dict[str, Any]:
    if opts.batch_size < 1:
        raise SertrtError(f"--batch-size {opts.batch_size}: must be >= 1")
    ckpt = resolve_checkpoint(opts.run)
    model, header = load_model(ckpt)
    model.to(opts.device)
    data = AudioSet(read_manifest(opts.manifest))
    logits = predict_logits(model, data, opts.batch_size, opts.device)
    labels = list(header.dims.labels)
    report = classification_report(data.labels, logits.argmax(1), labels)
    report.update(checkpoint=str(ckpt), manifest=str(opts.manifest), epoch=header.epoch)
    out_dir = opts.out or (ckpt.parent / "eval")
    stem = Path(opts.manifest).name.removesuffix(".jsonl")
    atomic.write_text(out_dir / f"{stem}.metrics.json", json.dumps(report, indent=1) + "\n")
    probs = softmax(logits)
    atomic.write_text(out_dir / f"{stem}.predictions.jsonl", "".join(
        json.dumps({"path": u.path, "label": u.label, "predicted": labels[int(p.argmax())],
                    "probabilities": [round(float(x), 6) for x in p]}) + "\n"
        for u, p in zip(data.utterances, probs)
    ))
    plot_confusion(
        np.array(report["confusion_matrix"]), labels, out_dir / f"{stem}.confusion.png",
        f"{stem}: WA {report['wa']:.1%}  UA {report['ua']:.1%}  F1 {report['macro_f1']:.1%}",
    )
    report["out_dir"] = str(out_dir)
    return report
