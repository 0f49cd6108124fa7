"""EMOVO (Italian): `f1/dis-f1-b1.wav`, i.e. `<spk>/<emotion>-<spk>-<sentence>.wav`.

Six actors (f1 f2 f3 m1 m2 m3), 14 sentences, 7 emotions. The speaker is read from the file
name; the search is recursive because some copies sit one folder deeper (EMOVO/f1/...).
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Adapter, Item, Scan, finish, matching_wavs

CODES = {
    "neu": "neutral",
    "gio": "happy",  # joy (gioia)
    "rab": "angry",  # anger (rabbia)
    "tri": "sad",  # sadness (tristezza)
    "dis": None,  # disgust (disgusto)
    "pau": None,  # fear (paura)
    "sor": None,  # surprise (sorpresa)
}
SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
STEM = re.compile(r"^([a-z]{3})-([fm]\d)-([a-z]\d)$", re.IGNORECASE)


def find(root: Path) -> Scan:
    items, unmatched = [], []
    for path, rel, m in matching_wavs(root, STEM, unmatched):
        code, speaker, sentence = m[1].lower(), m[2].lower(), m[3].lower()
        items.append(Item(path, rel, code, CODES.get(code), speaker, key=(code, speaker, sentence)))
    return finish(items, unmatched, SPEAKERS, "EMOVO speakers")


ADAPTER = Adapter("emovo", "EMOVO", "it", "<spk>/<emo>-<spk>-<sentence>.wav, e.g. f1/neu-f1-b1.wav", CODES, find)
