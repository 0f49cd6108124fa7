"""Folders that commands write into: only one that is new, empty, or that sertrt wrote as the same kind
(a marker file, `.sertrt-output.json`, says which). Anything else is someone else's: one line refuses it
and nothing there is touched.
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
        try:
            found = json.loads((path / MARKER).read_text(encoding="utf-8")).get("kind")
        except (OSError, ValueError, AttributeError):
            found = None
        if found == kind:
            return path
        if found is not None:
            raise SertrtError(f"{path}: {option} holds {KINDS.get(found, found)} written by sertrt, not {what}; "
                              "choose another folder")
        names = sorted(p.name for p in path.iterdir())
        if names:
            listing = ", ".join(names[:3]) + (f", ... ({len(names)} entries)" if len(names) > 3 else "")
            raise SertrtError(f"{path}: {option} is a folder sertrt did not write ({listing}); sertrt writes "
                              f"{what} only into a new or empty folder, so it is left as it is")
    if not create:
        return path
    path.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path / MARKER, json.dumps({"kind": kind, "written_by": "sertrt"}) + "\n")
    return path
