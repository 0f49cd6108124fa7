"""Timing primitives: interleaved latency sweeps, the matmul peak probe, streaming and logit
agreement. Everything takes runners (names in, names out); nothing prints.

On a shared machine the load drifts during a run, so variants are measured interleaved: in each
round every variant (and the matmul peak probe) gets its share of timings for the same input, and
ratios compare medians taken under the same conditions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..core.audio import SAMPLE_RATE
from ..core.runner import Runner
from ..export.validate import compare, speech_like
from ..verify.compare import run_batches

PEAK_N = 2048  # the matmul peak probe: (2048, 2048) @ (2048, 2048) float32
ROUNDS = 3  # interleaving rounds per cell
PAUSE_S = 0.05  # between blocks: lets spinning thread pools (ORT's, OpenMP's) go idle first
Progress = Callable[[str], None]


class MatmulProbe:
    """The peak: (PEAK_N, PEAK_N) fp32 matmul on `threads` threads, by torch (when present) and by
    ONNX Runtime's MLAS; `infer` runs the one given as `engine`. FLOPs = 2 N^3."""

    flops = 2.0 * PEAK_N**3

    input_names = ["a", "b"]  # fixed: `infer` ignores its feeds
    output_names = ["c"]

    def __init__(self, engine: str, threads: int):
        self.engine, self.threads = engine, threads
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32)
        self.b = rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32)

    def __enter__(self) -> MatmulProbe:
        if self.engine == "torch":
            import torch

            torch.set_num_threads(self.threads)
            self._ta, self._tb = torch.from_numpy(self.a), torch.from_numpy(self.b)
        else:
            import onnxruntime as ort
            from onnx import TensorProto, helper

            n = PEAK_N
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul_peak",
                [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
                [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ta = self._tb = self._session = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.engine == "torch":
            return {"c": (self._ta @ self._tb).numpy()}
        return {"c": self._session.run(None, {"a": self.a, "b": self.b})[0]}


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
    return {
        "n": len(t), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "min_ms": float(t.min()), "mean_ms": float(t.mean()),
        "audio_s_per_s": audio / (p50 / 1000.0), "utterances_per_s": batch / (p50 / 1000.0), "rtf": (p50 / 1000.0) / audio,
    }


def _timed(runner: Runner, feeds: dict[str, np.ndarray]) -> float:
    t0 = time.perf_counter()
    runner.infer(feeds)
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
        est = min(_timed(runner, feeds) for _ in range(max(warmup, 1)))
        most = min(repeats, (caps or {}).get(name, repeats))
        counts[name] = max(min(most, int(cell_seconds / max(est, 1e-6))), min(min_repeats, most))
    rounds = max(1, min(ROUNDS, *counts.values()))
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(rounds):
        for name, runner in runners.items():
            share = round_share(counts[name], r, rounds)
            time.sleep(PAUSE_S)
            times[name] += [_timed(runner, feeds) for _ in range(share)]
    return times


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def logit_agreement(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Logits (N, num_labels) against reference ones: cosine of all of them, the worst row's cosine, and
    the max abs error and top-1 agreement of export's validation (`export.validate.compare`)."""
    c = compare("logits", ref, got, atol=np.inf, rtol=0.0, min_agreement=0.0)
    return {"cosine": cosine(ref, got), "min_cosine": min(cosine(r, g) for r, g in zip(ref, got)),
            "max_abs": c.max_abs, "top1_agreement": c.agreement}


def agreement(reference: Runner, others: dict[str, Runner], num: int = 6, seed: int = 0) -> dict[str, Any]:
    """`logit_agreement` of each runner vs `reference` over `num` speech-like inputs of 1-4 s (batch 1)."""
    rng = np.random.default_rng(seed)
    clips = [speech_like(float(s), rng) for s in np.linspace(1.0, 4.0, num)]
    ref = run_batches(reference, clips, batch_size=1)
    return {name: {**logit_agreement(ref, run_batches(r, clips, batch_size=1)), "inputs": num} for name, r in others.items()}


@dataclass
class StreamRun:
    audio_seconds: float
    wall_seconds: float
    windows: int
    engine_ms: float  # sum of WindowResult.latency_ms
    overhead_ms: float  # sum of WindowResult.overhead_ms (the runtime's own work per window)

    def as_dict(self) -> dict[str, Any]:
        return {
            **vars(self), "rtf": self.wall_seconds / self.audio_seconds, "keeps_up": self.wall_seconds < self.audio_seconds,
            "overhead_share": self.overhead_ms / (1000.0 * self.wall_seconds),
            # everything but the engine call: push() bookkeeping, ring writes, this loop's slicing
            "non_engine_share": 1.0 - self.engine_ms / (1000.0 * self.wall_seconds),
            "mean_engine_ms": self.engine_ms / max(self.windows, 1),
        }


def stream_run(runner: Runner, labels: list[str], seconds: float = 60.0, window: float = 2.0, hop: float = 1.0,
               chunk_seconds: float = 0.1, seed: int = 0) -> StreamRun:
    """EmotionStream over `seconds` of speech-like audio pushed in microphone-sized chunks, as fast as
    the engine allows: wall time vs audio time, and the stream's own share of it."""
    from ..runtime.stream import EmotionStream, StreamConfig

    audio = speech_like(seconds, np.random.default_rng(seed))
    stream = EmotionStream(runner, labels, StreamConfig(window_seconds=window, hop_seconds=hop))
    chunk = int(chunk_seconds * SAMPLE_RATE)
    results = []
    t0 = time.perf_counter()
    for start in range(0, len(audio), chunk):
        results += stream.push(audio[start : start + chunk])
    results += stream.flush()
    wall = time.perf_counter() - t0
    return StreamRun(audio_seconds=seconds, wall_seconds=wall, windows=len(results),
                     engine_ms=sum(r.latency_ms for r in results), overhead_ms=sum(r.overhead_ms for r in results))


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
    ticks = range(0, len(audio[0]), chunk)

    def alone() -> int:
        each = [EmotionStream(runner, labels, config) for _ in range(streams)]
        n = 0
        for start in ticks:
            for s, a in zip(each, audio):
                n += len(s.push(a[start : start + chunk]))
        return n + sum(len(s.flush()) for s in each)

    def batched() -> int:
        multi = MultiStream(runner, labels, config, max_batch=streams, stream_ids=range(streams))
        n = 0
        for start in ticks:
            n += sum(len(r) for r in multi.push({i: a[start : start + chunk] for i, a in enumerate(audio)}).values())
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
    audio_s = streams * seconds
    return {"streams": streams, "seconds_per_stream": seconds, "windows": windows, "wall_s": wall, "runs": walls,
            "rtf": {k: v / audio_s for k, v in wall.items()}, "batched_speedup": wall["alone"] / wall["batched"]}
