"""Held-out splits of a manifest: stratified by (corpus, label), optionally speaker-independent."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import SertrtError
from ..core.manifest import Utterance, read_manifest, write_manifest

GROUPINGS = ("none", "speaker")


@dataclass
class SplitOptions:
    manifest: Path
    test_fraction: float = 0.2  # the paper's 4:1 train/test
    seed: int = 0
    group_by: str = "none"  # "speaker": no speaker appears in both parts
    out_dir: Path | None = None  # default: beside the manifest


def split_utterances(
    utterances: list[Utterance], test_fraction: float, seed: int, group_by: str = "none"
) -> tuple[list[Utterance], list[Utterance]]:
    if not 0.0 < test_fraction < 1.0:
        raise SertrtError(f"test fraction must be between 0 and 1, got {test_fraction}")
    if group_by not in GROUPINGS:
        raise SertrtError(f"unknown grouping {group_by!r} (valid: {', '.join(GROUPINGS)})")
    rng = np.random.default_rng(seed)
    test_ids: set[int] = set()
    if group_by == "speaker":
        by_corpus: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, u in enumerate(utterances):
            by_corpus[u.corpus][u.speaker].append(i)
        for corpus in sorted(by_corpus):
            speakers = sorted(by_corpus[corpus])
            if len(speakers) < 2:
                raise SertrtError(f"corpus {corpus!r} has one speaker: a speaker-independent split needs two or more")
            total = sum(len(v) for v in by_corpus[corpus].values())
            taken = 0
            for spk in rng.permutation(speakers):
                if taken >= test_fraction * total:
                    break
                test_ids.update(by_corpus[corpus][spk])
                taken += len(by_corpus[corpus][spk])
    else:
        strata: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, u in enumerate(utterances):
            strata[(u.corpus, u.label)].append(i)
        for key in sorted(strata):
            ids = rng.permutation(strata[key])
            test_ids.update(ids[: int(round(test_fraction * len(ids)))].tolist())
    train = [u for i, u in enumerate(utterances) if i not in test_ids]
    test = [u for i, u in enumerate(utterances) if i in test_ids]
    if not train or not test:
        raise SertrtError("split left the train or test part empty: use more data or another --test-fraction")
    return train, test


MIN_SPEAKERS_FOR_DISJOINT = 4  # fewer, and holding out whole speakers would take a quarter or more of a corpus


def carve_validation(utterances: list[Utterance], fraction: float, seed: int) -> tuple[list[Utterance], list[Utterance], dict[str, str]]:
    """(train, valid, how per corpus): about `fraction` of each corpus held out to choose the best epoch
    on. Whole speakers where a corpus has MIN_SPEAKERS_FOR_DISJOINT or more ("speaker-disjoint"), else
    stratified by label ("speaker-dependent": a TESS-like corpus has two speakers, and one is half of it)."""
    if not 0.0 < fraction < 1.0:
        raise SertrtError(f"--valid-fraction {fraction}: must be between 0 and 1")
    if len(utterances) < 2:  # nothing can be held out: validate on the training data (the run records it)
        return list(utterances), list(utterances), {u.corpus: "none held out: validated on the training data"
                                                    for u in utterances}
    by_corpus: dict[str, list[Utterance]] = defaultdict(list)
    for u in utterances:
        by_corpus[u.corpus].append(u)
    train: list[Utterance] = []
    valid: list[Utterance] = []
    how: dict[str, str] = {}
    rng = np.random.default_rng([seed, 7])
    for k, corpus in enumerate(sorted(by_corpus)):
        utts = by_corpus[corpus]
        speakers = {u.speaker for u in utts if u.speaker}
        disjoint = len(speakers) >= MIN_SPEAKERS_FOR_DISJOINT and all(u.speaker for u in utts)
        try:
            part_train, part_valid = split_utterances(utts, fraction, seed + k, "speaker" if disjoint else "none")
            how[corpus] = "speaker-disjoint" if disjoint else "speaker-dependent"
        except SertrtError:  # too few utterances per label to hold any out: this corpus only trains
            part_train, part_valid = utts, []
            how[corpus] = "none held out (too few utterances)"
        train += part_train
        valid += part_valid
    if not valid:  # a tiny manifest: hold out ceil(fraction * N) utterances at random, at least one
        picked = set(rng.permutation(len(train))[: max(1, int(np.ceil(fraction * len(train))))].tolist())
        valid = [u for i, u in enumerate(train) if i in picked]
        train = [u for i, u in enumerate(train) if i not in picked]
        how = {corpus: "speaker-dependent (random: too few utterances per label)" for corpus in how}
    return train, valid, how


def split_manifest(opts: SplitOptions) -> tuple[Path, Path]:
    """Write train_manifest.jsonl and test_manifest.jsonl; returns their paths."""
    utterances = read_manifest(opts.manifest, check_audio=False)
    train, test = split_utterances(utterances, opts.test_fraction, opts.seed, opts.group_by)
    out_dir = Path(opts.out_dir) if opts.out_dir else Path(opts.manifest).parent
    paths = out_dir / "train_manifest.jsonl", out_dir / "test_manifest.jsonl"
    write_manifest(paths[0], train)
    write_manifest(paths[1], test)
    return paths
