"""Timing primitives: interleaved latency sweeps and streaming, on runners (names in, names out).

The load of a shared machine drifts during a run, so variants are measured interleaved: each round gives
every variant its share of timings on the same input, and ratios compare medians taken under the same load.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np

from ..core.audio import SAMPLE_RATE, seconds_to_samples
from ..core.dims import ModelDims
from ..core.runner import Runner
from ..export.validate import speech_like

ROUNDS = 3  # interleaving rounds per cell
PAUSE_S = 0.05  # between blocks: lets spinning thread pools (ORT's, OpenMP's) go idle first


def make_feeds(window_seconds: float, batch: int) -> dict[str, np.ndarray]:
    """batch rows of speech-like audio, each a full window: waveform (B, num_samples), lengths (B,)."""
    rng = np.random.default_rng([0, batch, int(window_seconds * 1000)])
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


def forward_flops(dims: ModelDims | None, window_seconds: float, batch: int = 1) -> dict[str, Any] | None:
    """model_flops of one forward at (batch, window), None where the count does not apply (no dims, not wav2vec2)."""
    from ..model.flops import model_flops

    if dims is None or dims.upstream.kind != "wav2vec2":
        return None
    return model_flops(dims.upstream.config, dims.head, seconds_to_samples(window_seconds), batch)


def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def round_share(count: int, r: int, rounds: int) -> int:
    """Timed calls in round r (0-based) when `count` calls are spread as evenly as possible over `rounds`."""
    return math.ceil(count * (r + 1) / rounds) - math.ceil(count * r / rounds)


def interleaved(runners: dict[str, Runner], feeds: dict[str, np.ndarray], repeats: int, warmup: int,
                cell_seconds: float) -> dict[str, list[float]]:
    """Timings (s) per runner on `feeds`: `warmup` untimed calls (the first also estimates its latency), then
    clamp(cell_seconds / latency, 3, repeats) timed calls, spread over ROUNDS interleaved rounds."""
    counts = {}
    for name, runner in runners.items():
        est = min(timed(lambda: runner.infer(feeds)) for _ in range(max(warmup, 1)))
        counts[name] = max(min(repeats, int(cell_seconds / max(est, 1e-6))), min(3, repeats))
    rounds = max(1, min(ROUNDS, *counts.values()))
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds):
        for name, runner in runners.items():
            time.sleep(PAUSE_S)
            times[name] += [timed(lambda: runner.infer(feeds)) for _ in range(round_share(counts[name], r, rounds))]
    return times


def stream_run(runner: Runner, labels: list[str], seconds: float) -> dict[str, Any]:
    """EmotionStream (2 s window, 1 s hop) over `seconds` of speech-like audio pushed in 0.1 s chunks, as fast as
    the engine allows: wall time vs audio time, and the stream's own share of it."""
    from ..runtime.stream import EmotionStream, StreamConfig

    audio = speech_like(seconds, np.random.default_rng(0))
    stream = EmotionStream(runner, labels, StreamConfig(window_seconds=2.0, hop_seconds=1.0))
    chunk = int(0.1 * SAMPLE_RATE)
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
