"""Streaming emotion recognition over a preallocated ring buffer (numpy only; any runner).

    stream = EmotionStream(runner, labels, StreamConfig(window_seconds=2.0, hop_seconds=0.5))
    for chunk in microphone():               # any size: 10 ms callbacks to whole files
        for result in stream.push(chunk):    # one WindowResult per hop once a window is full
            print(result.label, result.start, result.end)
    stream.flush(); print(stream.summary())  # the tail, then the utterance-level aggregate

A chunk is read as `core.audio.as_mono` reads it and resampled; a refused chunk leaves the state unchanged.
Windows quieter than `silence_dbfs`, or (with `vad`) with less than `min_speech` of their frames speech, skip
inference. State is fixed-size: memory stays flat over hours.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.audio import RECEPTIVE_FIELD, SAMPLE_RATE, as_mono, seconds_to_samples
from ..core.choices import SMOOTHINGS
from ..core.errors import SertrtError
from ..core.metrics import softmax
from ..core.runner import Runner
from .vad import make_vad

MAX_WINDOW_SECONDS = 3600.0  # one hour of 16 kHz float32 is 230 MB per buffer: beyond that is a typo


@dataclass
class StreamConfig:
    window_seconds: float = 2.0
    hop_seconds: float = 0.5
    input_rate: int = SAMPLE_RATE
    smoothing: str = "none"
    ema_alpha: float = 0.5  # weight of the newest window
    majority_k: int = 5
    silence_dbfs: float | None = -50.0  # None: never gate on level
    vad: str | None = None  # a voice-activity detector (sertrt.runtime.vad.make_vad): "webrtc", "silero", ...
    min_speech: float = 0.3  # with `vad`: a window is scored only when this share of its frames is speech

    @property
    def window_samples(self) -> int:
        """The window in 16 kHz samples (the one rounding streams and parity share)."""
        return seconds_to_samples(self.window_seconds)

    @property
    def hop_samples(self) -> int:
        return seconds_to_samples(self.hop_seconds)

    def check(self) -> None:
        if self.smoothing not in SMOOTHINGS:
            raise SertrtError(f"unknown smoothing {self.smoothing!r} (valid: {', '.join(SMOOTHINGS)})")
        if not 0 < self.window_seconds <= MAX_WINDOW_SECONDS:  # also refuses NaN
            raise SertrtError(f"window ({self.window_seconds} s) must be > 0 and <= {MAX_WINDOW_SECONDS:g} s")
        if not 0 < self.hop_seconds <= self.window_seconds:
            raise SertrtError(f"hop ({self.hop_seconds} s) must be > 0 and <= window ({self.window_seconds} s)")
        if self.hop_samples < 1:  # a hop of 0 samples never advances: the stream would spin forever
            raise SertrtError(f"hop ({self.hop_seconds} s) is less than one sample at {SAMPLE_RATE} Hz "
                              f"(valid: >= {1 / SAMPLE_RATE:g} s)")
        if self.window_samples < RECEPTIVE_FIELD:
            raise SertrtError(f"window must be at least {RECEPTIVE_FIELD / SAMPLE_RATE:g} s")
        if self.input_rate <= 0:
            raise SertrtError(f"input rate must be positive, got {self.input_rate}")
        if self.silence_dbfs is not None and not -200 <= self.silence_dbfs <= 0:  # NaN too
            raise SertrtError(f"silence threshold {self.silence_dbfs} dBFS: must be in [-200, 0] (or none to never gate)")
        if not 0 <= self.min_speech <= 1:
            raise SertrtError(f"--min-speech {self.min_speech}: must be in [0, 1]")
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
    """(start, end) of the windows a stream emits for `num_samples`: full windows every `hop`, then, if samples
    remain, a final window ending at the last sample (shorter than `window` only for short input)."""
    if num_samples <= 0:
        return []
    if num_samples <= window:
        return [(0, num_samples)]
    spans = [(end - window, end) for end in range(window, num_samples + 1, hop)]
    if spans[-1][1] < num_samples:
        spans.append((num_samples - window, num_samples))
    return spans


def long_audio_windows(lengths: list[int], max_samples: int) -> list[tuple[int, int, int]]:
    """(row, start, end) of the pieces that score rows of `lengths` samples: a row within `max_samples` (0: no limit)
    whole, a longer one in windows of `max_samples`, hop half a window, the last ending at the row's end."""
    return [(row, a, b) for row, n in enumerate(lengths)
            for a, b in window_starts(n, max_samples or n, max(max_samples // 2, 1))]


def pool_windows(logits: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """`(count, num_labels)` float64 from the pieces' `(num_pieces, num_labels)` logits, piece i from row `rows[i]`:
    a row's own logits where it is one piece, else the log of its pieces' mean probability (probabilities are
    averaged, not logits, so one confident window cannot outvote the rest by its scale)."""
    out = np.empty((count, *logits.shape[1:]))
    for row in range(count):
        mine = logits[rows == row].astype(np.float64)
        out[row] = mine[0] if len(mine) == 1 else np.log(softmax(mine).mean(axis=0))
    return out


class EmotionStream:
    def __init__(self, runner: Runner | None, labels: list[str] | tuple[str, ...], config: StreamConfig | None = None):
        self.runner, self.labels = runner, list(labels)
        self.config = config or StreamConfig()
        self.config.check()
        self.window, self.hop = self.config.window_samples, self.config.hop_samples
        self._ring = np.zeros(self.window, dtype=np.float32)
        self._feed = {"waveform": np.zeros((1, self.window), dtype=np.float32), "lengths": np.zeros(1, dtype=np.int64)}
        self._vad = make_vad(self.config.vad) if self.config.vad else None
        self._resampler = None
        if self.config.input_rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(self.config.input_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        self.reset()

    def reset(self) -> None:
        self._ring[:] = 0
        self._total = 0  # samples written since the start, at the model rate
        self._received = 0  # samples pushed since the start, at the input rate
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

    def _check(self, chunk: np.ndarray, channels_first: bool | None = None) -> np.ndarray:
        """Any accepted chunk -> float32 mono `(n,)`; touches no state, so a rejected chunk changes nothing."""
        try:
            return as_mono(chunk, "audio chunk", channels_first, self.config.input_rate, self._received)
        except SertrtError as e:
            raise SertrtError(f"{e}; chunk rejected, stream unchanged") from None

    def _accept(self, x: np.ndarray) -> np.ndarray:
        """A checked chunk `(n,)` at the input rate -> the model rate, counted as received."""
        self._received += len(x)
        return x if self._resampler is None else self._resampler.resample_chunk(x)

    def push(self, chunk: np.ndarray, channels_first: bool | None = None) -> list[WindowResult]:
        """Add audio (`as_mono`'s shapes and dtypes at the input rate); returns the windows that became complete
        (possibly none). channels_first says how a 2-D chunk lies when its shape does not (core.audio.as_mono)."""
        return [self._emit(start, n) for start, n in self._spans(self._accept(self._check(chunk, channels_first)))]

    def flush(self) -> list[WindowResult]:
        """End of stream: drain the resampler and emit the final (possibly short) window."""
        return [self._emit(start, n) for start, n in self._flush_spans()]

    def _spans(self, x: np.ndarray) -> Iterator[tuple[int, int]]:
        """Write x (model rate) into the ring; yields (start, n) of each window as it becomes full, which the
        caller takes (`_take`) before resuming: the ring moves on after the yield."""
        pos = 0
        while pos < len(x):
            take = min(len(x) - pos, self._next_end - self._total)
            self._write(x[pos : pos + take])
            pos += take
            if self._total == self._next_end:
                yield self._total - self.window, self.window
                self._next_end += self.hop

    def _flush_spans(self) -> Iterator[tuple[int, int]]:
        """The windows the end of the stream completes: the resampler's tail, then the last (short) window."""
        if self._resampler is not None:
            yield from self._spans(self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        if self._total > self._last_end:
            n = min(self._total, self.window)
            yield self._total - n, n

    def _write(self, x: np.ndarray) -> None:
        start = self._total % self.window
        first = min(len(x), self.window - start)
        self._ring[start : start + first] = x[:first]
        self._ring[: len(x) - first] = x[first:]
        self._total += len(x)

    def _emit(self, start: int, n: int) -> WindowResult:
        t0 = time.perf_counter()
        wave, lengths = self._feed["waveform"], self._feed["lengths"]
        dbfs, silent = self._take(wave[0], n)
        logits, latency = None, 0.0
        if not silent:
            lengths[0] = max(n, RECEPTIVE_FIELD)
            feeds = self._feed if n == self.window else {"waveform": wave[:, : lengths[0]], "lengths": lengths}
            t1 = time.perf_counter()
            logits = self.runner.infer(feeds)["logits"][0]
            latency = (time.perf_counter() - t1) * 1000.0
        return self._finish(start, n, dbfs, silent, logits, latency, (time.perf_counter() - t0) * 1000.0 - latency)

    def _take(self, row: np.ndarray, n: int) -> tuple[float, bool]:
        """Copy the window's last n samples, unwrapped from the ring, into row[:n] (`(window,)`, zeros after) and
        gate it: (rms dBFS, silent)."""
        first = (self._total - n) % self.window
        head = min(n, self.window - first)
        row[:head] = self._ring[first : first + head]
        row[head:n] = self._ring[: n - head]
        row[n:] = 0.0
        samples = row[:n]
        rms = float(np.sqrt(np.dot(samples, samples) / max(n, 1) + 1e-20))  # float32 dot: ~7x cheaper than float64
        dbfs = float(20.0 * np.log10(rms))
        self._last_end = self._total
        silent = self.config.silence_dbfs is not None and dbfs < self.config.silence_dbfs
        if not silent and self._vad is not None:  # loud enough: is enough of it speech?
            silent = self._vad.speech_share(samples) < self.config.min_speech
        return dbfs, bool(silent)

    def _finish(self, start: int, n: int, dbfs: float, silent: bool, logits: np.ndarray | None,
                latency_ms: float, overhead_ms: float) -> WindowResult:
        """A taken window's result from its `(num_labels,)` logits (None when silent); windows must be finished in
        the order taken (smoothing state). overhead_ms: the caller's time on it outside the engine so far."""
        t0 = time.perf_counter()
        probs = raw = None
        if silent:
            self._silent += 1
        else:
            probs = softmax(logits.astype(np.float64))
            raw = int(probs.argmax())
            self._voiced += 1
            self._prob_sum += probs
            self._recent.append(raw)
            self._ema = probs if self._ema is None else self.config.ema_alpha * probs + (1 - self.config.ema_alpha) * self._ema
        result = WindowResult(
            index=self._index, start=start / SAMPLE_RATE, end=(start + n) / SAMPLE_RATE, silent=silent,
            probabilities=None if probs is None else [float(p) for p in probs], label=self._smoothed(),
            raw_label=None if raw is None else self.labels[raw], rms_dbfs=dbfs, latency_ms=latency_ms,
        )
        self._index += 1
        result.overhead_ms = overhead_ms + (time.perf_counter() - t0) * 1000.0
        self._latency_sum += latency_ms
        self._overhead_sum += result.overhead_ms
        return result

    def _smoothed(self) -> str | None:
        """The label after smoothing; None until a window is voiced (which also sets `_ema`)."""
        if not self._recent:
            return None
        if self.config.smoothing == "ema":
            return self.labels[int(self._ema.argmax())]
        if self.config.smoothing == "majority":
            return self.labels[int(np.bincount(self._recent, minlength=len(self.labels)).argmax())]
        return self.labels[self._recent[-1]]

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
