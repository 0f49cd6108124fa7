"""IEMOCAP (USC, English): five sessions of dyadic dialogues, labelled per turn.

    SessionN/sentences/wav/<dialog>/<turn>.wav          audio, one file per turn
    SessionN/dialog/EmoEvaluation/<dialog>.txt          labels, one line per turn:
    [6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]

The 4-class practice (SUPERB, s3prl, HGFM's Config.py) keeps neu, hap+exc, ang, sad: 5,531
turns. The speaker of a turn is the session number plus the letter of the turn's LAST field
(`Ses01F_impro01_M000` is spoken by 01M): the letter after "Ses01" only says who wore the
markers in that dialogue.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Adapter, Item, Scan, examples, finish, missing, rel_path, walk_files

CODES = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "happy",  # excitement, merged into happiness: the 5,531-turn 4-class set
    "ang": "angry",
    "sad": "sad",
    "fru": None,  # frustration
    "sur": None,  # surprise
    "fea": None,  # fear
    "dis": None,  # disgust
    "oth": None,  # other
    "xxx": None,  # no agreement
}
SESSIONS = tuple(f"Session{n}" for n in range(1, 6))
TURN = re.compile(r"^Ses(\d\d)[FM]_.+_([FM])[^_]*$")


def _labels(root: Path, session: str) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """turn -> (dialog, code) from the files directly in the session's EmoEvaluation/ (its subfolders hold
    per-annotator ratings), and the lines that did not parse."""
    labels: dict[str, tuple[str, str]] = {}
    bad: list[str] = []
    for path in walk_files(root, f"{session}/dialog/EmoEvaluation", recursive=False):
        if path.suffix.lower() != ".txt":
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.startswith("["):
                continue  # the header and the per-annotator "C-E2:" / "A-E3:" lines
            fields = line.split("\t")
            if len(fields) < 3 or TURN.match(fields[1].strip()) is None:
                bad.append(f"{rel_path(path, root)}:{lineno}")
                continue
            labels[fields[1].strip()] = (path.stem, fields[2].strip().lower())
    return labels, bad


def find(root: Path) -> Scan:
    items, unmatched, bad_lines, no_audio = [], [], [], []
    for session in SESSIONS:
        labels, bad = _labels(root, session)
        bad_lines += bad
        for turn, (dialog, code) in sorted(labels.items()):
            path = root / session / "sentences" / "wav" / dialog / f"{turn}.wav"
            if not path.is_file():
                no_audio.append(rel_path(path, root))
                continue
            m = TURN.match(turn)
            speaker = m[1] + m[2]
            items.append(Item(path, rel_path(path, root), code, CODES.get(code), speaker, session, key=(turn,)))
        for path in walk_files(root, f"{session}/sentences/wav"):
            if path.suffix.lower() == ".wav" and path.stem not in labels:
                unmatched.append(rel_path(path, root))
    scan = finish(items, unmatched)
    if scan.found:
        scan.partial += missing({i.session for i in items}, SESSIONS, "IEMOCAP sessions")
        if no_audio:
            scan.partial.append(f"{len(no_audio)} labelled turn(s) without a WAV file: {examples(no_audio)}")
    if bad_lines:
        scan.warnings.append(f"{len(bad_lines)} EmoEvaluation line(s) could not be parsed: {examples(bad_lines)}")
    return scan


ADAPTER = Adapter("iemocap", "IEMOCAP", "en", "SessionN/sentences/wav/<dialog>/<turn>.wav labelled in "
                  "SessionN/dialog/EmoEvaluation/<dialog>.txt", CODES, find)
