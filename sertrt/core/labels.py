"""The one label order every manifest, checkpoint and bundle uses (the paper's Fig. 3 order)."""

from __future__ import annotations

from .errors import SertrtError

LABELS: tuple[str, ...] = ("neutral", "happy", "angry", "sad")


def label_index(label: str, where: str) -> int:
    """Index of `label` in LABELS; a one-line error naming `where` otherwise."""
    if label not in LABELS:
        raise SertrtError(f"{where}: unknown label {label!r} (valid: {', '.join(LABELS)})")
    return LABELS.index(label)
