"""kill -9 at random points (drawn from a seeded generator, so CI kills at the same places every time)
of `train`, `export --overwrite`, `data prepare` and `data synth`: every earlier output stays whole
(byte-identical, or replaced by a complete new one), and a rerun completes and tidies what the killed
process left behind."""

import hashlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, make_tone_corpus, sertrt_env
from test_corpora import make_emodb

from sertrt.core.bundle import load_bundle, staging_dir
from sertrt.model.io import read_checkpoint

pytestmark = pytest.mark.slow  # every test runs a command several times, each in a process of its own
KILLS = 2  # kill points per command
RNG = np.random.default_rng(2026)


def snapshot(root, pattern="*") -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob(pattern)) if p.is_file() and not p.name.endswith(".tmp")}


def sertrt(*argv) -> list[str]:
    return [sys.executable, "-m", "sertrt", *map(str, argv)]


def timed(argv) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=sertrt_env(), cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t0


def killed(argv, after: float) -> None:
    proc = subprocess.Popen(argv, env=sertrt_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def kill_points(duration: float) -> list[float]:
    return sorted(RNG.uniform(0.05, 0.95, KILLS) * duration)


def leftovers(folder, name) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    manifest = make_tone_corpus(root / "tones", per_label=6, seed=5)
    return root, manifest


def test_killed_export_overwrite_keeps_the_bundle(corpus, tmp_path):
    root, manifest = corpus
    run = tmp_path / "run"
    subprocess.run(sertrt("train", "--train-manifest", manifest, "--test-manifest", manifest, "--out", run,
                          "--epochs", "1", "--quiet"), env=sertrt_env(), check=True)
    bundle = tmp_path / "bundle"
    argv = sertrt("export", run, "--out", bundle, "--overwrite")
    duration = timed(argv)
    for after in kill_points(duration):
        before = snapshot(bundle)
        killed(argv, after)
        if not bundle.exists():  # killed between its two renames: the old bundle waits beside, whole
            (aside,) = tmp_path.glob(".bundle.old.*/bundle")
            assert snapshot(aside) == before
            staging_dir(bundle)  # what the next export does first: put it back
        assert snapshot(bundle) == before or load_bundle(bundle).format_version == 2  # old, or complete new
        load_bundle(bundle)
    subprocess.run(argv, env=sertrt_env(), check=True, capture_output=True)
    assert leftovers(tmp_path, "bundle") == []  # the rerun removed the killed runs' staging folders


def test_killed_training_resumes_and_its_inputs_are_untouched(corpus, tmp_path):
    root, manifest = corpus
    inputs = snapshot(root / "tones")
    out = tmp_path / "run"
    argv = sertrt("train", "--train-manifest", manifest, "--test-manifest", manifest, "--out", out, "--epochs", "3",
                  "--quiet")
    duration = timed(argv)
    shutil.rmtree(out)
    for after in kill_points(duration):
        killed(argv + (["--resume"] if (out / "last.safetensors").exists() else []), after)
        if (out / "last.safetensors").exists():
            read_checkpoint(out / "last.safetensors")  # whole, digest checked
    # A kill point can come after a run already finished (a loaded machine runs slower, then faster, than
    # the timed run): resume only what is left, as a user would (a finished run refuses the same --epochs).
    done = read_checkpoint(out / "last.safetensors")[0].train_state["epoch"] + 1 if (out / "last.safetensors").exists() else 0
    if done < 3:
        subprocess.run(argv + (["--resume"] if done else []), env=sertrt_env(), check=True, capture_output=True)
    header, _ = read_checkpoint(out / "last.safetensors")
    assert header.train_state["epoch"] == 2 and snapshot(root / "tones") == inputs
    assert not list(out.glob(".*.tmp"))


def test_killed_prepare_keeps_the_prepared_corpus(tmp_path):
    source = make_emodb(tmp_path / "emodb")
    out = tmp_path / "prepared"
    argv = sertrt("data", "prepare", "--corpus", f"emodb={source}", "--out", out)
    duration = timed(argv)
    before = snapshot(out, "*.jsonl") | snapshot(out / "audio", "*.wav")
    for after in kill_points(duration):
        killed(argv, after)
        assert snapshot(out, "*.jsonl") | snapshot(out / "audio", "*.wav") == before  # a rerun writes the same bytes
    subprocess.run(argv, env=sertrt_env(), check=True, capture_output=True)
    assert snapshot(out, "*.jsonl") | snapshot(out / "audio", "*.wav") == before
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_killed_synth_keeps_every_file_whole(tmp_path):
    out = tmp_path / "synth"
    argv = sertrt("data", "synth", out, "--languages", "it", "--scale", "0.05", "--seed", "3")
    duration = timed(argv)
    before = snapshot(out)
    for after in kill_points(duration):
        killed(argv, after)
        now = snapshot(out)
        assert {k: v for k, v in now.items() if k in before} == {k: before[k] for k in now if k in before}
    subprocess.run(argv, env=sertrt_env(), check=True, capture_output=True)
    assert snapshot(out) == before and not list(out.rglob(".*.tmp"))
