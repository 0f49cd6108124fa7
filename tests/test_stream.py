"""The streaming runtime with a stand-in runner (exact window bookkeeping) and with a real bundle."""

import io
import json
import resource
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import sertrt_env

from sertrt.core.errors import SertrtError
from sertrt.runtime.stream import EmotionStream, StreamConfig, window_starts

LABELS = ["neutral", "happy", "angry", "sad"]


class Recorder:
    """Returns the window's mean as the 'neutral' logit and remembers every window it saw."""

    def __init__(self, keep=True):
        self.windows, self.keep, self.calls = [], keep, 0

    def infer(self, feeds):
        w = feeds["waveform"][0, : feeds["lengths"][0]]
        self.calls += 1
        if self.keep:
            self.windows.append(w.copy())
        return {"logits": np.array([[w.mean(), 0.0, 0.0, 0.0]], dtype=np.float32)}


@pytest.mark.parametrize("chunk", [160, 7, 8000, 32000, 123457])
def test_windows_are_exact_whatever_the_chunk_size(chunk):
    x = (np.arange(100_000, dtype=np.float32) / 100_000 + 0.1).astype(np.float32)
    runner = Recorder()
    stream = EmotionStream(runner, LABELS, StreamConfig(silence_dbfs=None))
    results = []
    for i in range(0, len(x), chunk):
        results += stream.push(x[i : i + chunk])
    results += stream.flush()
    spans = window_starts(len(x), 32000, 8000)
    assert [(round(r.start * 16000), round(r.end * 16000)) for r in results] == spans
    for (a, b), seen in zip(spans, runner.windows):
        np.testing.assert_array_equal(seen, x[a:b])
    assert stream.summary()["windows"] == len(spans)


def test_short_input_gives_one_short_window_and_tiny_input_is_padded():
    runner = Recorder()
    stream = EmotionStream(runner, LABELS, StreamConfig(silence_dbfs=None))
    assert stream.push(np.full(5000, 0.2, np.float32)) == []
    (r,) = stream.flush()
    assert (r.start, r.end) == (0.0, 5000 / 16000) and len(runner.windows[0]) == 5000
    stream.reset()
    stream.push(np.full(100, 0.2, np.float32))
    (r,) = stream.flush()
    assert len(runner.windows[-1]) == 400 and np.all(runner.windows[-1][100:] == 0)  # one frame, zero-padded


def test_silence_is_gated_and_said():
    runner = Recorder()
    stream = EmotionStream(runner, LABELS, StreamConfig(silence_dbfs=-50))
    quiet = np.zeros(32000, np.float32)
    loud = 0.3 * np.sin(np.arange(32000) / 10).astype(np.float32)
    (r1,) = stream.push(quiet)
    assert r1.silent and r1.probabilities is None and runner.calls == 0
    results = stream.push(loud)
    assert not results[-1].silent and runner.calls == len(results)
    s = stream.summary()
    assert s["silent_windows"] == 1 and s["voiced_windows"] == len(results)


def test_resampling_stereo_and_int16_input():
    runner = Recorder()
    stream = EmotionStream(runner, LABELS, StreamConfig(input_rate=48000, silence_dbfs=None))
    t = np.arange(48000 * 3) / 48000
    mono = 0.3 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([mono, mono], 1)
    pcm = (stereo * 32767).astype(np.int16)
    for i in range(0, len(pcm), 4800):
        stream.push(pcm[i : i + 4800])
    stream.flush()
    assert stream.summary()["duration"] == pytest.approx(3.0, abs=0.01)
    w = runner.windows[0]
    spectrum = np.abs(np.fft.rfft(w))
    assert abs(np.fft.rfftfreq(len(w), 1 / 16000)[spectrum.argmax()] - 440) < 2


def test_stereo_int16_is_scaled_like_mono_int16():
    mono = (0.3 * np.sin(np.arange(32000) / 10) * 32767).astype(np.int16)
    by_channels = EmotionStream(Recorder(), LABELS, StreamConfig(silence_dbfs=None)).push(np.stack([mono, mono], 1))
    by_mono = EmotionStream(Recorder(), LABELS, StreamConfig(silence_dbfs=None)).push(mono)
    assert by_channels[0].rms_dbfs == pytest.approx(by_mono[0].rms_dbfs, abs=1e-4) and by_mono[0].rms_dbfs < 0


def test_nan_chunk_is_rejected_without_touching_state():
    runner = Recorder()
    stream = EmotionStream(runner, LABELS, StreamConfig(silence_dbfs=None))
    stream.push(np.full(20000, 0.1, np.float32))
    bad = np.full(20000, 0.1, np.float32)
    bad[3] = np.nan
    with pytest.raises(SertrtError, match="NaN/Inf.*stream unchanged"):
        stream.push(bad)
    results = stream.push(np.full(12000, 0.1, np.float32))
    assert len(results) == 1 and results[0].end == 2.0  # exactly as if the bad chunk never came


def test_smoothing_modes():
    class Scripted:
        def __init__(self, sequence):
            self.sequence = iter(sequence)

        def infer(self, feeds):
            logits = np.full((1, 4), -5.0, np.float32)
            logits[0, next(self.sequence)] = 5.0
            return {"logits": logits}

    seq = [0, 0, 2, 0, 2, 2, 2]
    for mode, expected in [("none", [0, 0, 2, 0, 2, 2, 2]), ("majority", [0, 0, 0, 0, 0, 2, 2])]:
        stream = EmotionStream(Scripted(seq), LABELS, StreamConfig(hop_seconds=2.0, smoothing=mode, majority_k=5, silence_dbfs=None))
        got = [r.label for r in stream.push(np.full(32000 * len(seq), 0.1, np.float32))]
        assert got == [LABELS[i] for i in expected], mode
    stream = EmotionStream(Scripted(seq), LABELS, StreamConfig(hop_seconds=2.0, smoothing="ema", ema_alpha=0.3, silence_dbfs=None))
    got = [r.label for r in stream.push(np.full(32000 * len(seq), 0.1, np.float32))]
    assert got[2] == "neutral" and got[-1] == "angry"  # one outlier does not flip an EMA; a run does
    with pytest.raises(SertrtError, match="valid: none, ema, majority"):
        EmotionStream(Scripted(seq), LABELS, StreamConfig(smoothing="median"))


@pytest.mark.slow  # two hours of audio
def test_memory_stays_flat_over_hours_of_audio():
    """Two hours of audio in 20 ms chunks: the stream's memory must not grow with it."""
    runner = Recorder(keep=False)
    stream = EmotionStream(runner, LABELS, StreamConfig(window_seconds=2.0, hop_seconds=2.0, silence_dbfs=-50))
    rng = np.random.default_rng(0)
    chunk = np.zeros(320, np.float32)
    burst = (0.2 * rng.standard_normal(320)).astype(np.float32)

    def run(seconds):
        for i in range(int(seconds * 50)):
            stream.push(burst if (i // 50) % 60 == 0 else chunk)  # one voiced second a minute

    run(600)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(7200)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    s = stream.summary()
    assert s["duration"] == pytest.approx(7800, abs=1)
    assert s["windows"] == 3900 and runner.calls == s["voiced_windows"] > 0
    assert grown_kb < 5_000, f"peak RSS grew {grown_kb} kB over 2 h of audio"


@pytest.fixture
def bundle(decisive_bundle):
    """A tiny random model's fp32 bundle (conftest.decisive_bundle)."""
    return decisive_bundle / "bundle"


def test_stream_command_reads_files_and_stdin(tmp_path, tone_corpus, bundle):
    wav = next(tone_corpus.parent.glob("*.wav"))
    cmd = [sys.executable, "-m", "sertrt", "stream", str(bundle)]
    by_file = subprocess.run([*cmd, str(wav), "--hop-seconds", "0.25"], env=sertrt_env(), capture_output=True, text=True, check=True)
    lines = [json.loads(x) for x in by_file.stdout.splitlines()]
    assert lines[-1]["summary"] and lines[-1]["windows"] == len(lines) - 1 >= 1
    import soundfile as sf

    audio, rate = sf.read(wav, dtype="int16")
    by_pipe = subprocess.run([*cmd, "-", "--rate", str(rate), "--hop-seconds", "0.25"], input=audio.tobytes(),
                             env=sertrt_env(), capture_output=True, check=True)
    piped = [json.loads(x) for x in by_pipe.stdout.decode().splitlines()]
    assert [p["label"] for p in piped] == [p["label"] for p in lines]
    missing = subprocess.run([*cmd, str(tmp_path / "nope.wav")], env=sertrt_env(), capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.wav'}: no such audio file"]


@pytest.mark.parametrize("window, hop, message", [
    (2.0, 0.00001, "less than one sample"),  # rounds to 0 samples: the stream would never advance
    (2.0, 0.0, "must be > 0"),
    (2.0, float("nan"), "must be > 0"),
    (0.0, 0.0, "window (0.0 s) must be > 0"),
    (float("nan"), 0.5, "window (nan s) must be > 0"),
    (1e9, 0.5, "must be > 0 and <= 3600 s"),  # would allocate 64 GB per buffer
])
def test_window_and_hop_that_cannot_stream_are_refused(window, hop, message):
    config = StreamConfig(window_seconds=window, hop_seconds=hop)
    with pytest.raises(SertrtError) as e:
        config.check()
    assert message in str(e.value)
    with pytest.raises(SertrtError):
        EmotionStream(Recorder(), LABELS, config)


def test_smallest_hop_rounds_to_one_sample_and_advances():
    config = StreamConfig(window_seconds=0.03, hop_seconds=1 / 16000, silence_dbfs=None)
    config.check()
    assert (config.window_samples, config.hop_samples) == (480, 1)
    stream = EmotionStream(Recorder(keep=False), LABELS, config)
    assert len(stream.push(np.full(485, 0.1, np.float32))) == 6  # windows ending at 480 ... 485


def test_channels_first_chunks_are_read_as_channels():
    """np.stack([x, x]) (torchaudio's layout) was read as 48000 channels of 2 samples: 0.004 s of audio."""
    x = (0.3 * np.sin(np.arange(48000) / 10)).astype(np.float32)
    mono, stereo = Recorder(), Recorder()
    want = EmotionStream(mono, LABELS, StreamConfig(silence_dbfs=None)).push(x)
    stream = EmotionStream(stereo, LABELS, StreamConfig(silence_dbfs=None))
    got = stream.push(np.stack([x, x])) + stream.push(np.stack([x, x])[:, :5], channels_first=True)
    assert [(r.start, r.end) for r in got] == [(r.start, r.end) for r in want] and len(want) == 3
    for a, b in zip(stereo.windows, mono.windows):
        np.testing.assert_allclose(a, b, atol=1e-7)
    with pytest.raises(SertrtError, match=r"audio chunk: shape \(5, 2\) is ambiguous.*stream unchanged"):
        stream.push(np.zeros((5, 2), np.float32))
    assert stream.summary()["duration"] == 48005 / 16000


def test_int32_and_uint8_chunks_are_scaled_like_int16():
    """int32 read at about +87 dBFS, so the silence gate never fired; uint8 kept its offset of 128."""
    x = 0.3 * np.sin(np.arange(32000) / 10)
    levels = [EmotionStream(Recorder(), LABELS).push(pcm)[0].rms_dbfs
              for pcm in ((x * 2**15).astype(np.int16), (x * 2**31).astype(np.int32), np.round(x * 128 + 128).astype(np.uint8))]
    assert levels == pytest.approx([levels[0]] * 3, abs=0.05) and -14 < levels[0] < -12
    quiet = EmotionStream(Recorder(), LABELS).push((x * 1e-4 * 2**31).astype(np.int32))
    assert quiet[0].silent


def test_a_nan_chunk_is_timed_from_the_start_of_the_stream():
    stream = EmotionStream(Recorder(), LABELS, StreamConfig(input_rate=8000, silence_dbfs=None))
    stream.push(np.full(20000, 0.1, np.float32))
    bad = np.full(8000, 0.1, np.float32)
    bad[5] = np.nan
    with pytest.raises(SertrtError, match=r"the first at 2.501 s \(sample 20005\); chunk rejected, stream unchanged"):
        stream.push(bad)


def test_one_call_api_reads_channels_first_and_refuses_ambiguous_shapes(bundle):
    from sertrt.runtime import load

    x = (0.3 * np.sin(np.arange(24000) / 10)).astype(np.float32)
    with load(bundle) as rec:
        mono = rec(x, 16000)
        for stereo in (np.stack([x, x]), np.stack([x, x], 1), (np.stack([x, x]) * 2**31).astype(np.int32)):
            np.testing.assert_allclose(rec(stereo, 16000).logits, mono.logits, atol=1e-5)
        assert rec(np.zeros((3, 2), np.float32), 16000, channels_first=False).label in LABELS
        with pytest.raises(SertrtError, match=r"utterance 1: shape \(3, 2\) is ambiguous"):
            rec([x, np.zeros((3, 2), np.float32)], 16000)


def cli(monkeypatch, capsys, *argv, stdin=b""):
    """`sertrt ARGV` in this process (warnings are errors): (exit code, stdout, stderr)."""
    from sertrt.cli import main

    monkeypatch.setattr(sys, "argv", ["sertrt", *map(str, argv)])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() sets its own
    code = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            main()
        except SystemExit as e:
            code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stream_command_errors_say_what_is_wrong(bundle, tmp_path, monkeypatch, capsys):
    import soundfile as sf

    x = (0.3 * np.sin(np.arange(64000) / 10)).astype(np.float32)
    x[40000] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    # was: windows printed, then "audio chunk: ... at sample 0; chunk rejected, stream unchanged" with exit 1
    assert cli(monkeypatch, capsys, "stream", bundle, tmp_path / "nan.wav") == (
        1, "", f"error: {tmp_path / 'nan.wav'}: audio has 1 NaN/Inf samples, the first at 2.500 s (sample 40000)\n")
    # was: "needs --rate"
    assert cli(monkeypatch, capsys, "stream", bundle, "-", "--rate", "0") == (
        1, "", "error: --rate 0: must be a positive sample rate in Hz\n")
    # was: ":abc:" printed as an emoji
    assert cli(monkeypatch, capsys, "stream", bundle, "-", "--vad-model", "energy:abc", "--rate", "16000")[2] == (
        "error: --vad energy:abc: 'abc' is not a number\n")
    # was: numpy's "invalid value encountered in reduce" warning before the error
    code, out, err = cli(monkeypatch, capsys, "stream", bundle, "-", "--rate", "16000", "--format", "f32le",
                         "--channels", "2", stdin=np.random.default_rng(0).bytes(64000))
    assert code == 1 and out == "" and err.startswith("error: stdin: audio has ") and err.count("\n") == 1


def test_vad_model_implies_vad(bundle, tmp_path, monkeypatch, capsys):
    """--vad-model without --vad was silently ignored: a detector named is a detector used."""
    wav = tmp_path / "tone.wav"
    import soundfile as sf

    sf.write(wav, (0.3 * np.sin(np.arange(48000) / 10)).astype(np.float32), 16000)  # about -13 dBFS
    code, out, _ = cli(monkeypatch, capsys, "stream", bundle, wav, "--vad-model", "energy:-5")  # every frame below
    windows = [json.loads(line) for line in out.splitlines()][:-1]
    assert code == 0 and len(windows) == 3 and all(w["silent"] for w in windows)
    code, out, _ = cli(monkeypatch, capsys, "stream", bundle, wav)
    assert code == 0 and not any(json.loads(line).get("silent") for line in out.splitlines())


def test_help_keeps_square_brackets():
    """rich's markup ate "[vad]" from the help of --vad-model ("pip install sertrt" was left)."""
    from typer.testing import CliRunner

    from sertrt.cli import app

    r = CliRunner().invoke(app, ["stream", "--help"], terminal_width=200)
    assert r.exit_code == 0 and "webrtc[:0-3] (sertrt[vad])" in " ".join(r.output.split())
