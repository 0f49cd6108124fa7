"""The bad-input table, command by command: each row is what a user typed, the one-line error it must
get (exit 1, no traceback), and the promise that no file changed (by hash) and none appeared. Rows
marked "was:" got a traceback or silence before."""

import hashlib
import subprocess
import sys

import pytest
from conftest import make_tone_corpus, sertrt_env

WAV = "tones/angry_0.wav"
M = "tones/manifest.jsonl"
TRAIN = ["train", "--train-manifest", M, "--test-manifest", M, "--out", "r2"]

TABLE = {
    "data split": [
        (["data", "split", "nope.jsonl"], "nope.jsonl: no such manifest"),
        (["data", "split", M, "--test-fraction", "0"], "test fraction must be between 0 and 1, got 0.0"),
        (["data", "split", M, "--test-fraction", "nan"], "test fraction must be between 0 and 1, got nan"),
    ],
    "data synth": [
        (["data", "synth", "out", "--scale", "0"], "scale must be in (0, 1], got 0.0"),
        (["data", "synth", "out", "--workers", "0"], "workers must be at least 1, got 0"),
        (["data", "synth", "out", "--languages", "xx"], "unknown language 'xx'"),
        (["data", "synth", "tones"], "tones: OUT is a folder sertrt did not write"),
    ],
    "data prepare": [
        (["data", "prepare", "--corpus", "bogus=tones", "--out", "p"], "unknown corpus 'bogus'"),
        (["data", "prepare", "--corpus", "emodb=nowhere", "--out", "p"], "emodb: corpus root nowhere does not exist"),
        (["data", "prepare", "--corpus", "emodb=tones", "--out", "p", "--workers", "0"], "workers must be at least 1"),
        (["data", "prepare", "--corpus", "emodb=tones", "--out", "tones"], "tones: --out is a folder sertrt did not write"),
    ],
    "train": [
        ([*TRAIN, "--upstream", "xlsr53"], "unknown upstream 'xlsr53' (valid: xlsr-53"),  # was: hub retries
        ([*TRAIN, "--head", "svm"], "unknown head 'svm'"),
        ([*TRAIN, "--strategy", "half"], "unknown strategy 'half'"),
        ([*TRAIN, "--max-seconds", "0"], "--max-seconds 0.0: must be >= 0.025"),  # was: trained on empty crops
        ([*TRAIN, "--grad-clip", "0"], "--grad-clip 0.0: must be > 0"),
        ([*TRAIN, "--devices", "0"], "--devices 0: must be >= 1"),
        ([*TRAIN, "--device", "tpu"], "--device 'tpu': unknown (valid: auto, cpu, cuda, cuda:N)"),  # was: traceback
        (["train", "--train-manifest", M, "--test-manifest", M, "--out", WAV], "is an existing file, not a folder"),
        (["train", "--train-manifest", M, "--test-manifest", M, "--out", "run"], "run: already holds a run"),
        (["train", "--train-manifest", M, "--test-manifest", M, "--out", "run", "--resume", "--epochs", "1"],
         "--epochs 1: run has finished 1 epochs already"),  # was: exit 0, options.json rewritten
        (["train", "--train-manifest", "nope.jsonl", "--out", "r3", "--devices", "2"],
         "nope.jsonl: no such manifest"),  # was: the error once per rank, then torchrun's ChildFailedError traceback
    ],
    "evaluate": [
        (["evaluate", "nowhere", "--manifest", M], "nowhere: no such checkpoint"),
        (["evaluate", "run", "--manifest", "nope.jsonl"], "nope.jsonl: no such manifest"),
        (["evaluate", "run", "--manifest", M, "--batch-size", "0"], "--batch-size 0: must be >= 1"),  # was: traceback
    ],
    "export": [
        (["export", "run", "--out", "x", "--precision", "fp8"], "unknown precision 'fp8'"),
        (["export", "run", "--out", "x", "--precision", "int8"], "--precision int8 needs --calib-manifest"),
        (["export", "run", "--out", "x", "--precision", "int8", "--calib-manifest", M, "--calib-utterances", "0"],
         "--calib-utterances 0: INT8 calibration needs at least 16"),  # was: refused after the export
        (["export", "nowhere", "--out", "x"], "nowhere: no such checkpoint"),
        (["export", "run", "--out", "x", "--min-samples", "10"], "profile num_samples must satisfy 400 <= min"),
        (["export", "run", "--out", "b32"], "b32: already exists; pass --overwrite"),
        (["export", "run", "--out", "tones", "--overwrite"], "tones: not a sertrt bundle"),  # was: deleted the folder
        (["export", "run", "--out", WAV, "--overwrite"], "is a file, not a sertrt bundle"),  # was: deleted the file
    ],
    "stream": [
        (["stream", "b32", "nope.wav"], "nope.wav: no such audio file"),
        (["stream", "nowhere", WAV], "nowhere: not a sertrt bundle"),
        (["stream", "b32", "-", "--rate", "0"], "--rate 0: must be a positive sample rate"),  # was: "needs --rate"
        (["stream", "b32", WAV, "--vad-model", "silero:tones/manifest.jsonl"],
         "tones/manifest.jsonl: not an ONNX model"),  # was: onnxruntime's InvalidProtobuf traceback
        (["stream", "b32", WAV, "--hop-seconds", "0.00001"], "less than one sample"),  # was: spun forever
        (["stream", "b32", WAV, "--hop-seconds", "0"], "hop (0.0 s) must be > 0"),  # was: the default, silently
        (["stream", "b32", WAV, "--silence-dbfs", "nan"], "silence threshold nan dBFS"),  # was: never gated, silently
    ],
    "parity": [
        (["parity", "b32", "--run", "nowhere", "--manifest", M], "nowhere: no such checkpoint"),
        (["parity", "b32", "--run", "run", "--manifest", "nope.jsonl"], "nope.jsonl: no such manifest"),
        (["parity", "b32", "--run", "run", "--manifest", M, "--hop-seconds", "0.00001"], "less than one sample"),
    ],
    "bench": [
        (["bench", "tiny", "--out", "bo", "--repeats", "0"], "repeats >= 1"),
        (["bench-gpu", "tiny", "--device", "cpu", "--out", "bo", "--repeats", "0"], "repeats >= 1"),
        (["bench", "tiny", "--out", "tones"], "tones: --out is a folder sertrt did not write"),
    ],
}
ROWS = [(command, argv, fragment) for command, rows in TABLE.items() for argv, fragment in rows]


def snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """tones/ (16 utterances), run/ (tiny, 1 epoch), b32/ (its fp32 bundle), as a user's folder."""
    root = tmp_path_factory.mktemp("bad-inputs")
    make_tone_corpus(root / "tones", per_label=4, seed=1)
    for argv in (["train", "--train-manifest", M, "--test-manifest", M, "--out", "run", "--epochs", "1", "--quiet"],
                 ["export", "run", "--out", "b32"]):
        subprocess.run([sys.executable, "-m", "sertrt", *argv], cwd=root, env=sertrt_env(), check=True, capture_output=True)
    return root


@pytest.mark.parametrize("command, argv, fragment", ROWS, ids=[f"{c}: {' '.join(a[1:] if c != 'train' else a[7:])}"
                                                                  for c, a, _ in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(world, command, argv, fragment):
    before = snapshot(world)
    result = subprocess.run([sys.executable, "-m", "sertrt", *argv], cwd=world, env=sertrt_env(), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert fragment in lines[0]
    assert snapshot(world) == before  # nothing changed, nothing appeared (x, p, r2, bo, out: never created)
