"""The paper's metrics, numpy only (the runtime's parity check uses them too).

WA = accuracy; UA = mean per-class recall; macro-F1 = mean per-class F1. Classes absent from both
targets and predictions are left out of UA and F1 rather than counted as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, computed stably."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def classification_report(targets: np.ndarray, predictions: np.ndarray,
                          labels: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """WA/UA/macro-F1, per-class recall and the confusion matrix (rows: true labels, columns: predictions) as
    JSON-able values."""
    n = len(labels)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(targets, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    true, pred = cm.sum(1), cm.sum(0)
    tp = np.diag(cm).astype(np.float64)
    present = true > 0
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    counted = present | (pred > 0)
    total = int(cm.sum())
    return {
        "wa": float(tp.sum() / total) if total else 0.0,
        "ua": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[counted].mean()) if counted.any() else 0.0,
        "per_class_recall": {name: float(recall[i]) if present[i] else None for i, name in enumerate(labels)},
        "confusion_matrix": cm.tolist(), "labels": list(labels), "count": total,
    }


def compare_logits(ref: np.ndarray, out: np.ndarray, rtol: float = 0.0) -> dict[str, float]:
    """Logits `out` against the reference `ref`, both (N, num_labels), as validation, parity and benchmarks report
    them: max absolute and relative error, the smallest atol that passes |out - ref| <= atol + rtol * |ref|
    everywhere (NaN if `out` has NaN), the cosine over all values and top-1 agreement over rows."""
    a, b = ref.astype(np.float64), out.astype(np.float64)
    diff, scale = np.abs(a - b), np.abs(a)
    return {"max_abs": float(diff.max()), "max_rel": float((diff / np.maximum(scale, 1e-6)).max()),
            "required_atol": float(np.maximum((diff - rtol * scale).max(), 0.0)),
            "cosine": float(a.ravel() @ b.ravel() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)),
            "agreement": float(np.mean(a.argmax(-1) == b.argmax(-1)))}
