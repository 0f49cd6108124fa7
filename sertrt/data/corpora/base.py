"""What every corpus adapter shares. An adapter reads one corpus as distributed (folders, file names, label
codes) and says, for every file it recognises, which utterance it is, who speaks and which of LABELS it maps
to (or that the paper drops it). It never reads audio: that is `sertrt.data.prepare`'s job.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...core.errors import SertrtError

EXAMPLES = 5  # how many file names a warning quotes


@dataclass(frozen=True)
class Item:
    source: Path  # absolute path of the file as distributed
    rel: str  # path below the corpus root, '/'-separated: the cache mirrors it
    code: str  # the corpus's own emotion code, as the file or label file spells it
    label: str | None  # one of LABELS; None: the paper drops this code
    speaker: str
    session: str | None = None  # IEMOCAP only
    key: tuple = ()  # identity of the utterance: files with the same key are copies of one
    rank: int = 0  # among copies the lowest rank is kept (e.g. a WAV before the AVI it came from)


@dataclass
class Scan:
    kept: list[Item]  # sorted by rel; one per utterance
    dropped: dict[str, int]  # original code -> number of utterances the paper drops
    found: int  # recognised utterances, kept + dropped
    per_speaker: dict[str, int]  # speaker -> recognised utterances, dropped codes included
    unmatched: list[str]  # audio files whose path does not follow the corpus's naming (rel paths)
    partial: list[str] = field(default_factory=list)  # missing sessions/speakers: an error unless allowed
    warnings: list[str] = field(default_factory=list)  # always just warnings


@dataclass(frozen=True)
class Adapter:
    name: str
    title: str
    language: str  # ISO 639-1
    layout: str  # the expected layout in a few words, for "not this corpus" errors
    label_map: Mapping[str, str | None]  # code -> one of LABELS; None where the paper drops it
    find: Callable[[Path], Scan]  # root (absolute, existing folder) -> Scan
    in_mix: bool = True  # False: a held-out set, kept out of the mixed manifest.jsonl

    def scan(self, root: str | Path) -> Scan:
        """Find this corpus's files under `root`; SertrtError if `root` is missing or not this corpus."""
        root = Path(root).expanduser()
        if not root.exists():
            raise SertrtError(f"{self.name}: corpus root {root} does not exist")
        if not root.is_dir():
            raise SertrtError(f"{self.name}: corpus root {root} is not a folder")
        root = root.resolve()
        result = self.find(root)
        if result.found == 0:
            raise SertrtError(f"no {self.title} files ({self.layout}) under {root}")
        return result


def walk_files(root: Path, subdir: str = "", recursive: bool = True) -> Iterator[Path]:
    """Files below root/subdir in sorted order. Hidden ones are skipped (macOS zips carry `._03a01Fa.wav`
    resource forks); folder links are followed, each real folder once, so a link loop cannot hang the walk."""
    top = root / subdir if subdir else root
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
        if not recursive:
            return


def matching_wavs(
    root: Path, stem: re.Pattern[str], unmatched: list[str], subdir: str = "", recursive: bool = True
) -> Iterator[tuple[Path, str, re.Match[str]]]:
    """(path, path relative to root, stem match) for every WAV below root/subdir whose stem matches;
    the relative paths of WAVs that do not match are appended to `unmatched` (reported, never dropped)."""
    for path in walk_files(root, subdir, recursive):
        if path.suffix.lower() != ".wav":
            continue
        m = stem.match(path.stem)
        if m is None:
            unmatched.append(rel_path(path, root))
            continue
        yield path, rel_path(path, root), m


def rel_path(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def is_avi(path: Path) -> bool:
    """`x.avi`, and eNTERFACE's `s16_su_3avi` whose dot went missing."""
    return path.suffix.lower() == ".avi" or (path.suffix == "" and path.name.lower().endswith("avi"))


def missing(found: Collection[str], expected: Sequence[str], what: str) -> list[str]:
    """["8 of 10 speakers (missing 15, 16)"] when some expected ones were not found, else []."""
    absent = [e for e in expected if e not in found]
    if not absent:
        return []
    return [f"{len(expected) - len(absent)} of {len(expected)} {what} (missing {', '.join(absent)})"]


def examples(names: list[str]) -> str:
    more = f", ... ({len(names) - EXAMPLES} more)" if len(names) > EXAMPLES else ""
    return ", ".join(names[:EXAMPLES]) + more


def finish(items: list[Item], unmatched: list[str], expected_speakers: Sequence[str] = (), what: str = "") -> Scan:
    """Deduplicate copies (same key: the lowest rank, then the first path is kept, the others reported), split
    kept from dropped, and add a partial-corpus message when some of `expected_speakers` (`what`) are absent."""
    best: dict[tuple, Item] = {}
    copies: list[str] = []
    for item in sorted(items, key=lambda i: (i.rank, i.rel)):
        key = item.key or (item.rel,)
        if key in best:
            copies.append(f"{item.rel} (copy of {best[key].rel})")
        else:
            best[key] = item
    unique = sorted(best.values(), key=lambda i: i.rel)
    scan = Scan(
        kept=[i for i in unique if i.label is not None],
        dropped=dict(sorted(Counter(i.code for i in unique if i.label is None).items())),
        found=len(unique),
        per_speaker=dict(sorted(Counter(i.speaker for i in unique).items())),
        unmatched=sorted(unmatched),
    )
    if copies:
        scan.warnings.append(f"{len(copies)} duplicate file(s) ignored: {examples(copies)}")
    if unmatched:
        scan.warnings.append(
            f"{len(unmatched)} audio file(s) do not follow the naming and were ignored: {examples(scan.unmatched)}"
        )
    if expected_speakers and scan.found:
        scan.partial += missing(scan.per_speaker, expected_speakers, what)
    return scan
