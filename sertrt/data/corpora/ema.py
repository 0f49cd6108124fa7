"""USC EMA database (SAIL, English): 3 speakers, anger/happiness/neutrality/sadness.

No public source documents its file naming, and copies differ, so the layout is a regex with named groups
`speaker` and `emotion`, searched in each WAV/FLAC file's path below the root ('/' separators), and the
emotion, lower-cased, is looked up in a code -> label map; codes missing from it are dropped and reported.
The default takes the first folder as the speaker and any folder or file-name token (split at / _ - . or a
space, trailing digits allowed) that is an emotion code: `F1/ang/s01_r1.wav`, `M1/sentence3_happy_2.wav`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ...core.errors import SertrtError
from ...core.labels import LABELS
from .base import Adapter, Item, Scan, finish, rel_path, walk_files

SPELLINGS = {"neutral": ("neu", "neutral", "neutrality"), "happy": ("hap", "happy", "happiness"),
             "angry": ("ang", "anger"), "sad": ("sad", "sadness")}  # label -> the codes that spell it
CODES = {code: label for label, codes in SPELLINGS.items() for code in codes}
_CODES = "|".join(sorted(CODES, key=len, reverse=True))  # longest first: "anger" before "ang"
_SEP = r"[/_\-. ]"
DEFAULT_PATTERN = (
    rf"(?i)^(?P<speaker>[^/]+)/"  # the first folder below the root
    rf"(?:.*?{_SEP})?"  # anything, ending at a token boundary
    rf"(?P<emotion>{_CODES})\d*"  # the emotion token (the first one in the path)
    rf"(?:{_SEP}.*)?\.(?:wav|flac)$"  # the rest of the token boundary, then the extension
)
AUDIO_SUFFIXES = (".wav", ".flac")
LAYOUT = "<speaker>/.../<file>.wav with an ang|hap|neu|sad token in the path"


def make_adapter(pattern: str | None = None, labels: Mapping[str, str] | None = None) -> Adapter:
    """The EMA adapter for a layout: `pattern` (regex) and `labels` (code -> label) override the defaults."""
    source = pattern or DEFAULT_PATTERN
    try:
        regex = re.compile(source)
    except re.error as e:
        raise SertrtError(f"EMA pattern {source!r} is not a valid regex ({e})") from None
    if not {"speaker", "emotion"} <= set(regex.groupindex):
        raise SertrtError(f"EMA pattern {source!r} needs the named groups (?P<speaker>...) and (?P<emotion>...)")
    codes = CODES
    if labels is not None:
        for code, label in labels.items():
            if label not in LABELS:
                raise SertrtError(f"EMA label map: code {code!r} maps to unknown label {label!r} "
                                  f"(valid: {', '.join(LABELS)})")
        codes = {code.lower(): label for code, label in labels.items()}

    def find(root: Path) -> Scan:
        items, unmatched = [], []
        for path in walk_files(root):
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            rel = rel_path(path, root)
            m = regex.search(rel)
            if m is None or not m["speaker"] or not m["emotion"]:
                unmatched.append(rel)
                continue
            code = m["emotion"].lower()
            items.append(Item(path, rel, code, codes.get(code), m["speaker"]))
        return finish(items, unmatched)

    layout = LAYOUT if pattern is None else f"paths matching {pattern!r}"
    return Adapter("ema", "USC EMA", "en", layout, codes, find)


ADAPTER = make_adapter()
