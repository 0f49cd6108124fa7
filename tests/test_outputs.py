"""Folders commands write into: never someone else's. `export --overwrite` replaces only a bundle; train,
data synth, data prepare, bench and bench-gpu write only into a new, empty or sertrt-written folder. Each
refusal is one line, exit 1, and leaves every byte in place."""

import hashlib
import json
import os
import shutil

import pytest
import torch
from conftest import make_tone_corpus
from test_cli import assert_one_line_error

from sertrt.core.errors import SertrtError
from sertrt.core.bundle import check_replaceable_bundle
from sertrt.core.outputs import MARKER, claim_output_dir
from sertrt.model.io import save_checkpoint
from sertrt.model.ser import build_model


def snapshot(root) -> dict[str, str]:
    """Every file under root (or root itself) -> sha256: what must not change."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def precious(tmp_path, name="precious"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "notes.txt").write_text("x\n")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(0)
    save_checkpoint(root / "run" / "best.safetensors", build_model("tiny").eval(), {"strategy": "full", "epoch": 0, "metrics": {}})
    return root / "run"


def test_claim_creates_marks_and_recognises_its_own(tmp_path):
    new = claim_output_dir(tmp_path / "a" / "b", "run")
    assert json.loads((new / MARKER).read_text())["kind"] == "run"
    (new / "options.json").write_text("{}")
    assert claim_output_dir(new, "run") == new  # a rerun / resume into its own folder
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_output_dir(empty, "synth")
    assert (empty / MARKER).is_file()
    with pytest.raises(SertrtError, match="holds a training run written by sertrt, not a synthetic corpus"):
        claim_output_dir(new, "synth")
    unmarked = tmp_path / "unmarked-run"  # a run's file names are not a claim: only the marker is
    unmarked.mkdir()
    (unmarked / "last.safetensors").write_bytes(b"")
    with pytest.raises(SertrtError, match="a folder sertrt did not write"):
        claim_output_dir(unmarked, "run")
    check_only = tmp_path / "check-only"
    claim_output_dir(check_only, "run", create=False)
    assert not check_only.exists()


@pytest.mark.parametrize("kind", ["run", "synth", "prepared", "bench"])
def test_claim_refuses_a_foreign_folder_and_a_file(tmp_path, kind):
    folder = precious(tmp_path)
    before = snapshot(folder)
    with pytest.raises(SertrtError, match=r"precious: --out is a folder sertrt did not write \(notes.txt\)"):
        claim_output_dir(folder, kind)
    f = tmp_path / "somefile.wav"
    f.write_bytes(b"RIFF....")
    with pytest.raises(SertrtError, match="is an existing file, not a folder"):
        claim_output_dir(f, kind)
    assert snapshot(folder) == before and f.read_bytes() == b"RIFF...."


def test_export_overwrite_replaces_only_a_bundle(run, tmp_path, cli):
    folder = precious(tmp_path)
    somefile = tmp_path / "somefile.wav"
    somefile.write_bytes(b"RIFF audio the user keeps")
    for target, fragment in ((folder, "not a sertrt bundle"), (somefile, "is a file, not a sertrt bundle")):
        before = snapshot(target)
        result = cli("export", run, "--out", target, "--overwrite")
        assert_one_line_error(result, str(target), fragment, "left as it is")
        assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious", "somefile.wav"]  # no staging left behind


def test_export_overwrite_keeps_a_bundle_holding_someone_elses_file(run, tmp_path, cli):
    bundle = tmp_path / "bundle"
    assert cli("export", run, "--out", bundle).returncode == 0
    (bundle / "my-notes.txt").write_text("mine\n")
    before = snapshot(bundle)
    assert_one_line_error(cli("export", run, "--out", bundle, "--overwrite"), "my-notes.txt", "does not list")
    assert snapshot(bundle) == before
    (bundle / "my-notes.txt").unlink()
    assert cli("export", run, "--out", bundle, "--overwrite").returncode == 0  # a plain bundle is replaced
    check_replaceable_bundle(bundle)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="synth checks for espeak-ng first")
def test_synth_refuses_a_foreign_folder(tmp_path, cli):
    folder = precious(tmp_path)
    (folder / "README.txt").write_text("my own readme\n")  # synth writes a README.txt: it must not replace this one
    before = snapshot(folder)
    assert_one_line_error(cli("data", "synth", folder, "--scale", "0.01"), "precious: OUT is a folder sertrt did not write")
    assert snapshot(folder) == before


def test_outputs_and_bundle_import_each_other_in_one_direction_at_most():
    import ast
    import inspect

    from sertrt.core import bundle, outputs

    def imported(module) -> set:  # sertrt.core modules it imports, lazy imports included
        return {n.module for n in ast.walk(ast.parse(inspect.getsource(module))) if isinstance(n, ast.ImportFrom) and n.level == 1}

    assert not ("bundle" in imported(outputs) and "outputs" in imported(bundle))


def test_committed_benchmark_folders_are_sertrt_s():
    from conftest import REPO

    for folder in [REPO / "benchmarks" / "results", *(p for p in (REPO / "benchmarks" / "results").iterdir() if p.is_dir())]:
        claim_output_dir(folder, "bench", create=False)


def test_what_a_killed_writer_left_is_removed_by_the_next_and_nothing_else(tmp_path):
    import subprocess
    import sys

    from sertrt.core import atomic
    from sertrt.core.bundle import staging_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale_tmp = tmp_path / f".metrics.jsonl.{pid}.abc12_xy.tmp"
    stale_tmp.write_text("half")
    stale_staging = tmp_path / f".bundle.staging.{pid}.k3j4h5g6"
    stale_staging.mkdir()
    (stale_staging / "model.onnx").write_bytes(b"half")
    live_tmp = tmp_path / f".metrics.jsonl.{os.getpid()}.zzzzzzzz.tmp"  # a live writer's: kept
    live_tmp.write_text("in progress")
    mine = tmp_path / f".metrics.jsonl.{pid}.backup"  # not a name sertrt makes: kept
    mine.write_text("user's")
    atomic.write_text(tmp_path / "metrics.jsonl", "{}\n")
    staging = staging_dir(tmp_path / "bundle")
    assert not stale_tmp.exists() and not stale_staging.exists()
    assert live_tmp.read_text() == "in progress" and mine.read_text() == "user's"
    assert staging.is_dir() and staging.name.startswith(f".bundle.staging.{os.getpid()}.")


def test_permission_denied_is_one_line_naming_the_folder(run, tmp_path):
    """A read-only folder (simulated: CI runs as root, which writes anywhere): `export` says which path
    and why in one line, and writes nothing."""
    import subprocess
    import sys

    from conftest import sertrt_env

    code = ("import errno, os, sys, tempfile\n"
            "def denied(*a, dir=None, **k): raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)\n"
            "tempfile.mkdtemp = tempfile.mkstemp = denied\n"
            "from sertrt.cli import main\n"
            "sys.argv = ['sertrt', 'export', sys.argv[1], '--out', sys.argv[2]]\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code, str(run), str(tmp_path / "ro" / "bundle")], env=sertrt_env(),
                            capture_output=True, text=True)
    assert_one_line_error(result, f"{tmp_path / 'ro'}: Permission denied")
    assert sorted(p.name for p in (tmp_path / "ro").iterdir()) == []


def test_disk_full_during_a_write_is_one_line_and_keeps_the_old_file(tmp_path, cli, monkeypatch):
    """The CLI meets ENOSPC while `data split` writes its manifests: one line with the path and the
    errno text, exit 1, the previous files whole, no temp file left."""
    import errno

    manifest = make_tone_corpus(tmp_path / "tones", per_label=4)
    assert cli("data", "split", manifest, "--test-fraction", "0.5").returncode == 0
    before = snapshot(tmp_path / "tones")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # every atomic write fsyncs its temp file before the rename
    result = cli("data", "split", manifest, "--test-fraction", "0.25", "--out-dir", tmp_path / "other")
    assert_one_line_error(result, "_manifest.jsonl: No space left on device")
    assert snapshot(tmp_path / "tones") == before and list((tmp_path / "other").iterdir()) == []
