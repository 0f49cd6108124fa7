"""USC EMA database (SAIL, English): 3 speakers, anger/happiness/neutrality/sadness.

No public source documents its file naming, and copies differ, so the layout is a regex with
named groups `speaker` and `emotion`, searched in each WAV/FLAC file's path relative to the root
('/' separators; anchor it with ^...$ for a full match), and the emotion text is looked up,
lower-cased, in a code -> label map. Codes missing from the map are dropped and reported.

The default accepts any path where a folder or file-name token (split at / _ - . or a space,
trailing digits allowed: `ang01`) is an emotion code, with the speaker the first folder:
`F1/ang/s01_r1.wav`, `M1/sentence3_happy_2.wav`, `F2/neutral/03.wav`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ...core.errors import SertrtError
from ...core.labels import LABELS
from .base import Adapter, Item, Scan, finish, rel_path, walk_files

LABEL_MAP: dict[str, str | None] = {
    "neu": "neutral",
    "neutral": "neutral",
    "neutrality": "neutral",
    "hap": "happy",
    "happy": "happy",
    "happiness": "happy",
    "ang": "angry",
    "anger": "angry",
    "sad": "sad",
    "sadness": "sad",
}
MEANING = {"neutral": "neutrality", "happy": "happiness", "angry": "anger", "sad": "sadness"}
CODE_NAMES = {code: MEANING[label] for code, label in LABEL_MAP.items()}
_CODES = "|".join(sorted(LABEL_MAP, key=len, reverse=True))  # longest first: "anger" before "ang"
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
    regex = _compile(pattern or DEFAULT_PATTERN)
    if labels is None:
        label_map = dict(LABEL_MAP)
        code_names = CODE_NAMES
    else:
        bad = {code: label for code, label in labels.items() if label not in LABELS}
        if bad:
            code, label = next(iter(bad.items()))
            valid = ", ".join(LABELS)
            raise SertrtError(f"EMA label map: code {code!r} maps to unknown label {label!r} (valid: {valid})")
        label_map = {code.lower(): label for code, label in labels.items()}
        code_names = {code: "user-defined" for code in label_map}

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
            items.append(Item(path, rel, code, label_map.get(code), m["speaker"]))
        return finish(items, unmatched)

    layout = LAYOUT if pattern is None else f"paths matching {pattern!r}"
    return Adapter("ema", "USC EMA", "en", layout, label_map, code_names, find)


def _compile(pattern: str) -> re.Pattern:
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise SertrtError(f"EMA pattern {pattern!r} is not a valid regex ({e})") from None
    if not {"speaker", "emotion"} <= set(regex.groupindex):
        raise SertrtError(f"EMA pattern {pattern!r} needs the named groups (?P<speaker>...) and (?P<emotion>...)")
    return regex


ADAPTER = make_adapter()
