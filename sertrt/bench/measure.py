"""Timing primitives: interleaved latency sweeps and streaming. Everything takes runners (names in,
names out); nothing prints.

On a shared machine the load drifts during a run, so variants are measured interleaved: in each
round every variant gets its share of timings for the same input, and ratios compare medians taken
under the same conditions.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from ..core.audio import SAMPLE_RATE
from ..core.runner import Runner
from ..export.validate import speech_like

ROUNDS = 3  # interleaving rounds per cell
PAUSE_S = 0.05  # between blocks: lets spinning thread pools (ORT's, OpenMP's) go idle first


def make_feeds(window_seconds: float, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """batch rows of speech-like audio, each a full window: waveform (B, num_samples), lengths (B,)."""
    rng = np.random.default_rng([seed, batch, int(window_seconds * 1000)])
    wave = np.stack([speech_like(window_seconds, rng) for _ in range(batch)])
    return {"waveform": wave, "lengths": np.full(batch, wave.shape[1], dtype=np.int64)}


def latency_stats(times_s: list[float], window_seconds: float, batch: int) -> dict[str, Any]:
    """p50/p95/p99 (ms; linear interpolation, so with few timings p99 is near the max), throughput
    (audio seconds and utterances per second at p50) and real-time factor (p50 / audio seconds)."""
    t = np.asarray(times_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = (float(np.percentile(t, q)) for q in (50, 95, 99))
    audio = window_seconds * batch
    return {"n": len(t), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "min_ms": float(t.min()), "mean_ms": float(t.mean()),
            "audio_s_per_s": audio / (p50 / 1000.0), "utterances_per_s": batch / (p50 / 1000.0), "rtf": (p50 / 1000.0) / audio}


def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def round_share(count: int, r: int, rounds: int) -> int:
    """Timed calls in round r (0-based) when `count` calls are spread as evenly as possible over `rounds`."""
    return math.ceil(count * (r + 1) / rounds) - math.ceil(count * r / rounds)


def interleaved(runners: dict[str, Runner], feeds: dict[str, np.ndarray], repeats: int, warmup: int,
                cell_seconds: float, min_repeats: int = 3, caps: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Timings (s) per runner on `feeds`, interleaved over ROUNDS rounds.

    Each runner gets `warmup` untimed calls (the first also estimates its latency), then
    clamp(cell_seconds / latency, min_repeats, repeats or its cap) timed calls, spread over the rounds."""
    counts = {}
    for name, runner in runners.items():
        est = min(timed(lambda: runner.infer(feeds)) for _ in range(max(warmup, 1)))
        most = min(repeats, (caps or {}).get(name, repeats))
        counts[name] = max(min(most, int(cell_seconds / max(est, 1e-6))), min(min_repeats, most))
    rounds = max(1, min(ROUNDS, *counts.values()))
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds):
        for name, runner in runners.items():
            time.sleep(PAUSE_S)
            times[name] += [timed(lambda: runner.infer(feeds)) for _ in range(round_share(counts[name], r, rounds))]
    return times


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def stream_run(runner: Runner, labels: list[str], seconds: float = 60.0, window: float = 2.0, hop: float = 1.0,
               chunk_seconds: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """EmotionStream over `seconds` of speech-like audio pushed in microphone-sized chunks, as fast as
    the engine allows: wall time vs audio time, and the stream's own share of it."""
    from ..runtime.stream import EmotionStream, StreamConfig

    audio = speech_like(seconds, np.random.default_rng(seed))
    stream = EmotionStream(runner, labels, StreamConfig(window_seconds=window, hop_seconds=hop))
    chunk = int(chunk_seconds * SAMPLE_RATE)
    t0 = time.perf_counter()
    results = [r for start in range(0, len(audio), chunk) for r in stream.push(audio[start : start + chunk])]
    results += stream.flush()
    wall = time.perf_counter() - t0
    engine_ms, overhead_ms = sum(r.latency_ms for r in results), sum(r.overhead_ms for r in results)
    return {"audio_seconds": seconds, "wall_seconds": wall, "windows": len(results), "engine_ms": engine_ms,
            "overhead_ms": overhead_ms, "rtf": wall / seconds, "keeps_up": wall < seconds,
            "overhead_share": overhead_ms / (1000.0 * wall),  # WindowResult.overhead_ms: the runtime's own work
            # everything but the engine call: push() bookkeeping, ring writes, this loop's slicing
            "non_engine_share": 1.0 - engine_ms / (1000.0 * wall), "mean_engine_ms": engine_ms / max(len(results), 1)}


def multistream_run(runner: Runner, labels: list[str], streams: int = 4, seconds: float = 10.0, window: float = 2.0,
                    hop: float = 1.0, chunk_seconds: float = 0.1, rounds: int = 2) -> dict[str, Any]:
    """`streams` streams of speech-like audio, pushed a chunk per stream per tick, through one runner:
    one EmotionStream per stream (batch-1 engine calls) vs MultiStream (one batched call per tick).
    The two modes alternate for `rounds` rounds; wall time is the median per mode."""
    from ..runtime.multistream import MultiStream
    from ..runtime.stream import EmotionStream, StreamConfig

    config = StreamConfig(window_seconds=window, hop_seconds=hop)
    audio = [speech_like(seconds, np.random.default_rng([7, i])) for i in range(streams)]
    chunk = int(chunk_seconds * SAMPLE_RATE)
    ticks = [{i: a[start : start + chunk] for i, a in enumerate(audio)} for start in range(0, len(audio[0]), chunk)]

    def alone() -> int:
        each = [EmotionStream(runner, labels, config) for _ in range(streams)]
        return sum(len(each[i].push(c)) for tick in ticks for i, c in tick.items()) + sum(len(s.flush()) for s in each)

    def batched() -> int:
        multi = MultiStream(runner, labels, config, max_batch=streams, stream_ids=range(streams))
        n = sum(len(r) for tick in ticks for r in multi.push(tick).values())
        return n + sum(len(r) for r in multi.flush_all().values())

    walls: dict[str, list[float]] = {"alone": [], "batched": []}
    windows = {}
    for _ in range(rounds):
        for mode, fn in (("alone", alone), ("batched", batched)):
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            windows[mode] = fn()
            walls[mode].append(time.perf_counter() - t0)
    wall = {k: float(np.median(v)) for k, v in walls.items()}
    return {"streams": streams, "seconds_per_stream": seconds, "windows": windows, "wall_s": wall, "runs": walls,
            "rtf": {k: v / (streams * seconds) for k, v in wall.items()}, "batched_speedup": wall["alone"] / wall["batched"]}
