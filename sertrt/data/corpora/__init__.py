"""Corpus adapters, one module per corpus: each reads one corpus in its distributed layout and label codes.
`ADAPTERS[name].label_map` is its code -> label table (None: dropped, as in the paper)."""

from __future__ import annotations

from collections.abc import Mapping

from ...core.errors import SertrtError
from . import ema, emodb, emovo, enterface, iemocap, savee, tess
from .base import Adapter

# The order manifests and reports list corpora in.
ADAPTERS: dict[str, Adapter] = {
    m.ADAPTER.name: m.ADAPTER for m in (iemocap, emodb, tess, savee, ema, emovo, enterface)
}


def get_adapter(name: str, ema_pattern: str | None = None, ema_labels: Mapping[str, str] | None = None) -> Adapter:
    """The adapter called `name`; the EMA options only apply to "ema"."""
    if name not in ADAPTERS:
        raise SertrtError(f"unknown corpus {name!r} (valid: {', '.join(ADAPTERS)})")
    if name == "ema":
        return ema.make_adapter(ema_pattern, ema_labels)
    return ADAPTERS[name]
