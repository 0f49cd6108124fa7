"""Bundle integrity: the description (manifest.json) is covered by a digest, every path stays inside the
bundle, an empty file list or an unknown format is refused, and an optional ed25519 signature is checked
when a trust key is given. Engines are deserialised only once their hash has been checked."""

import hashlib
import json
import os

import pytest

from sertrt.core.bundle import (
    CARD,
    DIGEST,
    FORMAT_VERSION,
    SIGNATURE,
    BundleCard,
    add_file,
    canonical,
    load_bundle,
    staging_dir,
    write_bundle,
)
from sertrt.core.errors import SertrtError

cryptography = pytest.importorskip("cryptography")


def make_bundle(tmp_path, name="bundle", sign_key=None):
    staged = staging_dir(tmp_path / name)
    (staged / "model.onnx").write_bytes(b"not really onnx, but hashed like it")
    card = BundleCard(precision="fp32", model="model.onnx", labels=("neutral", "happy", "angry", "sad"), sample_rate=16000,
                      spec={"window_seconds": 2.0, "hop_seconds": 0.5})
    return write_bundle(tmp_path / name, staged, card, sign_key=sign_key)


def rewrite(bundle, change, redigest=True):
    """Edit manifest.json as someone might; with `redigest`, also rewrite manifest.sha256 to match (an
    attacker who knows the format: only a signature stops that one)."""
    manifest = json.loads((bundle / CARD).read_text())
    change(manifest)
    (bundle / CARD).write_text(json.dumps(manifest, indent=1))
    if redigest:
        (bundle / DIGEST).write_text(hashlib.sha256(canonical(manifest)).hexdigest() + "\n")


def keypair(tmp_path, name):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_round_trip_writes_a_digest_beside_the_manifest(tmp_path):
    bundle = make_bundle(tmp_path)
    card = load_bundle(bundle)
    assert card.format_version == FORMAT_VERSION == 2 and set(card.files) == {"model.onnx"}
    assert (bundle / DIGEST).read_text().strip() == hashlib.sha256(canonical(card.to_dict())).hexdigest()
    assert not (bundle / SIGNATURE).exists()


def test_reordered_labels_are_refused(tmp_path):
    """Reordering labels once made `stream` say "sad" for "happy" while parity still passed."""
    bundle = make_bundle(tmp_path)
    rewrite(bundle, lambda m: m.__setitem__("labels", ["neutral", "sad", "angry", "happy"]), redigest=False)
    with pytest.raises(SertrtError, match=f"{CARD} does not match {DIGEST}"):
        load_bundle(bundle)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.__setitem__("model", "../elsewhere/model.onnx"), "names model '../elsewhere/model.onnx', which is not one"),
    (lambda m: m["files"].__setitem__("../elsewhere/model.onnx", "0" * 64), "not a file name inside the bundle"),
    (lambda m: m.pop("files"), "lists no files"),
    (lambda m: m.__setitem__("files", {}), "lists no files"),
    (lambda m: m.__setitem__("format_version", 3), "bundle format version 3; this sertrt reads 2"),
    (lambda m: m.__setitem__("format_version", 1), "version 1; this sertrt reads 2"),
])
def test_a_consistent_but_unsafe_manifest_is_refused(tmp_path, change, message):
    bundle = make_bundle(tmp_path)
    rewrite(bundle, change)
    with pytest.raises(SertrtError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_bundle(bundle)


def test_missing_digest_and_a_link_out_of_the_bundle_are_refused(tmp_path):
    bundle = make_bundle(tmp_path)
    (bundle / DIGEST).unlink()
    with pytest.raises(SertrtError, match=f"{DIGEST} is missing"):
        load_bundle(bundle)
    bundle = make_bundle(tmp_path, "linked")
    outside = tmp_path / "model.onnx"
    os.replace(bundle / "model.onnx", outside)
    (bundle / "model.onnx").symlink_to(outside)  # same bytes, same hash: the link itself is refused
    with pytest.raises(SertrtError, match="model.onnx is a link"):
        load_bundle(bundle)


def test_signed_bundle_verifies_only_with_its_key(tmp_path):
    private, public = keypair(tmp_path, "vendor")
    _, other = keypair(tmp_path, "other")
    bundle = make_bundle(tmp_path, sign_key=private)
    assert load_bundle(bundle, trust=public).model == "model.onnx"
    with pytest.raises(SertrtError, match="signature does not verify"):
        load_bundle(bundle, trust=other)
    rewrite(bundle, lambda m: m.__setitem__("labels", ["sad", "happy", "angry", "neutral"]))  # digest redone too
    load_bundle(bundle)  # the digest alone cannot tell
    with pytest.raises(SertrtError, match="signature does not verify"):
        load_bundle(bundle, trust=public)
    unsigned = make_bundle(tmp_path, "unsigned")
    with pytest.raises(SertrtError, match="not signed"):
        load_bundle(unsigned, trust=public)
    with pytest.raises(SertrtError, match="not an ed25519 private key|not an unencrypted PEM private key"):
        make_bundle(tmp_path, "bad-key", sign_key=public)


def test_an_engine_added_on_the_device_is_hashed_but_outside_the_signature(tmp_path):
    private, public = keypair(tmp_path, "vendor")
    bundle = make_bundle(tmp_path, sign_key=private)
    (bundle / "model.plan").write_bytes(b"engine built here")
    add_file(bundle, bundle / "model.plan")
    card = load_bundle(bundle, trust=public)
    assert card.local_files == {"model.plan": hashlib.sha256(b"engine built here").hexdigest()}
    (bundle / "model.plan").write_bytes(b"engine swapped later")
    with pytest.raises(SertrtError, match="model.plan does not match its sha256"):
        load_bundle(bundle)


def test_an_unlisted_engine_is_never_deserialised(tmp_path):
    from sertrt.runtime.runners import RunnerOptions, open_runner

    bundle = make_bundle(tmp_path)
    (bundle / "model.plan").write_bytes(b"dropped in by someone")
    with pytest.raises(SertrtError, match="model.plan is not listed in its manifest.json"):
        open_runner(bundle, RunnerOptions(backend="trt"))


def test_an_export_killed_between_its_renames_gets_its_old_bundle_back(tmp_path):
    import subprocess
    import sys

    bundle = make_bundle(tmp_path)
    before = sorted((p.name, p.read_bytes()) for p in bundle.iterdir())
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    aside = tmp_path / f".bundle.old.{pid}.abcd1234"  # where write_bundle moves the old bundle, by a dead process
    aside.mkdir()
    os.replace(bundle, aside / "bundle")
    staged = staging_dir(tmp_path / "bundle")  # the next export starts here
    assert sorted((p.name, p.read_bytes()) for p in bundle.iterdir()) == before and not aside.exists()
    assert staged.is_dir()


def plant_engine(bundle):
    """What anyone who can write the bundle folder can do without a key: drop in a plan, list it under
    local_files, and make manifest.sha256 match again."""
    (bundle / "model.plan").write_bytes(b"an engine from someone else")
    rewrite(bundle, lambda m: m.__setitem__("local_files", {"model.plan": hashlib.sha256(b"an engine from someone else").hexdigest()}))


def test_with_a_trust_key_an_engine_outside_the_signature_loads_only_when_allowed(tmp_path):
    from sertrt.runtime.runners import RunnerOptions, open_runner
    from sertrt.runtime.trt_runner import TrtRunner

    private, public = keypair(tmp_path, "vendor")
    planted = make_bundle(tmp_path, sign_key=private)
    plant_engine(planted)
    built = make_bundle(tmp_path, "built", sign_key=private)  # build-engine's own record looks the same
    (built / "model.plan").write_bytes(b"engine built here")
    add_file(built, built / "model.plan")
    for bundle in (planted, built):
        load_bundle(bundle, trust=public)  # the signature still verifies: it never covered local_files
        with pytest.raises(SertrtError) as e:
            open_runner(bundle, RunnerOptions(backend="trt", trust=public))
        assert "\n" not in str(e.value) and "outside what --trust verifies" in str(e.value) and "--allow-local-engine" in str(e.value)
        runner, _ = open_runner(bundle, RunnerOptions(backend="trt", trust=public, allow_local_engine=True))
        assert isinstance(runner, TrtRunner) and runner.engine_path == bundle / "model.plan"
        runner, _ = open_runner(bundle, RunnerOptions(backend="trt"))  # unsigned use: unchanged
        assert isinstance(runner, TrtRunner)


def test_stream_refuses_the_planted_engine_in_one_line(tmp_path):
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf
    from conftest import REPO, sertrt_env

    private, public = keypair(tmp_path, "vendor")
    bundle = make_bundle(tmp_path, sign_key=private)
    plant_engine(bundle)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    base = [sys.executable, "-m", "sertrt", "stream", str(bundle), str(wav), "--backend", "trt", "--trust", str(public)]
    for extra, expected in (([], "--allow-local-engine"), (["--allow-local-engine"], "TensorRT Python bindings not found")):
        r = subprocess.run(base + extra, capture_output=True, text=True, env=sertrt_env(), cwd=REPO, timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and expected in lines[0], (r.stdout, r.stderr)


def test_a_local_entry_cannot_stand_in_for_a_signed_file(tmp_path):
    """local_files once overrode the signed hash of a file of the same name: a swapped model.onnx verified."""
    private, public = keypair(tmp_path, "vendor")
    bundle = make_bundle(tmp_path, sign_key=private)
    (bundle / "model.onnx").write_bytes(b"another model")
    rewrite(bundle, lambda m: m.__setitem__("local_files", {"model.onnx": hashlib.sha256(b"another model").hexdigest()}))
    for trust in (public, None):
        with pytest.raises(SertrtError, match="lists model.onnx both as an exported file and under local_files"):
            load_bundle(bundle, trust=trust)
    clean = make_bundle(tmp_path, "clean", sign_key=private)
    with pytest.raises(SertrtError, match="the export wrote this file"):
        add_file(clean, clean / "model.onnx")
