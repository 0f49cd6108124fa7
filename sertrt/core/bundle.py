"""Deployment bundles: the ONNX file(s), an optional TensorRT engine and the card, manifest.json (labels, sample
rate, window defaults, I/O spec, precision, versions, validation and the sha256 of every file).

`load_bundle` checks the card against manifest.sha256 (a digest of its canonical form), every listed file and
field and, with `trust=PUBKEY`, manifest.sig (ed25519): the digest catches corruption and careless edits, the
signature someone who rewrites both. Files a device adds (an engine) go under `local_files`: digested, not signed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import atomic
from .audio import seconds_to_samples
from .errors import SertrtError
from .precisions import CPU_TARGETS

FORMAT = "sertrt-bundle"
FORMAT_VERSION = 2
CARD = "manifest.json"  # the bundle card
DIGEST = "manifest.sha256"  # sha256 of the card's canonical form
SIGNATURE = "manifest.sig"  # optional: ed25519 over the canonical card without `local_files`
LOCAL_FILES = "local_files"
DESCRIPTION = (CARD, DIGEST, SIGNATURE)
ENGINE_FILE = "model.plan"  # a TensorRT engine, when the bundle has one (its record: model.plan.json)


@dataclass(frozen=True)
class BundleCard:
    """A bundle's card (manifest.json), typed. Written by `sertrt export`, read by every consumer."""

    precision: str  # fp32 | fp16 | int8 | int8-dynamic
    model: str  # the ONNX file in the bundle
    labels: tuple[str, ...]  # logits order
    sample_rate: int
    spec: dict[str, Any]  # the export spec as written: window_seconds, hop_seconds, profile, inputs, outputs
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256 (filled in by write_bundle)
    opset: int | None = None
    source_checkpoint: dict[str, Any] = field(default_factory=dict)  # path, sha256 (the digest it stores), epoch, metrics, ...
    versions: dict[str, str] = field(default_factory=dict)
    precision_report: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None  # export --test-manifest: sertrt.verify's comparison
    engine: dict[str, Any] | None = None  # the record of an engine built at export
    graph: dict[str, Any] = field(default_factory=dict)  # how the exported graph was simplified
    tensorrt_audit: dict[str, Any] | None = None  # sertrt.export.tensorrt_audit's report (None: int8-dynamic)
    cpu_target: str | None = None  # int8-dynamic: the CPU its weights suit (precisions.CPU_TARGETS); None: any
    timings: dict[str, float] = field(default_factory=dict)  # export stage -> seconds (up to writing the bundle)
    local_files: dict[str, str] = field(default_factory=dict)  # added on the device: hashed, not signed
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys this sertrt does not know, kept as written

    @property
    def window_seconds(self) -> float:
        return float(self.spec["window_seconds"])

    @property
    def hop_seconds(self) -> float:
        return float(self.spec["hop_seconds"])

    @property
    def window_samples(self) -> int:
        """The default streaming window in samples at the bundle's rate (the one rounding everyone uses)."""
        return seconds_to_samples(self.window_seconds, self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return seconds_to_samples(self.hop_seconds, self.sample_rate)

    @property
    def profile(self) -> dict[str, int]:
        """The TensorRT optimization profile the export recorded (min/opt/max batch and samples)."""
        return dict(self.spec.get("profile") or {})

    @property
    def all_files(self) -> dict[str, str]:
        """Every hashed file: the exported ones and those a device added."""
        return {**self.files, **self.local_files}

    def to_dict(self) -> dict[str, Any]:
        d = {"format": FORMAT, "format_version": self.format_version, "precision": self.precision, "model": self.model,
             "spec": self.spec, "labels": list(self.labels), "sample_rate": self.sample_rate, "opset": self.opset,
             "source_checkpoint": self.source_checkpoint, "versions": self.versions,
             "precision_report": self.precision_report, "validation": self.validation, "accuracy": self.accuracy,
             **self.extra, "files": self.files}
        optional = {"engine": self.engine, "graph": self.graph, "tensorrt_audit": self.tensorrt_audit,
                    "cpu_target": self.cpu_target, "timings": self.timings, LOCAL_FILES: self.local_files}
        return {**d, **{k: v for k, v in optional.items() if v is not None and v != {}}}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | Path) -> BundleCard:
        """Every field checked for its type: SertrtError naming `where` and the field otherwise."""
        def need(key: str, kind: type, optional: bool = False) -> Any:
            value = d.get(key)
            if value is None and optional:
                return None
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SertrtError(f"{where}: field {key!r} must be {kind.__name__}, got {value!r:.60}")
            return value

        labels = need("labels", list)
        if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
            raise SertrtError(f"{where}: field 'labels' must be distinct label names, got {labels!r:.80}")
        spec = need("spec", dict)
        for key in ("window_seconds", "hop_seconds"):
            value = spec.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise SertrtError(f"{where}: spec field {key!r} must be a positive number of seconds, got {value!r:.60}")
        files, local = need("files", dict, optional=True) or {}, need(LOCAL_FILES, dict, optional=True) or {}
        for name, digest in {**files, **local}.items():
            if not isinstance(digest, str):
                raise SertrtError(f"{where}: the sha256 of {name!r} must be a string, got {digest!r:.60}")
        known = {f.name for f in dataclasses.fields(cls)} | {"format"}
        tables = {key: need(key, dict, optional=True) or {} for key in
                  ("source_checkpoint", "versions", "precision_report", "validation", "graph", "timings")}
        card = cls(
            precision=need("precision", str), model=need("model", str), labels=tuple(labels),
            sample_rate=need("sample_rate", int), spec=spec, files=files, local_files=local,
            opset=need("opset", int, optional=True), accuracy=need("accuracy", dict, optional=True),
            engine=need("engine", dict, optional=True), tensorrt_audit=need("tensorrt_audit", dict, optional=True),
            cpu_target=need("cpu_target", str, optional=True), format_version=need("format_version", int),
            extra={k: v for k, v in d.items() if k not in known}, **tables)
        if card.sample_rate <= 0:
            raise SertrtError(f"{where}: field 'sample_rate' must be positive, got {card.sample_rate}")
        if card.cpu_target not in (None, *CPU_TARGETS):
            raise SertrtError(f"{where}: field 'cpu_target' must be one of {', '.join(CPU_TARGETS)}, got {card.cpu_target!r:.60}")
        return card


def onnx_metadata(precision: str, labels: tuple[str, ...] | list[str], sample_rate: int, spec: dict[str, Any]) -> dict[str, str]:
    """What model.onnx carries of its card in `metadata_props`, so a plain ONNX Runtime client (no sertrt) can use
    it: `session.get_modelmeta().custom_metadata_map`. Strings only (ONNX's rule); lists and tables as JSON."""
    return {
        "sertrt.card_format": FORMAT, "sertrt.card_version": str(FORMAT_VERSION),
        "labels": json.dumps(list(labels)), "sample_rate": str(sample_rate), "precision": precision,
        "window_seconds": repr(float(spec["window_seconds"])), "hop_seconds": repr(float(spec["hop_seconds"])),
        "min_samples": str(spec.get("min_samples", 0)),
        "inputs": json.dumps(spec.get("inputs", [])), "outputs": json.dumps(spec.get("outputs", [])),  # name, dtype, axes
        "usage": "waveform: mono float32 audio at sample_rate in [-1, 1], zero-padded per row; lengths: valid samples "
                 "per row; logits: one row per input row, in the order of labels (softmax for probabilities)",
    }


def check_onnx_metadata(card: BundleCard, props: dict[str, str], where: str | Path) -> None:
    """The model's metadata_props agree with its card: SertrtError naming the first key that differs. A model with
    none of them passes (its card's file hash covers it)."""
    expected = onnx_metadata(card.precision, card.labels, card.sample_rate, card.spec)
    if not set(expected) & set(props):
        return
    for key, value in expected.items():
        if props.get(key) != value:
            raise SertrtError(f"{where}: metadata {key!r} of the ONNX model is {props.get(key)!r:.80}, "
                              f"but the bundle card says {value!r:.80}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical(description: dict[str, Any], signed_part: bool = False) -> bytes:
    """The bytes the digest (all of it) and the signature (without `local_files`) cover: sorted keys,
    no whitespace, UTF-8; independent of how manifest.json happens to be indented."""
    body = {k: v for k, v in description.items() if not (signed_part and k == LOCAL_FILES)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _write_description(folder: Path, description: dict[str, Any], signature: bytes | None = None) -> None:
    """manifest.json, then manifest.sha256 (and manifest.sig), each atomically."""
    atomic.write_text(folder / CARD, json.dumps(description, indent=1) + "\n")
    atomic.write_text(folder / DIGEST, hashlib.sha256(canonical(description)).hexdigest() + "\n")
    if signature is not None:
        atomic.write_text(folder / SIGNATURE, signature.hex() + "\n")


def check_replaceable_bundle(path: str | Path) -> None:
    """`export --overwrite` replaces a sertrt bundle and nothing else: not a file, not a foreign folder, not a
    bundle holding files its card does not list (they would go with it)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise SertrtError(f"{path}: is a file, not a sertrt bundle; --overwrite replaces only a bundle, so it is left as it is")
    try:
        description = _read_description(path)
    except SertrtError:
        raise SertrtError(f"{path}: not a sertrt bundle (no sertrt {CARD}); --overwrite replaces only a bundle, "
                          "so it is left as it is") from None
    listed = set(description.get("files") or {}) | set(description.get(LOCAL_FILES) or {}) | set(DESCRIPTION)
    foreign = sorted(p.name for p in path.iterdir() if p.name not in listed)
    if foreign:
        raise SertrtError(f"{path}: holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}, which the bundle "
                          "does not list; --overwrite would delete it, so the bundle is left as it is")


def write_bundle(target: str | Path, staged: str | Path, card: BundleCard, overwrite: bool = False,
                 sign_key: str | Path | None = None) -> Path:
    """Hash every file in `staged` into `card`, write it with its digest (and, with `sign_key`, a signature), then
    move the folder into place as `target`; an existing bundle only with `overwrite`, once the new one is complete."""
    target, staged = Path(target), Path(staged)
    if target.exists() and not overwrite:
        raise SertrtError(f"{target}: already exists; pass --overwrite to replace it")
    check_replaceable_bundle(target)  # checked again now: the folder may have changed during the export
    files = sorted(p for p in staged.iterdir() if p.is_file() and p.name not in DESCRIPTION)
    description = dataclasses.replace(card, files={p.name: sha256_file(p) for p in files}, local_files={},
                                      format_version=FORMAT_VERSION).to_dict()
    signature = sign(canonical(description, signed_part=True), sign_key) if sign_key is not None else None
    _write_description(staged, description, signature)
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
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _restore_interrupted_swap(target)
    for kind in ("staging", "old"):  # what a killed export left beside this target
        atomic.remove_stale(target.parent, re.escape(f".{target.name}.{kind}."))
    staged = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging.{os.getpid()}."))
    os.chmod(staged, 0o777 & ~atomic.umask())  # mkdtemp makes 0700; the bundle should be readable like any folder
    return staged


def _restore_interrupted_swap(target: Path) -> None:
    """An export killed between its two renames (old bundle aside, new one not yet in place) left the
    previous bundle in `.<name>.old.<pid>.*/<name>` and nothing at `target`: put it back."""
    if target.exists() or target.is_symlink():
        return
    for old in sorted(target.parent.glob(f".{target.name}.old.*/{target.name}")):
        if atomic.dead_writer(old.parent.name, re.escape(f".{target.name}.old.")):  # a live export: leave it be
            os.replace(old, target)
            return


def add_file(bundle: str | Path, *paths: str | Path) -> None:
    """Record files a device added to a verified bundle (an engine built there) under `local_files`:
    hashed and covered by the digest like every file, outside what a signature covers."""
    bundle = Path(bundle)
    card = load_bundle(bundle)
    local = dict(card.local_files)
    for path in map(Path, paths):
        if path.parent.resolve() != bundle.resolve():
            raise SertrtError(f"{path}: not inside the bundle {bundle}")
        if path.name in card.files:
            raise SertrtError(f"{path}: the export wrote this file; a device adds files of its own beside it")
        local[path.name] = sha256_file(path)
    # the description as written (not re-serialised from the card): the signed part stays byte-identical
    _write_description(bundle, {**_read_description(bundle), LOCAL_FILES: local})


def _safe_name(bundle: Path, name: Any) -> Path:
    """A file the card lists must be a plain name inside the bundle (no folders, no .., no link out)."""
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or name in DESCRIPTION:
        raise SertrtError(f"{bundle}: {CARD} lists {name!r}, which is not a file name inside the bundle")
    f = bundle / name
    if f.is_symlink() or (f.exists() and f.resolve().parent != bundle.resolve()):
        raise SertrtError(f"{bundle}: {name} is a link; bundle files must be real files inside the bundle")
    return f


def _read_description(path: Path) -> dict[str, Any]:
    """manifest.json as written, once its format and version are ours."""
    cpath = path / CARD
    if not cpath.is_file():
        raise SertrtError(f"{path}: not a sertrt bundle (no {CARD})")
    try:
        description = json.loads(cpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SertrtError(f"{cpath}: not valid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise SertrtError(f"{cpath}: format {description.get('format') if isinstance(description, dict) else None!r} is not {FORMAT!r}")
    version = description.get("format_version")
    if version != FORMAT_VERSION:
        raise SertrtError(f"{cpath}: bundle format version {version}; this sertrt reads {FORMAT_VERSION}")
    return description


def load_bundle(path: str | Path, verify: bool = True, trust: str | Path | None = None) -> BundleCard:
    """The bundle's card, after checking its format, its fields' types and (with `verify`) its digest,
    every path and every file's sha256; with `trust` (an ed25519 public key, PEM) also its signature."""
    path = Path(path)
    description = _read_description(path)
    if not verify and trust is None:
        return BundleCard.from_dict(description, path / CARD)
    digest = path / DIGEST
    if not digest.is_file():
        raise SertrtError(f"{path}: {DIGEST} is missing: {CARD} cannot be checked")
    if digest.read_text(encoding="utf-8", errors="replace").strip() != hashlib.sha256(canonical(description)).hexdigest():
        raise SertrtError(f"{path}: {CARD} does not match {DIGEST} (modified or corrupt)")
    files, local = description.get("files"), description.get(LOCAL_FILES) or {}
    if not isinstance(files, dict) or not files or not isinstance(local, dict):
        raise SertrtError(f"{path}: {CARD} lists no files to check")
    if set(files) & set(local):  # a local entry would replace the signed hash of that file
        raise SertrtError(f"{path}: {CARD} lists {sorted(set(files) & set(local))[0]} both as an exported file and "
                          f"under {LOCAL_FILES} (modified)")
    if description.get("model") not in files:
        raise SertrtError(f"{path}: {CARD} names model {description.get('model')!r}, which is not one of its files")
    for name, expected in {**files, **local}.items():
        f = _safe_name(path, name)
        if not f.is_file():
            raise SertrtError(f"{path}: bundle file {name} is missing")
        if sha256_file(f) != expected:
            raise SertrtError(f"{path}: {name} does not match its sha256 in {CARD} (modified or corrupt)")
    if trust is not None:
        sig = path / SIGNATURE
        if not sig.is_file():
            raise SertrtError(f"{path}: not signed ({SIGNATURE} is missing), and --trust requires a signature")
        try:
            signature = bytes.fromhex(sig.read_text(encoding="utf-8", errors="replace").strip())
        except ValueError:
            raise SertrtError(f"{path}: {SIGNATURE} is not a hex signature") from None
        key = _read_key(trust, private=False)  # a missing cryptography is refused here, in one line
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(signature, canonical(description, signed_part=True))
        except (InvalidSignature, ValueError):
            raise SertrtError(f"{path}: signature does not verify with {trust} "
                              "(modified, or signed by another key)") from None
    return BundleCard.from_dict(description, path / CARD)


def _read_key(path: str | Path, private: bool):
    """An ed25519 key from the optional cryptography package (`pip install 'sertrt[sign]'`)."""
    from .versions import require

    require("sign")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

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
