"""Properties of the streaming runtime over random windows, hops, rates and chunkings (hypothesis):
it never hangs, raises nothing but SertrtError, and emits the same windows however the audio is cut
into chunks, alone (EmotionStream) or batched with other streams (MultiStream). Derandomised, so CI
runs the same examples every time."""

import warnings

import numpy as np
import pytest

from sertrt.core.errors import SertrtError
from sertrt.runtime.multistream import MultiStream
from sertrt.runtime.stream import EmotionStream, StreamConfig, window_starts

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LABELS = ["neutral", "happy", "angry", "sad"]
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


class RowStats:
    """Logits from each row's valid samples alone; remembers every (row) window it saw."""

    def __init__(self):
        self.windows = []

    def infer(self, feeds):
        wave, lengths = feeds["waveform"], feeds["lengths"]
        logits = np.zeros((len(lengths), 4), np.float32)
        for i, n in enumerate(lengths):
            w = wave[i, :n].astype(np.float64)
            self.windows.append(wave[i, :n].copy())
            logits[i] = [w.mean(), w.std(), np.abs(w).max(), 0.0]
        return {"logits": logits}


def audio(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal(n)).astype(np.float32)


def cut(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """x in chunks of the given sizes (cycled), the last one whatever remains."""
    chunks, i, k = [], 0, 0
    while i < len(x):
        size = sizes[k % len(sizes)]
        chunks.append(x[i : i + size])
        i, k = i + size, k + 1
    return chunks


def run(config: StreamConfig, chunks: list[np.ndarray]):
    runner = RowStats()
    stream = EmotionStream(runner, LABELS, config)
    results = [r for c in chunks for r in stream.push(c)] + stream.flush()
    return [(r.start, r.end, r.probabilities) for r in results], runner.windows


windows_and_hops = st.integers(400, 6000).flatmap(lambda w: st.tuples(st.just(w), st.integers(1, w)))


@PROPERTY
@given(window_hop=windows_and_hops, n=st.integers(0, 20000), seed=st.integers(0, 99),
       sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=5))
def test_windows_do_not_depend_on_the_chunking(window_hop, n, seed, sizes):
    window, hop = window_hop
    config = StreamConfig(window_seconds=window / 16000, hop_seconds=hop / 16000, silence_dbfs=None)
    x = audio(n, seed)
    whole, whole_windows = run(config, [x])
    chunked, chunked_windows = run(config, cut(x, sizes))
    assert chunked == whole
    spans = window_starts(n, window, hop)
    assert [(round(a * 16000), round(b * 16000)) for a, b, _ in whole] == spans
    for (a, b), seen in zip(spans, chunked_windows):
        expected = x[a:b] if b - a >= 400 else np.pad(x[a:b], (0, 400 - (b - a)))  # shorter than a frame: padded
        np.testing.assert_array_equal(seen, expected)


@PROPERTY
@given(rate=st.sampled_from([8000, 22050, 44100, 48000]), n=st.integers(1, 30000), seed=st.integers(0, 99),
       sizes=st.lists(st.integers(1, 7000), min_size=1, max_size=4))
def test_resampled_input_gives_the_same_windows_whatever_the_chunking(rate, n, seed, sizes):
    config = StreamConfig(window_seconds=0.25, hop_seconds=0.1, input_rate=rate, silence_dbfs=None)
    x = audio(n, seed)
    whole, _ = run(config, [x])
    chunked, _ = run(config, cut(x, sizes))
    assert [(a, b) for a, b, _ in chunked] == [(a, b) for a, b, _ in whole]
    for (_, _, p), (_, _, q) in zip(chunked, whole):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


@PROPERTY
@given(window=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1e-9, 0.025, 2.0])),
       hop=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1e-9, 1 / 16000, 0.5])))
@pytest.mark.timeout(120)
def test_any_window_and_hop_streams_or_is_refused(window, hop):
    """Whatever two floats: a SertrtError, or a stream that advances (a hang would hit the timeout)."""
    config = StreamConfig(window_seconds=window, hop_seconds=hop, silence_dbfs=None)
    try:
        stream = EmotionStream(RowStats(), LABELS, config)
    except SertrtError:
        return
    assert stream.hop >= 1 and 400 <= stream.window <= 3600 * 16000
    pushed = min(stream.window + 3 * stream.hop, 200_000)
    results = stream.push(audio(pushed, 0))
    assert len(results) == (0 if pushed < stream.window else (pushed - stream.window) // stream.hop + 1)


@PROPERTY
@given(n=st.lists(st.integers(0, 12000), min_size=1, max_size=4), seed=st.integers(0, 99),
       sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=4), max_batch=st.integers(1, 5))
def test_multistream_gives_each_stream_what_it_gets_alone(n, seed, sizes, max_batch):
    config = StreamConfig(window_seconds=0.1, hop_seconds=0.03, silence_dbfs=None)
    signals = {f"s{i}": audio(length, seed + i) for i, length in enumerate(n)}
    streams = MultiStream(RowStats(), LABELS, config, max_batch=max_batch, stream_ids=signals)
    got = {sid: [] for sid in signals}
    pieces = {sid: cut(x, sizes[i % len(sizes):] + sizes[: i % len(sizes)]) for i, (sid, x) in enumerate(signals.items())}
    for step in range(max((len(p) for p in pieces.values()), default=0)):
        batch = {sid: p[step] for sid, p in pieces.items() if step < len(p)}
        for sid, results in streams.push(batch).items():
            got[sid] += results
    for sid, results in streams.flush_all().items():
        got[sid] += results
    for sid, x in signals.items():
        alone, _ = run(config, [x])
        assert [(r.start, r.end) for r in got[sid]] == [(a, b) for a, b, _ in alone]
        for r, (_, _, p) in zip(got[sid], alone):
            np.testing.assert_allclose(r.probabilities, p, rtol=1e-6, atol=1e-7)


@PROPERTY
@given(shape=st.tuples(st.integers(0, 40), st.integers(0, 40)), dtype=st.sampled_from(["float32", "int16", "int32", "uint8"]),
       channels_first=st.sampled_from([None, True, False]))
def test_a_2d_chunk_is_read_one_way_or_refused_naming_its_shape(shape, dtype, channels_first):
    """Either layout of the same audio gives the same stream; a shape that does not say which is refused, unchanged."""
    from sertrt.core.audio import MAX_CHANNELS

    x = np.arange(shape[0] * shape[1]).reshape(shape).astype(dtype)
    stream = EmotionStream(RowStats(), LABELS, StreamConfig(window_seconds=0.025, hop_seconds=0.025, silence_dbfs=None))
    small = [1 <= d <= MAX_CHANNELS for d in shape]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy's "mean of empty slice": NaN samples from no channels
            stream.push(x, channels_first)
    except SertrtError as e:
        if channels_first is not None:
            assert shape[not channels_first] == 0 and "has no channels" in str(e)
        else:
            assert small[0] == small[1] and f"shape {shape} is ambiguous" in str(e)
        assert stream.summary()["duration"] == 0.0
        return
    first = channels_first if channels_first is not None else small[0]
    assert channels_first is not None or small[0] != small[1]
    assert stream.summary()["duration"] == shape[1 if first else 0] / 16000
