"""Streaming emotion recognition over a preallocated ring buffer (numpy only; any runner).

    stream = EmotionStream(runner, labels, StreamConfig(window_seconds=2.0, hop_seconds=0.5))
    for chunk in microphone():               # any size: 10 ms callbacks to whole files
        for result in stream.push(chunk):    # one WindowResult per hop once a window is full
            print(result.label, result.start, result.end)
    stream.flush(); print(stream.summary())  # the tail, then the utterance-level aggregate

Input at another rate is resampled (soxr, streaming), stereo `(n, channels)` is downmixed, and a
chunk with NaN/Inf is rejected before it touches the stream's state. Windows quieter than
`silence_dbfs` skip inference and say so. State is fixed-size: memory stays flat over hours.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import RECEPTIVE_FIELD, SAMPLE_RATE
from ..errors import SertrtError

SMOOTHING = ("none", "ema", "majority")


@dataclass
class StreamConfig:
    window_seconds: float = 2.0
    hop_seconds: float = 0.5
    input_rate: int = SAMPLE_RATE
    smoothing: str = "none"
    ema_alpha: float = 0.5  # weight of the newest window
    majority_k: int = 5
    silence_dbfs: float | None = -50.0  # None: never gate

    def check(self) -> None:
        if self.smoothing not in SMOOTHING:
            raise SertrtError(f"unknown smoothing {self.smoothing!r} (valid: {', '.join(SMOOTHING)})")
        if not 0 < self.hop_seconds <= self.window_seconds:
            raise SertrtError(f"hop ({self.hop_seconds} s) must be > 0 and <= window ({self.window_seconds} s)")
        if self.window_seconds * SAMPLE_RATE < RECEPTIVE_FIELD:
            raise SertrtError(f"window must be at least {RECEPTIVE_FIELD / SAMPLE_RATE:g} s")
        if self.input_rate <= 0:
            raise SertrtError(f"input rate must be positive, got {self.input_rate}")
        if not 0 < self.ema_alpha <= 1 or self.majority_k < 1:
            raise SertrtError("ema_alpha must be in (0, 1] and majority_k >= 1")


@dataclass
class WindowResult:
    index: int
    start: float  # seconds from the start of the stream
    end: float
    silent: bool
    probabilities: list[float] | None  # None when silent
    label: str | None  # after smoothing; None while nothing voiced was seen
    raw_label: str | None  # this window alone
    rms_dbfs: float
    latency_ms: float  # the engine call alone
    overhead_ms: float = 0.0  # everything else push() spent on this window

    def as_dict(self) -> dict[str, Any]:
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}
        if self.probabilities is not None:
            d["probabilities"] = [round(p, 6) for p in self.probabilities]
        return d


def window_starts(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """(start, end) of the windows a stream emits for `num_samples`, flush included.

    Full windows every `hop` once `window` samples are in; then, if samples remain after the last
    one, a final window ending at the last sample (shorter than `window` only for short input).
    """
    if num_samples <= 0:
        return []
    if num_samples <= window:
        return [(0, num_samples)]
    spans = [(end - window, end) for end in range(window, num_samples + 1, hop)]
    if spans[-1][1] < num_samples:
        spans.append((num_samples - window, num_samples))
    return spans


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class EmotionStream:
    def __init__(self, runner, labels: list[str] | tuple[str, ...], config: StreamConfig | None = None):
        self.runner, self.labels = runner, list(labels)
        self.config = config or StreamConfig()
        self.config.check()
        self.window = int(round(self.config.window_seconds * SAMPLE_RATE))
        self.hop = int(round(self.config.hop_seconds * SAMPLE_RATE))
        self._ring = np.zeros(self.window, dtype=np.float32)
        self._feed = {"waveform": np.zeros((1, self.window), dtype=np.float32), "lengths": np.zeros(1, dtype=np.int64)}
        self._resampler = None
        if self.config.input_rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(self.config.input_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self.reset()

    def reset(self) -> None:
        self._ring[:] = 0
        self._total = 0  # samples written since the start, at the model rate
        self._next_end = self.window  # stream position where the next full window ends
        self._last_end = 0
        self._index = 0
        self._ema: np.ndarray | None = None
        self._recent: deque[int] = deque(maxlen=self.config.majority_k)
        self._prob_sum = np.zeros(len(self.labels), dtype=np.float64)
        self._voiced = self._silent = 0
        self._latency_sum = self._overhead_sum = 0.0
        if self._resampler is not None:
            self._resampler.clear()

    # -- input -------------------------------------------------------------------------------
    def _prepare(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        chunk = np.asarray(chunk)
        if chunk.ndim == 2:
            chunk = chunk.mean(axis=1)
        elif chunk.ndim != 1:
            raise SertrtError(f"audio chunk must be (n,) or (n, channels), got shape {chunk.shape}")
        if chunk.dtype == np.int16:
            chunk = chunk.astype(np.float32) / 32768.0
        chunk = chunk.astype(np.float32, copy=False)
        if not np.isfinite(chunk).all():
            raise SertrtError(f"audio chunk has {int((~np.isfinite(chunk)).sum())} NaN/Inf samples; chunk rejected, stream unchanged")
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk, last=last)
        return chunk

    def push(self, chunk: np.ndarray) -> list[WindowResult]:
        """Add audio; returns the windows that became complete (possibly none)."""
        return self._consume(self._prepare(chunk))

    def flush(self) -> list[WindowResult]:
        """End of stream: drain the resampler and emit the final (possibly short) window."""
        results = self._consume(self._prepare(np.zeros(0, dtype=np.float32), last=True)) if self._resampler else []
        if self._total > self._last_end:
            n = min(self._total, self.window)
            results.append(self._emit(self._total - n, n))
        return results

    def _consume(self, x: np.ndarray) -> list[WindowResult]:
        results = []
        pos = 0
        while pos < len(x):
            take = min(len(x) - pos, self._next_end - self._total)
            self._write(x[pos : pos + take])
            pos += take
            if self._total == self._next_end:
                results.append(self._emit(self._total - self.window, self.window))
                self._next_end += self.hop
        return results

    def _write(self, x: np.ndarray) -> None:
        assert len(x) <= self.window  # _consume never writes past the next window's end
        start = self._total % self.window
        first = min(len(x), self.window - start)
        self._ring[start : start + first] = x[:first]
        self._ring[: len(x) - first] = x[first:]
        self._total += len(x)

    # -- output ------------------------------------------------------------------------------
    def _emit(self, start: int, n: int) -> WindowResult:
        t0 = time.perf_counter()
        wave = self._feed["waveform"]
        # The last n samples in time order, unwrapped from the ring without allocating.
        first = (self._total - n) % self.window
        head = min(n, self.window - first)
        wave[0, :head] = self._ring[first : first + head]
        wave[0, head:n] = self._ring[: n - head]
        wave[0, n:] = 0.0
        self._feed["lengths"][0] = max(n, RECEPTIVE_FIELD)
        samples = wave[0, :n]
        rms = float(np.sqrt(np.dot(samples, samples) / max(n, 1) + 1e-20))  # float32 dot: ~7x cheaper than float64
        dbfs = float(20.0 * np.log10(rms))
        silent = bool(self.config.silence_dbfs is not None and dbfs < self.config.silence_dbfs)
        probs = raw = None
        latency = 0.0
        if silent:
            self._silent += 1
        else:
            if n == self.window:
                feeds = self._feed
            else:
                feeds = {"waveform": wave[:, : max(n, RECEPTIVE_FIELD)], "lengths": self._feed["lengths"]}
            t1 = time.perf_counter()
            logits = self.runner.infer(feeds)["logits"][0]
            latency = (time.perf_counter() - t1) * 1000.0
            probs = softmax(logits.astype(np.float64))
            raw = int(probs.argmax())
            self._voiced += 1
            self._prob_sum += probs
            self._recent.append(raw)
            self._ema = probs if self._ema is None else self.config.ema_alpha * probs + (1 - self.config.ema_alpha) * self._ema
        label = self._smoothed(raw)
        self._last_end = self._total
        result = WindowResult(
            index=self._index, start=start / SAMPLE_RATE, end=(start + n) / SAMPLE_RATE, silent=silent,
            probabilities=None if probs is None else [float(p) for p in probs], label=label,
            raw_label=None if raw is None else self.labels[raw], rms_dbfs=dbfs, latency_ms=latency,
        )
        self._index += 1
        result.overhead_ms = (time.perf_counter() - t0) * 1000.0 - latency
        self._latency_sum += latency
        self._overhead_sum += result.overhead_ms
        return result

    def _smoothed(self, raw: int | None) -> str | None:
        mode = self.config.smoothing
        if mode == "ema" and self._ema is not None:
            return self.labels[int(self._ema.argmax())]
        if mode == "majority" and self._recent:
            counts = np.bincount(np.array(self._recent), minlength=len(self.labels))
            return self.labels[int(counts.argmax())]
        if raw is not None:
            return self.labels[raw]
        return None if not self._recent else self.labels[self._recent[-1]]

    def summary(self) -> dict[str, Any]:
        """Utterance-level aggregate: mean probabilities over voiced windows."""
        probs = (self._prob_sum / self._voiced) if self._voiced else None
        windows = self._voiced + self._silent
        return {
            "summary": True, "duration": self._total / SAMPLE_RATE, "windows": windows, "voiced_windows": self._voiced,
            "silent_windows": self._silent, "label": None if probs is None else self.labels[int(probs.argmax())],
            "probabilities": None if probs is None else [round(float(p), 6) for p in probs],
            "mean_latency_ms": round(self._latency_sum / self._voiced, 3) if self._voiced else None,
            "mean_overhead_ms": round(self._overhead_sum / windows, 3) if windows else None,
        }
