"""The bad-input table, command by command: each row is what a user typed, the one-line error it must
get (exit 1, no traceback), and the promise that no file changed (by hash) and none appeared. Rows
marked "was:" got a traceback or silence before. The rows run in this process (conftest's `cli`); END_TO_END
runs a few as the installed command would, in a process of their own."""

import hashlib
import subprocess
import sys

import pytest
from conftest import make_tone_corpus, sertrt_env, sertrt_main

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
        ([*TRAIN, "--max-seconds", "0"], "--max-seconds 0.0: must be >= 0.025"),  # was: trained on empty crops
        ([*TRAIN, "--grad-clip", "0"], "--grad-clip 0.0: must be > 0"),
        ([*TRAIN, "--devices", "0"], "--devices 0: must be >= 1"),
        ([*TRAIN, "--device", "tpu"], "--device 'tpu': unknown (valid: auto, cpu, cuda, cuda:N)"),  # was: traceback
        (["train", "--train-manifest", M, "--test-manifest", M, "--out", WAV], "is an existing file, not a folder"),
        (["train", "--train-manifest", M, "--test-manifest", M, "--out", "run"], "run: already holds a run"),
        (["train", "--train-manifest", M, "--test-manifest", M, "--out", "tones"], "tones: --out is a folder sertrt did not write"),
        (["train", "--train-manifest", M, "--test-manifest", M, "--out", "run", "--resume", "--epochs", "1"],
         "--epochs 1: run has finished 1 epochs already"),  # was: exit 0, options.json rewritten
    ],
    "evaluate": [
        (["evaluate", "nowhere", "--manifest", M], "nowhere: no such checkpoint"),
        (["evaluate", "run", "--manifest", "nope.jsonl"], "nope.jsonl: no such manifest"),
        (["evaluate", "run", "--manifest", M, "--batch-size", "0"], "--batch-size 0: must be >= 1"),  # was: traceback
    ],
    "export": [
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
        (["stream", "b32", WAV, "--threads", "0"], "--threads 0: must be >= 1"),
        (["stream", "b32", WAV, "--channels", "0"], "--channels 0: must be >= 1"),
        (["stream", "b32", WAV, "--window-seconds", "nan"], "window (nan s) must be > 0"),
    ],
    "parity": [
        (["parity", "b32", "--run", "nowhere", "--manifest", M], "nowhere: no such checkpoint"),
        (["parity", "b32", "--run", "run", "--manifest", "nope.jsonl"], "nope.jsonl: no such manifest"),
        (["parity", "b32", "--run", "run", "--manifest", M, "--hop-seconds", "0.00001"], "less than one sample"),
        (["parity", "b32", "--run", "run", "--manifest", M, "--hop-seconds", "0"], "hop (0.0 s) must be > 0"),  # was: crashed
        (["parity", "b32", "--run", "run", "--manifest", M, "--min-agreement", "1.5"], "--min-agreement 1.5: must be in [0, 1]"),
        (["parity", "b32", "--run", "run", "--manifest", M, "--max-delta-ua", "-1"], "--max-delta-ua -1.0: must be >= 0 points"),
    ],
    "bench": [
        (["bench", "tiny", "--out", "bo", "--repeats", "0"], "repeats >= 1"),
        (["bench-gpu", "tiny", "--device", "cpu", "--out", "bo", "--repeats", "0"], "repeats >= 1"),
        (["bench", "tiny", "--out", "tones"], "tones: --out is a folder sertrt did not write"),
        (["bench-gpu", "tiny", "--device", "cpu", "--out", "tones"], "tones: --out is a folder sertrt did not write"),
        (["bench-gpu", "tiny", "--device", "cpu", "--variants", "half-fp8", "--out", "bo"], "unknown GPU bench variant 'half-fp8'"),
    ],
}
ROWS = [(command, argv, fragment) for command, rows in TABLE.items() for argv, fragment in rows]
# (argv, exit code, fragment of the last stderr line): one per way out of main(), each in a process of its own.
END_TO_END = [
    # a SertrtError from a torchrun rank; was: the error once per rank, then torchrun's ChildFailedError traceback
    (["train", "--train-manifest", "nope.jsonl", "--out", "r3", "--devices", "2"], 1, "error: nope.jsonl: no such manifest"),
    (["data", "split", M, "--out-dir", f"{WAV}/x"], 1, "error: tones/angry_0.wav/x: Not a directory"),  # an OSError
    (["stream", "b32", WAV, "--hop-seconds", "x"], 2, "Invalid value for '--hop-seconds'"),  # click's usage error
]


def snapshot(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """tones/ (16 utterances), run/ (tiny, 1 epoch), b32/ (its fp32 bundle), as a user's folder."""
    root = tmp_path_factory.mktemp("bad-inputs")
    make_tone_corpus(root / "tones", per_label=4, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for argv in (["train", "--train-manifest", M, "--test-manifest", M, "--out", "run", "--epochs", "1", "--quiet"],
                     ["export", "run", "--out", "b32", "--quiet"]):
            assert sertrt_main(argv) == 0
    return root


@pytest.mark.parametrize("command, argv, fragment", ROWS, ids=[f"{c}: {' '.join(a[1:] if c != 'train' else a[7:])}"
                                                                  for c, a, _ in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(world, command, argv, fragment, cli):
    before = snapshot(world)
    result = cli(*argv, cwd=world)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert fragment in lines[0]
    assert snapshot(world) == before  # nothing changed, nothing appeared (x, p, r2, bo, out: never created)


@pytest.mark.parametrize("argv, code, fragment", END_TO_END, ids=["sertrt-error", "os-error", "usage"])
def test_bad_input_through_the_installed_command(world, argv, code, fragment):
    before = snapshot(world)
    result = subprocess.run([sys.executable, "-m", "sertrt", *argv], cwd=world, env=sertrt_env(), capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert fragment in lines[-1] and (len(lines) == 1 or code == 2), result.stderr[-2000:]
    assert snapshot(world) == before
