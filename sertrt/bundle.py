"""Deployment bundles: a directory with the ONNX file(s), an optional TensorRT engine and
manifest.json (labels, sample rate, window defaults, I/O spec, precision, opset, source checkpoint
sha256, tool versions, validation results, and the sha256 of every file), checked on load.

numpy-free and torch-free: the runtime reads bundles on devices without either training stack.
Writing goes to a temp folder beside the target; a failed or interrupted export never leaves a
half-written bundle and never replaces a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import SertrtError

FORMAT = "sertrt-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_bundle(target: str | Path, staged: str | Path, manifest: dict[str, Any], overwrite: bool = False) -> Path:
    """Hash every file in `staged`, write its manifest.json, then move it into place as `target`.

    An existing bundle is replaced only with `overwrite`, and only once the new one is complete.
    """
    target, staged = Path(target), Path(staged)
    if target.exists() and not overwrite:
        raise SertrtError(f"{target}: already exists; pass --overwrite to replace it")
    files = sorted(p for p in staged.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                "files": {p.name: sha256_file(p) for p in files}}
    (staged / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        os.replace(target, old / target.name)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def staging_dir(target: str | Path) -> Path:
    """A fresh temp folder beside `target` (same file system, so the final rename is cheap)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging."))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staged, 0o777 & ~mask)  # mkdtemp makes 0700; the bundle should be readable like any folder
    return staged


def add_file(bundle: str | Path, path: str | Path) -> None:
    """Record a file added to an existing bundle (an engine built later) in its manifest, atomically."""
    from . import atomic

    bundle, path = Path(bundle), Path(path)
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"][path.name] = sha256_file(path)
    atomic.write_text(bundle / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def load_bundle(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """manifest.json of a bundle, after checking its format and (with `verify`) every file's sha256."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise SertrtError(f"{path}: not a sertrt bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SertrtError(f"{mpath}: not valid JSON ({e.msg})") from None
    if manifest.get("format") != FORMAT:
        raise SertrtError(f"{mpath}: format {manifest.get('format')!r} is not {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SertrtError(f"{mpath}: bundle format version {manifest.get('format_version')}; this sertrt reads {FORMAT_VERSION}")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            f = path / name
            if not f.is_file():
                raise SertrtError(f"{path}: bundle file {name} is missing")
            if sha256_file(f) != digest:
                raise SertrtError(f"{path}: {name} does not match its sha256 in {MANIFEST} (modified or corrupt)")
    return manifest
