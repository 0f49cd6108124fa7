"""TESS (Toronto Emotional Speech Set, English): `OAF_angry/OAF_back_angry.wav`.

Two female speakers, OAF (older) and YAF (younger). The emotion is the text after the LAST
underscore of the stem (words never contain one), compared case-insensitively: folder and file
capitalisation vary between copies (OAF_Sad, YAF_pleasant_surprised). The search is recursive
and the shallowest copy wins, since the Kaggle copy nests a second full copy one folder deeper.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Adapter, Item, Scan, finish, matching_wavs

CODES = {
    "neutral": "neutral",
    "happy": "happy",
    "angry": "angry",
    "sad": "sad",
    "disgust": None,
    "fear": None,
    "ps": None,  # pleasant surprise
}
SPEAKERS = ("OAF", "YAF")
STEM = re.compile(r"^(OAF|YAF)_(.+)_([a-z]+)$", re.IGNORECASE)


def find(root: Path) -> Scan:
    items, unmatched = [], []
    for path, rel, m in matching_wavs(root, STEM, unmatched):
        speaker, word, code = m[1].upper(), m[2].lower(), m[3].lower()
        depth = rel.count("/")
        items.append(Item(path, rel, code, CODES.get(code), speaker, key=(speaker, word, code), rank=depth))
    return finish(items, unmatched, SPEAKERS, "TESS speakers")


ADAPTER = Adapter("tess", "TESS", "en", "<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav, e.g. "
                  "OAF_angry/OAF_back_angry.wav", CODES, find)
