"""The one label order every manifest, checkpoint and bundle uses (the paper's Fig. 3 order)."""

from __future__ import annotations

from .errors import SertrtError

LABELS: tuple[str, ...] = ("neutral", "happy", "angry", "sad")
LABEL_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}


def label_index(label: str, where: str = "") -> int:
    """Index of `label` in LABELS; a one-line error naming `where` otherwise."""
    try:
        return LABEL_TO_INDEX[label]
    except KeyError:
        prefix = f"{where}: " if where else ""
        raise SertrtError(f"{prefix}unknown label {label!r} (valid: {', '.join(LABELS)})") from None
