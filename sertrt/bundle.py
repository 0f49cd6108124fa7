"""Deployment bundles: a directory with the ONNX file(s), an optional TensorRT engine and
manifest.json (labels, sample rate, window defaults, I/O spec, precision, opset, source checkpoint
sha256, tool versions, validation results, and the sha256 of every file), checked on load.

What loading checks (`load_bundle`): manifest.json against manifest.sha256 (a digest of its canonical
form, so labels, window, model name cannot be edited unnoticed); every listed name is a plain file in
the bundle (no folders, no `..`, no links out); the list is not empty and holds the model; every file
against its sha256; with `trust=PUBKEY`, manifest.sig, an ed25519 signature over the canonical
manifest (which holds every file's hash). A digest protects against corruption and careless edits,
not against someone who rewrites both files: that is what the signature is for. Files a device adds
itself (a TensorRT engine built there) go under `local_files`: hashed and digested, not signed.

numpy-free and torch-free: the runtime reads bundles on devices without either training stack.
Writing goes to a temp folder beside the target; a failed or interrupted export never leaves a
half-written bundle and never replaces a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import SertrtError

FORMAT = "sertrt-bundle"
FORMAT_VERSION = 2  # 2: manifest.json covered by manifest.sha256; paths checked; optional ed25519 signature
MANIFEST = "manifest.json"
DIGEST = "manifest.sha256"  # sha256 of the manifest's canonical form: the description itself is covered
SIGNATURE = "manifest.sig"  # optional: ed25519 over the canonical manifest without `local_files`
LOCAL_FILES = "local_files"  # files a device added itself (a TensorRT engine): hashed, never signed
DESCRIPTION = (MANIFEST, DIGEST, SIGNATURE)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical(manifest: dict[str, Any], signed_part: bool = False) -> bytes:
    """The bytes the digest (all of it) and the signature (without `local_files`) cover: sorted keys,
    no whitespace, UTF-8; independent of how manifest.json happens to be indented."""
    body = {k: v for k, v in manifest.items() if not (signed_part and k == LOCAL_FILES)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _write_description(folder: Path, manifest: dict[str, Any], signature: bytes | None = None) -> None:
    """manifest.json, then manifest.sha256 (and manifest.sig), each written to a temp file and renamed."""
    from . import atomic

    atomic.write_text(folder / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    atomic.write_text(folder / DIGEST, hashlib.sha256(canonical(manifest)).hexdigest() + "\n")
    if signature is not None:
        atomic.write_text(folder / SIGNATURE, signature.hex() + "\n")


def write_bundle(target: str | Path, staged: str | Path, manifest: dict[str, Any], overwrite: bool = False,
                 sign_key: str | Path | None = None) -> Path:
    """Hash every file in `staged`, write its manifest.json and digest (and, with `sign_key`, an ed25519
    signature), then move it into place as `target`.

    An existing bundle is replaced only with `overwrite`, and only once the new one is complete.
    """
    from .outputs import check_replaceable_bundle

    target, staged = Path(target), Path(staged)
    if target.exists() and not overwrite:
        raise SertrtError(f"{target}: already exists; pass --overwrite to replace it")
    check_replaceable_bundle(target)  # checked again now: the folder may have changed during the export
    files = sorted(p for p in staged.iterdir() if p.is_file() and p.name not in DESCRIPTION)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest,
                "files": {p.name: sha256_file(p) for p in files}}
    signature = sign(canonical(manifest, signed_part=True), sign_key) if sign_key is not None else None
    _write_description(staged, manifest, signature)
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old.{os.getpid()}."))
        os.replace(target, old / target.name)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def staging_dir(target: str | Path) -> Path:
    """A fresh temp folder beside `target` (same file system, so the final rename is cheap)."""
    from .atomic import remove_stale

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _restore_interrupted_swap(target)
    for kind in ("staging", "old"):  # what a killed export left beside this target
        remove_stale(target.parent, re.escape(f".{target.name}.{kind}."))
    staged = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging.{os.getpid()}."))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(staged, 0o777 & ~mask)  # mkdtemp makes 0700; the bundle should be readable like any folder
    return staged


def _restore_interrupted_swap(target: Path) -> None:
    """An export killed between its two renames (old bundle aside, new one not yet in place) left the
    previous bundle in `.<name>.old.<pid>.*/<name>` and nothing at `target`: put it back."""
    from .atomic import dead_writer

    if target.exists() or target.is_symlink():
        return
    for old in sorted(target.parent.glob(f".{target.name}.old.*/{target.name}")):
        if dead_writer(old.parent.name, re.escape(f".{target.name}.old.")):  # a live export: leave it be
            os.replace(old, target)
            return


def add_file(bundle: str | Path, *paths: str | Path) -> None:
    """Record files a device added to a verified bundle (an engine built there) under `local_files`:
    hashed and covered by the digest like every file, outside what a signature covers."""
    bundle = Path(bundle)
    manifest = load_bundle(bundle)
    local = dict(manifest.get(LOCAL_FILES) or {})
    for path in map(Path, paths):
        if path.parent.resolve() != bundle.resolve():
            raise SertrtError(f"{path}: not inside the bundle {bundle}")
        local[path.name] = sha256_file(path)
    _write_description(bundle, {**manifest, LOCAL_FILES: local})


def _safe_name(bundle: Path, name: Any) -> Path:
    """A file the manifest lists must be a plain name inside the bundle (no folders, no .., no link out)."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or name in DESCRIPTION:
        raise SertrtError(f"{bundle}: {MANIFEST} lists {name!r}, which is not a file name inside the bundle")
    f = bundle / name
    if f.is_symlink() or (f.exists() and f.resolve().parent != bundle.resolve()):
        raise SertrtError(f"{bundle}: {name} is a link; bundle files must be real files inside the bundle")
    return f


def load_bundle(path: str | Path, verify: bool = True, trust: str | Path | None = None) -> dict[str, Any]:
    """manifest.json of a bundle, after checking its format and (with `verify`) its digest, every path
    and every file's sha256; with `trust` (an ed25519 public key, PEM) also its signature."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise SertrtError(f"{path}: not a sertrt bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SertrtError(f"{mpath}: not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SertrtError(f"{mpath}: format {manifest.get('format') if isinstance(manifest, dict) else None!r} is not {FORMAT!r}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        hint = "; export it again with this sertrt" if isinstance(version, int) and version < FORMAT_VERSION else ""
        raise SertrtError(f"{mpath}: bundle format version {version}; this sertrt reads {FORMAT_VERSION}{hint}")
    if not verify and trust is None:
        return manifest
    digest = path / DIGEST
    if not digest.is_file():
        raise SertrtError(f"{path}: {DIGEST} is missing: {MANIFEST} cannot be checked")
    if digest.read_text(encoding="utf-8", errors="replace").strip() != hashlib.sha256(canonical(manifest)).hexdigest():
        raise SertrtError(f"{path}: {MANIFEST} does not match {DIGEST} (modified or corrupt)")
    files, local = manifest.get("files"), manifest.get(LOCAL_FILES) or {}
    if not isinstance(files, dict) or not files or not isinstance(local, dict):
        raise SertrtError(f"{path}: {MANIFEST} lists no files to check")
    if manifest.get("model") not in files:
        raise SertrtError(f"{path}: {MANIFEST} names model {manifest.get('model')!r}, which is not one of its files")
    for name, expected in {**files, **local}.items():
        f = _safe_name(path, name)
        if not f.is_file():
            raise SertrtError(f"{path}: bundle file {name} is missing")
        if sha256_file(f) != expected:
            raise SertrtError(f"{path}: {name} does not match its sha256 in {MANIFEST} (modified or corrupt)")
    if trust is not None:
        sig = path / SIGNATURE
        if not sig.is_file():
            raise SertrtError(f"{path}: not signed ({SIGNATURE} is missing), and --trust requires a signature")
        try:
            signature = bytes.fromhex(sig.read_text(encoding="utf-8", errors="replace").strip())
        except ValueError:
            raise SertrtError(f"{path}: {SIGNATURE} is not a hex signature") from None
        verify_signature(canonical(manifest, signed_part=True), signature, trust, path)
    return manifest


# ---------------------------------------------------------------------------------------------
# ed25519 signing (optional: `pip install 'sertrt[sign]'`, the cryptography package)


def _crypto():
    from .versions import require

    require("sign")  # one line naming the package when it is missing or too old
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519, InvalidSignature


def _read_key(path: str | Path, private: bool):
    serialization, ed25519, _ = _crypto()
    kind = "private" if private else "public"
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SertrtError(f"{path}: cannot read the {kind} key ({e.strerror})") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as e:
        raise SertrtError(f"{path}: not an unencrypted PEM {kind} key ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise SertrtError(f"{path}: not an ed25519 {kind} key (make one: openssl genpkey -algorithm ed25519 -out key.pem)")
    return key


def sign(data: bytes, key_path: str | Path) -> bytes:
    return _read_key(key_path, private=True).sign(data)


def verify_signature(data: bytes, signature: bytes, public_key_path: str | Path, bundle: Path) -> None:
    _, _, invalid = _crypto()
    try:
        _read_key(public_key_path, private=False).verify(signature, data)
    except (invalid, ValueError):
        raise SertrtError(f"{bundle}: signature does not verify with {public_key_path} (modified, or signed by another key)") from None
