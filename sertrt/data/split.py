"""Held-out splits of a manifest: whole speakers per language (speaker-independent, the default where the
manifest names speakers), or stratified by (corpus, label) (the paper's random split: speaker-dependent)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.choices import GROUPINGS
from ..core.errors import SertrtError
from ..core.manifest import Utterance, read_manifest, write_manifest

SPEAKER_INDEPENDENT, SPEAKER_DEPENDENT = "speaker-independent", "speaker-dependent"


@dataclass
class SplitOptions:
    manifest: Path
    test_fraction: float = 0.2  # the paper's 4:1 train/test
    seed: int = 0
    group_by: str = "auto"  # "speaker": no speaker appears in both parts; "none": the paper's random split
    out_dir: Path | None = None  # default: beside the manifest


def resolve_grouping(utterances: list[Utterance], group_by: str) -> str:
    """"auto" -> "speaker" where every utterance names its speaker and every language has two or more, else "none"."""
    if group_by not in GROUPINGS:
        raise SertrtError(f"unknown grouping {group_by!r} (valid: {', '.join(GROUPINGS)})")
    if group_by != "auto":
        return group_by
    speakers: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for u in utterances:
        if not u.speaker:
            return "none"
        speakers[u.language].add((u.corpus, u.speaker))
    return "speaker" if speakers and all(len(s) >= 2 for s in speakers.values()) else "none"


def split_kind(train: list[Utterance], test: list[Utterance]) -> str:
    """SPEAKER_INDEPENDENT when every utterance names its speaker and no (corpus, speaker) is on both sides."""
    if not all(u.speaker for u in (*train, *test)):
        return SPEAKER_DEPENDENT
    seen = {(u.corpus, u.speaker) for u in train}
    return SPEAKER_DEPENDENT if any((u.corpus, u.speaker) in seen for u in test) else SPEAKER_INDEPENDENT


def _speakers_near(sizes: dict[tuple[str, str], int], target: float, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Whole speakers whose utterances add up closest to `target`: at least one, never all. Greedy prefixes of
    random orders (a speaker count per language is small), the first best found wins: reproducible for a seed."""
    keys = sorted(sizes)
    best: tuple[float, list[tuple[str, str]]] = (float("inf"), keys[:1])
    for _ in range(64):
        order = [keys[i] for i in rng.permutation(len(keys))]
        total = 0
        for k, key in enumerate(order[:-1]):
            total += sizes[key]
            if abs(total - target) < best[0]:
                best = (abs(total - target), order[: k + 1])
            if total >= target:
                break
    return best[1]


def split_utterances(
    utterances: list[Utterance], test_fraction: float, seed: int, group_by: str = "auto"
) -> tuple[list[Utterance], list[Utterance]]:
    """(train, test). "speaker": per language, whole speakers (a speaker is (corpus, speaker)) adding up to about
    `test_fraction` of that language's utterances; "none": `test_fraction` of every (corpus, label) at random."""
    if not 0.0 < test_fraction < 1.0:
        raise SertrtError(f"test fraction must be between 0 and 1, got {test_fraction}")
    group_by = resolve_grouping(utterances, group_by)
    rng = np.random.default_rng(seed)
    test_ids: set[int] = set()
    if group_by == "speaker":
        groups: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
        for i, u in enumerate(utterances):
            if not u.speaker:
                raise SertrtError(f"{u.path}: no speaker in the manifest, so a speaker-independent split cannot place it "
                                  "(use --group-by none)")
            groups[u.language][(u.corpus, u.speaker)].append(i)
        for language in sorted(groups):
            by_speaker = groups[language]
            if len(by_speaker) < 2:
                raise SertrtError(f"language {language!r} has one speaker: a speaker-independent split needs two or more")
            sizes = {key: len(ids) for key, ids in by_speaker.items()}
            for key in _speakers_near(sizes, test_fraction * sum(sizes.values()), rng):
                test_ids.update(by_speaker[key])
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


MIN_SPEAKERS_FOR_DISJOINT = 4  # fewer, and holding out whole speakers would take a quarter or more of a language


def carve_validation(utterances: list[Utterance], fraction: float, seed: int) -> tuple[list[Utterance], list[Utterance], dict[str, str]]:
    """(train, valid, how per language): about `fraction` of each language held out to choose the best epoch on.
    Whole speakers where a language has MIN_SPEAKERS_FOR_DISJOINT or more ("speaker-disjoint"), else stratified by
    label ("speaker-dependent": a TESS-only English part has two speakers, and one is half of it)."""
    if not 0.0 < fraction < 1.0:
        raise SertrtError(f"--valid-fraction {fraction}: must be between 0 and 1")
    if len(utterances) < 2:  # nothing can be held out: validate on the training data (the run records it)
        return list(utterances), list(utterances), {u.language: "none held out: validated on the training data"
                                                    for u in utterances}
    train: list[Utterance] = []
    valid: list[Utterance] = []
    how: dict[str, str] = {}
    rng = np.random.default_rng([seed, 7])
    for k, language in enumerate(sorted({u.language for u in utterances})):
        utts = [u for u in utterances if u.language == language]
        speakers = {(u.corpus, u.speaker) for u in utts if u.speaker}
        disjoint = len(speakers) >= MIN_SPEAKERS_FOR_DISJOINT and all(u.speaker for u in utts)
        try:
            part_train, part_valid = split_utterances(utts, fraction, seed + k, "speaker" if disjoint else "none")
            how[language] = "speaker-disjoint" if disjoint else SPEAKER_DEPENDENT
        except SertrtError:  # too few utterances per label to hold any out: this language only trains
            part_train, part_valid = utts, []
            how[language] = "none held out (too few utterances)"
        train += part_train
        valid += part_valid
    if not valid:  # a tiny manifest: hold out ceil(fraction * N) utterances at random, at least one
        picked = set(rng.permutation(len(train))[: max(1, int(np.ceil(fraction * len(train))))].tolist())
        valid = [u for i, u in enumerate(train) if i in picked]
        train = [u for i, u in enumerate(train) if i not in picked]
        how = {language: f"{SPEAKER_DEPENDENT} (random: too few utterances per label)" for language in how}
    return train, valid, how


def split_manifest(opts: SplitOptions) -> tuple[Path, Path, str]:
    """Write train_manifest.jsonl and test_manifest.jsonl, never over an existing split; returns their paths
    and the split's kind (SPEAKER_INDEPENDENT or SPEAKER_DEPENDENT)."""
    utterances = read_manifest(opts.manifest, check_audio=False)
    train, test = split_utterances(utterances, opts.test_fraction, opts.seed, opts.group_by)
    out_dir = Path(opts.out_dir) if opts.out_dir else Path(opts.manifest).parent
    paths = out_dir / "train_manifest.jsonl", out_dir / "test_manifest.jsonl"
    for path in paths:
        if path.exists() or path.is_symlink():
            raise SertrtError(f"{path}: already exists; a split is never replaced (a run may have been trained on "
                              "it): choose another --out-dir or remove it")
    write_manifest(paths[0], train)
    write_manifest(paths[1], test)
    return paths[0], paths[1], split_kind(train, test)
