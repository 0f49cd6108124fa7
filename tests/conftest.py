"""Shared fixtures: a small labelled corpus of generated tones (no espeak needed), fast to train on."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from sertrt.core.audio import write_wav
from sertrt.core.labels import LABELS
from sertrt.core.manifest import Utterance, write_manifest

REPO = Path(__file__).resolve().parents[1]
# Each label gets its own pitch, so even a tiny model separates them after an epoch or two.
PITCH = {"neutral": 140.0, "happy": 260.0, "angry": 200.0, "sad": 100.0}


def tone(label: str, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    f0 = PITCH[label] * (1 + 0.03 * rng.standard_normal())
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.3 * wave * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def make_tone_corpus(root: Path, per_label: int = 6, seed: int = 0, rate: int = 16000,
                     seconds: tuple[float, float] = (0.6, 1.6)) -> Path:
    """root/<label>_<i>.wav at `rate`, `seconds` (min, max) long, two speakers; returns root/manifest.jsonl.
    (scripts/gpu_check.sh makes its corpus with this too: the GPU machine has no espeak-ng.)"""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    utts = []
    for label in LABELS:
        for i in range(per_label):
            duration = float(rng.uniform(*seconds))
            path = root / f"{label}_{i}.wav"
            write_wav(path, tone(label, duration, rate, rng), rate)
            utts.append(Utterance(str(path), label, "tones", "xx", f"s{i % 2}", duration, rate))
    manifest = root / "manifest.jsonl"
    write_manifest(manifest, utts)
    return manifest


def decisive_run(root: Path, upstream: str = "tiny") -> Path:
    """root/run: a random-init model checkpoint (seed 0) whose output layer is scaled 20x, so its logits are decisive
    and top-1 agreement means something. Returns the run folder."""
    import torch

    from sertrt.model.io import save_checkpoint
    from sertrt.model.ser import build_model

    torch.manual_seed(0)
    model = build_model(upstream).eval()
    with torch.no_grad():
        model.head.out.weight.mul_(20.0)
    save_checkpoint(root / "run" / "best.safetensors", model, {"strategy": "full", "epoch": 0, "metrics": {}})
    return root / "run"


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory) -> Path:
    return make_tone_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def decisive_bundle(tmp_path_factory) -> Path:
    """root/run (decisive_run) and root/bundle, its fp32 bundle, exported once for every test that only reads
    them (a test that writes into either copies it to tmp_path first). Returns root."""
    pytest.importorskip("torch")
    from sertrt.export.exporter import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("decisive")
    export_bundle(ExportOptions(decisive_run(root), root / "bundle", "fp32"), log=lambda s: None)
    return root


def sertrt_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def sertrt_main(argv: list[str]) -> int:
    """`sertrt ARGV` in this process (sertrt.cli.main, the console script's own error handling); its exit code."""
    from sertrt.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code or 0


@pytest.fixture
def cli(monkeypatch, capfd, caplog):
    """cli(*args, cwd=REPO) -> CompletedProcess: `sertrt ARGS` in this process, as a fresh one would see it (the
    folder, its argv, empty stdin, not a torchrun rank), without a fresh process's seconds of importing torch and
    transformers. stderr gets the warnings and the log records (>= WARNING) that process would print, but not what a
    handler a library bound to stderr at import writes (transformers' own): a test that stderr is empty runs a process."""

    def run(*args, cwd: Path = REPO) -> subprocess.CompletedProcess:
        argv = [str(a) for a in args]
        with monkeypatch.context() as mp, open(os.devnull) as stdin, warnings.catch_warnings(record=True) as shown:
            mp.chdir(cwd)
            mp.setattr(sys, "argv", ["sertrt", *argv])
            mp.setattr(sys, "stdin", stdin)
            mp.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
            capfd.readouterr()
            caplog.clear()
            warnings.resetwarnings()  # pytest's own filters; a fresh process hides only these categories
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            code = sertrt_main(argv)
            out, err = capfd.readouterr()
        err += "".join(f"warning: {w.message}\n" for w in shown)
        err += "".join(f"{r.getMessage()}\n" for r in caplog.records if r.levelno >= logging.WARNING)
        return subprocess.CompletedProcess(["sertrt", *argv], code, out, err)

    return run


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (stable): pytest-xdist hands tests out in this order, so the minutes-long ones start while
    the short ones can still fill the other worker, instead of one of them running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
