"""Atomic file writes (a temp file beside the target, fsync, rename) and `folder_lock` for a folder one
process writes at a time.

A kill mid-write leaves the previous file, never a half-written one. Temp names carry the writer's pid
(`.<name>.<pid>.<random>.tmp`), so a process's first write into a folder removes what dead writers left
there, never what a live one is writing (once per folder and process: a sweep per write is quadratic).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SertrtError

# What tempfile.mkstemp / mkdtemp make from our prefixes: <prefix><pid>.<8 random chars>[.tmp]
_WRITER = r"(\d+)\.[a-z0-9_]{8}(\.tmp)?"
_ANY_TEMP = r"\..+\."  # the prefix of every atomic_path temp file: .<name>.
_swept: set[Path] = set()  # folders whose dead writers' temp files this process has removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent not in _swept:
        remove_stale(path.parent, _ANY_TEMP)
        _swept.add(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with naming(path):
            yield tmp_path
            # mkstemp makes 0600, and some writers (safetensors) make a new file 0600 too: the result should
            # read like any other file the user's umask lets them write
            os.chmod(tmp_path, 0o666 & ~umask())
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """OSErrors while writing `path` name it: a write of bytes (onnx.save, torch.onnx.export, fsync) names no
    file, and a copy onto a full disk names its source (shutil's sendfile), so the error would not say where."""
    try:
        yield
    except OSError as e:
        if e.errno is not None and (e.filename is None or e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)):
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `folder` itself (no lock file; the OS releases it however the holder ends);
    SertrtError when another process holds it. A folder it created that is still empty at the end is removed."""
    import fcntl

    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SertrtError(f"{folder}: another process is writing this {what} now; wait for it to end or choose "
                              "another folder (nothing was changed)") from None
        try:
            yield
        finally:
            if created:  # by this holder, never by one refused
                with contextlib.suppress(OSError):  # not empty: what was written stays
                    folder.rmdir()
    finally:
        os.close(fd)


def dead_writer(name: str, prefix: str) -> bool:
    """Is `name` a temp file or folder that sertrt made with `prefix` (a regex) in a process that is gone?"""
    match = re.fullmatch(prefix + _WRITER, name)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's live process
        pass
    return False


def remove_stale(folder: Path, prefix: str) -> None:
    """Remove the temp files and staging folders (`<prefix><pid>.<random>[.tmp]`, `prefix` a regex) of
    processes that are gone."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if not dead_writer(entry.name, prefix):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def umask() -> int:
    """The process's umask (reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
