"""Evaluation protocols, saved to PROTOCOL_DIR (protocol.json, fold<k>/{train,valid,test}_manifest.jsonl).

    random   the paper's: stratified 4:1 train/test, then stratified folds on the train part; fold k
             validates on fold k and trains on the others. Speakers appear on both sides.
    speaker  the same with whole speakers: no speaker in two of test / valid / train.
    session  IEMOCAP leave-one-session-out: fold k tests on Session k, validates on 20% of the rest.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.choices import PROTOCOLS
from ..core.errors import SertrtError
from ..core.manifest import Utterance, read_manifest, write_manifest
from .split import split_utterances


@dataclass
class ProtocolOptions:
    manifest: Path
    out: Path
    protocol: str = "random"
    folds: int = 5
    test_fraction: float = 0.2
    seed: int = 0


def _assign_folds(utterances: list[Utterance], folds: int, seed: int, by_speaker: bool) -> list[int]:
    """Fold index per utterance: stratified round-robin per (corpus, label), or whole speakers per corpus."""
    rng = np.random.default_rng([seed, 1])
    fold_of = [0] * len(utterances)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, u in enumerate(utterances):
        groups[(u.corpus, u.speaker if by_speaker else u.label)].append(i)
    if by_speaker:
        for corpus in sorted({c for c, _ in groups}):
            keys = [key for key in groups if key[0] == corpus]
            if len(keys) < folds:
                raise SertrtError(f"corpus {corpus!r} has {len(keys)} training speakers: too few for {folds} speaker folds")
            # Biggest speakers first onto the currently smallest fold keeps the folds balanced.
            sizes = [0] * folds
            for key in sorted(keys, key=lambda k: (-len(groups[k]), rng.random())):
                k = int(np.argmin(sizes))
                sizes[k] += len(groups[key])
                for i in groups[key]:
                    fold_of[i] = k
        return fold_of
    for key in sorted(groups):
        ids = rng.permutation(groups[key])
        offset = int(rng.integers(folds))  # small strata should not all land in fold 0
        for j, i in enumerate(ids):
            fold_of[int(i)] = (j + offset) % folds
    return fold_of


def make_folds(utterances: list[Utterance], opts: ProtocolOptions) -> list[dict[str, list[Utterance]]]:
    if opts.protocol not in PROTOCOLS:
        raise SertrtError(f"unknown protocol {opts.protocol!r} (valid: {', '.join(PROTOCOLS)})")
    if opts.folds < 2:
        raise SertrtError("--folds must be >= 2")
    if opts.protocol == "session":
        missing = sum(u.session is None for u in utterances)
        if missing:
            raise SertrtError(f"{opts.manifest}: protocol 'session' needs a session in every row ({missing} rows have none; IEMOCAP only)")
        folds = []
        for k, session in enumerate(sorted({u.session for u in utterances})):
            rest = [u for u in utterances if u.session != session]
            train, valid = split_utterances(rest, 0.2, opts.seed + k, "none")
            folds.append({"train": train, "valid": valid, "test": [u for u in utterances if u.session == session]})
        return folds
    by_speaker = opts.protocol == "speaker"
    train_part, test = split_utterances(utterances, opts.test_fraction, opts.seed, "speaker" if by_speaker else "none")
    fold_of = _assign_folds(train_part, opts.folds, opts.seed, by_speaker)
    return [
        {
            "train": [u for u, f in zip(train_part, fold_of) if f != k],
            "valid": [u for u, f in zip(train_part, fold_of) if f == k],
            "test": test,
        }
        for k in range(opts.folds)
    ]


def write_protocol(opts: ProtocolOptions) -> Path:
    """Write PROTOCOL_DIR (fold folders, protocol.json last); returns protocol.json's path."""
    utterances = read_manifest(opts.manifest, check_audio=False)
    folds = make_folds(utterances, opts)
    out = Path(opts.out)
    summary = []
    for k, parts in enumerate(folds):
        for name, utts in parts.items():
            if not utts:
                raise SertrtError(f"fold {k}: the {name} part is empty (too little data for this protocol)")
            write_manifest(out / f"fold{k}" / f"{name}_manifest.jsonl", utts)
        summary.append({name: len(utts) for name, utts in parts.items()})
    record = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()}, "fold_sizes": summary}
    path = out / "protocol.json"
    atomic.write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def read_protocol(path: str | Path) -> tuple[dict, list[dict[str, Path]]]:
    """(protocol.json contents, per fold {part: manifest path}) from a protocol folder or its JSON."""
    path = Path(path)
    if path.is_dir():
        path = path / "protocol.json"
    if not path.is_file():
        raise SertrtError(f"{path}: no protocol.json (make one with `sertrt data protocol`)")
    record = json.loads(path.read_text())
    folds = [{part: path.parent / f"fold{k}" / f"{part}_manifest.jsonl" for part in ("train", "valid", "test")}
             for k in range(len(record["fold_sizes"]))]
    return record, folds
