"""Folders that commands write into: sertrt writes only into a folder that is new, empty, or one it
wrote itself, and replaces (`export --overwrite`) only a folder that is a sertrt bundle and nothing
more. Anything else at the path is someone else's: one line refuses it, and nothing there is touched.

    claim_output_dir(path, "run")      train runs, synth corpora, prepared corpora, bench results
    check_replaceable_bundle(path)     export --overwrite

A folder a command claims gets a small marker file naming what wrote it (`.sertrt-output.json`), so a
rerun or resume is recognised; folders written before markers existed are recognised by the files the
command itself always writes (`LEGACY`). numpy-free: every stage uses it.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import atomic
from .errors import SertrtError

MARKER = ".sertrt-output.json"
KINDS = {
    "run": "a training run",
    "synth": "a synthetic corpus",
    "prepared": "a prepared corpus",
    "bench": "benchmark results",
}
# Files each kind always wrote before markers existed: such a folder is sertrt's own.
LEGACY = {
    "run": ("options.json", "last.safetensors", "best.safetensors"),
    "synth": ("README.txt",),  # with manifest.jsonl; README.txt names sertrt (checked below)
    "prepared": ("prepare_report.json",),
    "bench": (),  # the committed benchmarks/results folders carry the marker
}


def _marker_kind(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def _legacy(folder: Path, kind: str) -> bool:
    names = LEGACY[kind]
    if not names or not any((folder / n).is_file() for n in names):
        return False
    if kind == "synth":
        try:
            return "sertrt" in (folder / "README.txt").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    return True


def _listing(folder: Path, limit: int = 3) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")


def claim_output_dir(path: str | Path, kind: str, option: str = "--out", create: bool = True) -> Path:
    """Make `path` a folder of `kind` to write into: created when missing, claimed when empty, accepted
    when sertrt wrote it as the same kind; refused (SertrtError, nothing touched) when it is a file or a
    folder holding anything else. `create=False` only checks (a command that validates its inputs first)."""
    path = Path(path)
    what = KINDS[kind]
    if path.is_symlink() and not path.is_dir() or path.exists() and not path.is_dir():
        raise SertrtError(f"{path}: {option} is an existing file, not a folder; sertrt writes {what} only into a "
                          "new or empty folder, so it is left as it is")
    if path.is_dir():
        found = _marker_kind(path)
        if found == kind or (found is None and _legacy(path, kind)):
            return path
        if found is not None:
            raise SertrtError(f"{path}: {option} holds {KINDS.get(found, found)} written by sertrt, not {what}; "
                              "choose another folder")
        if any(path.iterdir()):
            raise SertrtError(f"{path}: {option} is a folder sertrt did not write ({_listing(path)}); sertrt writes "
                              f"{what} only into a new or empty folder, so it is left as it is")
    if not create:
        return path
    path.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path / MARKER, json.dumps({"kind": kind, "written_by": "sertrt"}) + "\n")
    return path


def check_replaceable_bundle(path: str | Path) -> None:
    """`export --overwrite` replaces a sertrt bundle and nothing else: not a file, not a folder without a
    sertrt manifest.json, not a bundle holding files its manifest does not list (they would go with it)."""
    from .bundle import CARD, DESCRIPTION, FORMAT, LOCAL_FILES

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise SertrtError(f"{path}: is a file, not a sertrt bundle; --overwrite replaces only a bundle, so it is left as it is")
    try:
        description = json.loads((path / CARD).read_text(encoding="utf-8"))
        ours = isinstance(description, dict) and description.get("format") == FORMAT
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise SertrtError(f"{path}: not a sertrt bundle (no sertrt {CARD}); --overwrite replaces only a bundle, "
                          "so it is left as it is")
    listed = set(description.get("files") or {}) | set(description.get(LOCAL_FILES) or {}) | set(DESCRIPTION)
    foreign = sorted(p.name for p in path.iterdir() if p.name not in listed)
    if foreign:
        raise SertrtError(f"{path}: holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}, which the bundle "
                          "does not list; --overwrite would delete it, so the bundle is left as it is")
