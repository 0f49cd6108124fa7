"""Several streams through one runner: batched engine calls, the same results as each stream alone."""

import itertools
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import sertrt_env

from sertrt.core.errors import SertrtError
from sertrt.runtime.multistream import MultiStream
from sertrt.runtime.stream import EmotionStream, StreamConfig

LABELS = ["neutral", "happy", "angry", "sad"]
CONFIG = StreamConfig(window_seconds=1.0, hop_seconds=0.25)  # 16000 / 4000 samples: many windows, quick


class RowStats:
    """Logits from each row's valid samples alone, so padding or a mixed-up row changes them.

    Counts the rows it saw and, with keep, records each call's batch size.
    """

    def __init__(self, keep=True):
        self.batches, self.keep, self.rows = [], keep, 0

    def infer(self, feeds):
        wave, lengths = feeds["waveform"], feeds["lengths"]
        assert wave.dtype == np.float32 and lengths.dtype == np.int64
        assert wave.shape == (len(lengths), lengths.max())  # padded to the longest row, no further
        self.rows += len(lengths)
        if self.keep:
            self.batches.append(len(lengths))
        logits = np.zeros((len(lengths), 4), np.float32)
        for i, n in enumerate(lengths):
            assert not wave[i, n:].any()  # padding is zeros
            w = wave[i, :n].astype(np.float64)
            logits[i] = [20 * w.mean(), 10 * w.std(), 5 * np.abs(w).max(), 40 * (w[: n // 2] ** 2).mean()]
        return {"logits": logits}


def voiced(seconds, seed, rate=16000):
    """Tone + noise under a slow envelope: window statistics (and so labels) change along the stream."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.05 + 0.3 * np.sin(2 * np.pi * 0.3 * t + seed) ** 2
    return (envelope * np.sin(2 * np.pi * (120 + 40 * seed) * t) + 0.02 * rng.standard_normal(len(t)) + 0.01 * seed).astype(np.float32)


def scenario():
    """{stream id: (audio, chunk size, config)}: chunkings from 7 samples to 8000, flush windows shorter than
    the window (5000 and 150 samples), a silent stream, silence inside a voiced one, 48 kHz stereo int16."""
    stereo = (np.stack([voiced(2.5, 5, 48000)] * 2, 1) * 32767).astype(np.int16)
    mixed = np.concatenate([np.zeros(32000, np.float32), voiced(3.0, 6), np.zeros(16000, np.float32)])
    return {
        "long": (voiced(6.3, 1), 160, CONFIG),
        "ema": (voiced(3.1, 2), 8000, StreamConfig(1.0, 0.25, smoothing="ema", ema_alpha=0.3)),
        "short": (voiced(5000 / 16000, 3), 7, CONFIG),
        7: (voiced(150 / 16000, 4), 1000, CONFIG),  # any hashable id; padded to one frame (400 samples)
        "quiet": (np.zeros(64000, np.float32), 4000, CONFIG),
        "mixed": (mixed, 2500, StreamConfig(1.0, 0.25, smoothing="majority", majority_k=3)),
        "mic48k": (stereo, 4800, StreamConfig(1.0, 0.25, input_rate=48000)),
    }


def chunks_of(audio, size, count=None):
    return [audio[i : i + size] for i in range(0, len(audio) if count is None else count * size, size)]


def run_alone(runner, labels, audio, size, config, flush=True, count=None):
    """The reference: one EmotionStream, batch-1 engine calls; (results, summary)."""
    stream = EmotionStream(runner, labels, config)
    results = [r for chunk in chunks_of(audio, size, count) for r in stream.push(chunk)]
    return results + (stream.flush() if flush else []), stream.summary()


def run_together(streams, sources, results, ticks=None):
    """Tick by tick, each source gives its next chunk (while it has one) to one push for all streams."""
    for _ in itertools.count() if ticks is None else range(ticks):
        chunks = {sid: chunk for sid, it in sources.items() if (chunk := next(it, None)) is not None}
        if not chunks:
            return
        for sid, got in streams.push(chunks).items():
            results.setdefault(sid, []).extend(got)


def sources_of(todo):
    return {sid: iter(chunks_of(audio, size)) for sid, (audio, size, _) in todo.items()}


def assert_same(got, want, atol=0.0):
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        fields = ("index", "start", "end", "silent", "label", "raw_label", "rms_dbfs")
        assert [getattr(g, f) for f in fields] == [getattr(w, f) for f in fields]
        if w.probabilities is None:
            assert g.probabilities is None
        else:
            np.testing.assert_allclose(g.probabilities, w.probabilities, rtol=0, atol=atol)


def assert_same_summary(got, want, atol=0.0):
    for key in ("duration", "windows", "voiced_windows", "silent_windows", "label"):
        assert got[key] == want[key], key
    if want["probabilities"] is None:
        assert got["probabilities"] is None
    else:
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=0, atol=atol)


def check_against_alone(runner, labels, max_batch, atol):
    todo = scenario()
    streams = MultiStream(runner, labels, CONFIG, max_batch=max_batch)
    for sid, (_, _, config) in todo.items():
        streams.add(sid, config)
    together = {}
    run_together(streams, sources_of(todo), together)
    for sid, got in streams.flush_all().items():
        together[sid].extend(got)
    for sid, (audio, size, config) in todo.items():
        alone, summary = run_alone(runner, labels, audio, size, config)
        assert_same(together[sid], alone, atol)
        assert_same_summary(streams.summary(sid), summary, atol)
    assert together["short"][-1].end == 5000 / 16000 and together[7][-1].end == 150 / 16000  # short flush windows
    assert all(r.silent for r in together["quiet"]) and streams.summary("quiet")["voiced_windows"] == 0
    assert {r.silent for r in together["mixed"]} == {True, False}
    return together


@pytest.mark.parametrize("max_batch", [2, 3, 8])
def test_batched_streams_match_each_stream_alone(max_batch):
    runner = RowStats()
    together = check_against_alone(runner, LABELS, max_batch, atol=0.0)  # same rows in, same logits out: exact
    voiced_windows = sum(not r.silent for results in together.values() for r in results)
    batched = runner.batches[: len(runner.batches) - voiced_windows]  # run_alone's batch-1 calls came last
    assert sum(batched) == voiced_windows  # silent windows never reach the engine
    assert 1 < max(batched) <= max_batch
    assert len(batched) < voiced_windows


@pytest.fixture(scope="module")
def onnx_runner(decisive_bundle):
    """A tiny random model as an fp32 bundle, its head scaled so probabilities are far from uniform."""
    from sertrt.runtime.runners import open_runner

    runner, card = open_runner(decisive_bundle / "bundle")
    with runner:
        yield runner, card.labels


def test_batched_streams_match_each_stream_alone_with_an_onnx_model(onnx_runner):
    runner, labels = onnx_runner
    together = check_against_alone(runner, labels, max_batch=4, atol=1e-6)
    probs = np.array([r.probabilities for results in together.values() for r in results if not r.silent])
    assert probs.max() - probs.min() > 0.5  # confident enough that 1e-6 is a real check


def test_streams_come_and_go_mid_way():
    runner = RowStats()
    a, b, c = voiced(4.0, 1), voiced(5.0, 2), voiced(3.0, 3)
    c_config = StreamConfig(1.0, 0.25, smoothing="ema")
    streams = MultiStream(runner, LABELS, CONFIG, max_batch=3, stream_ids=["a", "b"])
    sources = {"a": iter(chunks_of(a, 3200)), "b": iter(chunks_of(b, 3200))}
    results = {}
    run_together(streams, sources, results, ticks=10)
    streams.add("c", c_config)
    sources["c"] = iter(chunks_of(c, 3200))
    run_together(streams, sources, results, ticks=6)
    a_summary = streams.remove("a")
    del sources["a"]
    assert streams.stream_ids == ["b", "c"] and "a" not in streams
    with pytest.raises(SertrtError, match="unknown stream 'a'"):
        streams.push({"a": a[:3200]})
    run_together(streams, sources, results)
    for sid, got in streams.flush_all().items():
        results[sid].extend(got)
    assert set(results) == {"a", "b", "c"}

    alone_a, summary_a = run_alone(runner, LABELS, a, 3200, CONFIG, flush=False, count=16)
    assert_same(results["a"], alone_a)
    assert_same_summary(a_summary, summary_a)
    assert_same(results["b"], run_alone(runner, LABELS, b, 3200, CONFIG)[0])
    assert_same(results["c"], run_alone(runner, LABELS, c, 3200, c_config)[0])
    assert max(runner.batches) == 3
    streams.add("a")  # a new stream under an old id starts at 0
    assert streams.push({"a": a[:16000]})["a"][0].start == 0.0


def test_a_bad_chunk_is_rejected_and_no_stream_changes():
    runner = RowStats()
    a, b = voiced(3.0, 1), voiced(3.0, 2)
    streams = MultiStream(runner, LABELS, CONFIG, max_batch=4, stream_ids=["a", "b"])
    sources = {"a": iter(chunks_of(a, 6000)), "b": iter(chunks_of(b, 6000))}
    results = {}
    run_together(streams, sources, results, ticks=3)
    calls = len(runner.batches)
    bad = voiced(0.5, 9)
    bad[100] = np.nan
    with pytest.raises(SertrtError, match="NaN/Inf.*stream unchanged"):
        streams.push({"a": np.full(8000, 0.2, np.float32), "b": bad})  # a's chunk alone would complete windows
    with pytest.raises(SertrtError, match=r"must be \(num_samples,\) or 2-D with channels"):
        streams.push({"a": np.zeros((10, 2, 2), np.float32)})
    with pytest.raises(SertrtError, match=r"shape \(5, 2\) is ambiguous.*stream unchanged"):
        streams.push({"a": np.full(8000, 0.2, np.float32), "b": np.zeros((5, 2), np.float32)})
    assert len(runner.batches) == calls
    run_together(streams, sources, results)
    results["a"] += streams.flush("a")
    assert streams.summary("b")["windows"] == len(results["b"])  # flushing a left b alone
    results["b"] += streams.flush("b")
    assert_same(results["a"], run_alone(runner, LABELS, a, 6000, CONFIG)[0])  # as if the bad calls never came
    assert_same(results["b"], run_alone(runner, LABELS, b, 6000, CONFIG)[0])


def test_unknown_ids_and_bad_settings_are_refused():
    streams = MultiStream(RowStats(), LABELS, CONFIG, stream_ids=["a", "b"])
    with pytest.raises(SertrtError, match=r"unknown stream 'nope' \(streams: 'a', 'b'\)"):
        streams.push({"a": voiced(2.0, 1), "nope": voiced(1.0, 2)})
    assert streams.summary("a")["duration"] == 0.0  # a's chunk in the refused call was not taken
    for verb in (streams.flush, streams.summary, streams.remove, streams.reset):
        with pytest.raises(SertrtError, match="unknown stream 'nope'"):
            verb("nope")
    with pytest.raises(SertrtError, match="stream 'a' already exists"):
        streams.add("a")
    with pytest.raises(SertrtError, match="window/hop 2.0/0.25 s differ"):
        streams.add("c", StreamConfig(window_seconds=2.0, hop_seconds=0.25))
    with pytest.raises(SertrtError, match="max_batch must be an integer >= 1"):
        MultiStream(RowStats(), LABELS, CONFIG, max_batch=0)


def test_silent_streams_never_reach_the_engine_and_reset_restarts():
    runner = RowStats()
    streams = MultiStream(runner, LABELS, CONFIG, stream_ids=["x", "y"])
    out = streams.push({"x": np.zeros(40000, np.float32), "y": np.full(40000, 1e-5, np.float32)})
    assert runner.batches == [] and len(out["x"]) == len(out["y"]) == 7 and all(r.silent for r in out["x"] + out["y"])
    streams.reset("x")
    assert streams.summary("x")["windows"] == 0 and streams.summary("y")["windows"] == 7
    streams.reset()
    assert streams.summary("y")["windows"] == 0


def test_latency_is_the_batched_call_shared_by_its_rows():
    class Slow(RowStats):
        def infer(self, feeds):
            time.sleep(0.04)
            return super().infer(feeds)

    runner = Slow()
    streams = MultiStream(runner, LABELS, CONFIG, max_batch=4, stream_ids=range(4))
    out = streams.push({i: voiced(1.0, i + 1) for i in range(4)})  # one full window each: one call of 4 rows
    assert runner.batches == [4]
    latencies = {r.latency_ms for results in out.values() for r in results}
    assert len(latencies) == 1 and 10.0 <= latencies.pop() < 40.0  # 40 ms / 4 rows, not 40 ms each
    assert all(0.0 <= r.overhead_ms < 10.0 for results in out.values() for r in results)
    assert streams.summary(0)["mean_latency_ms"] >= 10.0


@pytest.mark.slow  # a long run
def test_memory_stays_flat_over_a_long_run():
    """Three streams of 20 ms chunks for 10 minutes each: nothing the batch holds grows with time."""
    runner = RowStats(keep=False)
    streams = MultiStream(runner, LABELS, StreamConfig(window_seconds=1.0, hop_seconds=1.0), max_batch=2,
                          stream_ids=["a", "b", "c"])
    buffers = (streams._waveform, streams._lengths, streams._pending)
    burst = (0.2 * np.random.default_rng(0).standard_normal(320)).astype(np.float32)
    quiet = np.zeros(320, np.float32)

    def run(seconds):
        for i in range(seconds * 50):
            voiced_now = (i // 50) % 20 == 0  # one voiced second in twenty
            streams.push({"a": burst if voiced_now else quiet, "b": quiet, "c": burst})

    run(60)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    run(600)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 64_000, f"traced memory grew {grown} bytes over 10 min of audio"
    assert all(now is then for now, then in zip((streams._waveform, streams._lengths, streams._pending), buffers))
    assert streams._pending == [] and streams.summary("c")["windows"] == 660
    assert runner.rows == 660 // 20 + 660  # a voiced 1 s in 20, b never, c always


def test_imports_without_torch():
    code = "import sys\nsys.modules['torch'] = None\nimport sertrt.runtime.multistream\n"
    subprocess.run([sys.executable, "-c", code], env=sertrt_env(), check=True)


def test_a_hop_under_one_sample_is_refused_not_spun_on():
    with pytest.raises(SertrtError, match="less than one sample"):
        MultiStream(RowStats(), LABELS, StreamConfig(hop_seconds=0.00001))


def test_threads_pushing_their_own_streams_get_what_each_gets_alone():
    """4 threads at once lost windows (8 of 37), duplicated them (39 of 37), mislabelled them and sent the
    engine zero-length rows: push and flush now hold one lock."""
    class Yielding(RowStats):
        def infer(self, feeds):
            time.sleep(0.001)  # a real engine releases the GIL mid-call: let the other threads in here
            return super().infer(feeds)

    audio = {i: voiced(4.0, i + 1) for i in range(4)}
    size = {i: 700 + 900 * i for i in range(4)}
    streams = MultiStream(Yielding(keep=False), LABELS, CONFIG, max_batch=3, stream_ids=range(4))

    def feed(i):
        got = [r for chunk in chunks_of(audio[i], size[i]) for r in streams.push({i: chunk})[i]]
        return got + streams.flush(i)

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(feed, range(4)))
    for i in range(4):
        alone, summary = run_alone(RowStats(keep=False), LABELS, audio[i], size[i], CONFIG)
        assert_same(together[i], alone)
        assert_same_summary(streams.summary(i), summary)
    # channels first, as torchaudio gives them, are the same stream
    streams.reset(0)
    stereo = streams.push({0: np.stack([audio[0], audio[0]])})[0] + streams.flush(0)
    assert_same(stereo, run_alone(RowStats(keep=False), LABELS, audio[0], len(audio[0]), CONFIG)[0], atol=1e-6)
