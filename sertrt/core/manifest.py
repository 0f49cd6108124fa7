"""Manifests: JSON Lines, one utterance a line, validated on load.

    {"path": "emodb/wav/03a01Wa.wav", "label": "angry", "corpus": "emodb", "language": "de",
     "speaker": "03", "duration": 1.9, "sample_rate": 16000}

Relative paths are relative to the manifest's own folder, so a corpus and its manifests move
together. Every error names the manifest line.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import atomic
from .audio import audio_info
from .errors import SertrtError
from .labels import label_index


@dataclass(frozen=True)
class Utterance:
    path: str  # absolute after read_manifest
    label: str
    corpus: str
    language: str
    speaker: str
    duration: float  # seconds, at the file's own rate
    sample_rate: int  # the file's own rate (the pipeline resamples to audio.SAMPLE_RATE)
    original_path: str | None = None  # the corpus file this was converted from (prepared corpora)
    session: str | None = None  # recording session, where the corpus has them (IEMOCAP)


FIELDS = tuple(f.name for f in dataclasses.fields(Utterance) if f.default is dataclasses.MISSING)
OPTIONAL_FIELDS = tuple(f.name for f in dataclasses.fields(Utterance) if f.default is not dataclasses.MISSING)


# JSON types each field must have (a number may be an int or a float; bool is not a number here).
_TYPES = {"path": (str,), "label": (str,), "corpus": (str,), "language": (str,), "speaker": (str, int),
          "duration": (int, float), "sample_rate": (int,), "original_path": (str, type(None)),
          "session": (str, int, type(None))}


def _check_types(row: dict, where: str) -> None:
    for name, types in _TYPES.items():
        if name in row and (not isinstance(row[name], types) or isinstance(row[name], bool)):
            wanted = " or ".join("null" if t is type(None) else {"str": "a string", "int": "an integer",
                                 "float": "a number"}[t.__name__] for t in types)
            raise SertrtError(f"{where}: field {name!r} is {json.dumps(row[name])}, not {wanted}")
    if row["path"] == "":
        raise SertrtError(f"{where}: field 'path' is empty")
    if not row["duration"] >= 0 or not row["sample_rate"] > 0:  # NaN fails too
        raise SertrtError(f"{where}: duration must be >= 0 and sample_rate > 0 "
                          f"(got {row['duration']} and {row['sample_rate']})")


def read_manifest(path: str | Path, check_audio: bool = True) -> list[Utterance]:
    """Load and validate a manifest. `check_audio` also reads every file's header."""
    path = Path(path)
    if not path.is_file():
        raise SertrtError(f"{path}: no such manifest")
    root = path.parent
    utterances = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SertrtError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise SertrtError(f"{where}: expected a JSON object")
            missing = [k for k in FIELDS if k not in row]
            if missing:
                raise SertrtError(f"{where}: missing field(s) {', '.join(missing)}")
            _check_types(row, where)
            label_index(row["label"], where)
            audio_path = root / row["path"]  # an absolute path replaces root
            if not audio_path.is_file():
                raise SertrtError(f"{where}: audio file {audio_path} does not exist")
            if check_audio:
                try:
                    rate, frames, _ = audio_info(audio_path)
                except SertrtError as e:
                    raise SertrtError(f"{where}: {e}") from None
                if frames == 0:
                    raise SertrtError(f"{where}: {audio_path}: audio is empty (0 samples)")
            utterances.append(Utterance(  # the types are checked: these conversions cannot fail
                path=str(audio_path.resolve()), label=row["label"], corpus=row["corpus"], language=row["language"],
                speaker=str(row["speaker"]), duration=float(row["duration"]), sample_rate=row["sample_rate"],
                **{k: (None if row.get(k) is None else str(row[k])) for k in OPTIONAL_FIELDS},
            ))
    if not utterances:
        raise SertrtError(f"{path}: manifest has no utterances")
    return utterances


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> None:
    """Write atomically, paths relative to the manifest's folder where possible (a relative `Utterance.path`
    is taken relative to the current folder, as Python opens it)."""
    path = Path(path)
    root = path.parent.resolve()
    lines = []
    for utt in utterances:
        row = {k: v for k, v in dataclasses.asdict(utt).items() if v is not None or k in FIELDS}
        p = Path(utt.path).resolve()
        rel = os.path.relpath(p, root)
        row["path"] = str(p) if rel == ".." or rel.startswith(".." + os.sep) else rel
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic.write_text(path, "\n".join(lines) + "\n")
