"""Several audio streams through one runner: every window that is ready goes into one batched call.

    streams = MultiStream(runner, labels, StreamConfig(hop_seconds=0.5), max_batch=8, stream_ids=["left", "door"])
    for chunks in microphones():                          # {"left": (n,), "door": (m,), ...} per tick
        for mic, results in streams.push(chunks).items():   # ready windows of all mics, <= 8 per engine call
            for r in results: print(mic, r.label, r.start, r.end)
    streams.flush_all(); print({mic: streams.summary(mic) for mic in streams.stream_ids})

Each stream is an `EmotionStream` state (all share window, hop and labels) and gives what it would give alone:
windows are cut into rows of a preallocated `(max_batch, window)` buffer, padded rows carry their `lengths`, which
the model masks. The runner is called when the buffer is full (a window must leave its ring before later audio
overwrites it) and once at the end of each `push`. latency_ms is the batched call's time divided by its rows.
Every public method holds one lock, so a server's threads may push their own streams at once.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..core.audio import RECEPTIVE_FIELD
from ..core.errors import SertrtError
from ..core.runner import Runner
from .stream import EmotionStream, StreamConfig, WindowResult


def _locked(method):
    """Run the method holding the MultiStream's lock: the shared rows and pending windows belong to one call."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


class MultiStream:
    def __init__(self, runner: Runner, labels: list[str] | tuple[str, ...], config: StreamConfig | None = None,
                 max_batch: int = 8, stream_ids: Iterable[Hashable] = ()):
        """config is the default for `add` and fixes the window and hop of every stream."""
        if not isinstance(max_batch, int) or max_batch < 1:
            raise SertrtError(f"max_batch must be an integer >= 1, got {max_batch}")
        self.runner, self.labels, self.max_batch = runner, list(labels), max_batch
        self.config = config or StreamConfig()
        self.config.check()
        self._lock = threading.RLock()
        self._streams: dict[Hashable, EmotionStream] = {}
        self.window = self.config.window_samples
        self._waveform = np.zeros((self.max_batch, self.window), dtype=np.float32)
        self._lengths = np.zeros(self.max_batch, dtype=np.int64)
        self._rows = 0  # rows of the buffer filled with voiced windows awaiting the engine
        # Windows taken but not finished, in the order taken: (results, stream, start, n, dbfs, silent, row, overhead_ms).
        self._pending: list[tuple[list[WindowResult], EmotionStream, int, int, float, bool, int, float]] = []
        for stream_id in stream_ids:
            self.add(stream_id)

    # -- streams -------------------------------------------------------------------------------
    @property
    def stream_ids(self) -> list[Hashable]:
        return list(self._streams)

    def __contains__(self, stream_id: Hashable) -> bool:
        return stream_id in self._streams

    @_locked
    def add(self, stream_id: Hashable, config: StreamConfig | None = None) -> None:
        """A new stream, starting at time 0; config may differ from the default except in window and hop."""
        if stream_id in self._streams:
            raise SertrtError(f"stream {stream_id!r} already exists (streams: {self._names()})")
        config = dataclasses.replace(config or self.config)
        if (config.window_seconds, config.hop_seconds) != (self.config.window_seconds, self.config.hop_seconds):
            raise SertrtError(f"stream {stream_id!r}: window/hop {config.window_seconds}/{config.hop_seconds} s differ from "
                              f"the batch's {self.config.window_seconds}/{self.config.hop_seconds} s (valid: the same)")
        self._streams[stream_id] = EmotionStream(None, self.labels, config)  # never calls a runner itself

    @_locked
    def remove(self, stream_id: Hashable) -> dict[str, Any]:
        """Drop a stream (without flushing it); returns its summary."""
        self._get(stream_id)  # an unknown id: one line naming the streams
        return self._streams.pop(stream_id).summary()

    @_locked
    def reset(self, stream_id: Hashable | None = None) -> None:
        """Back to time 0: one stream, or all of them."""
        for stream in self._streams.values() if stream_id is None else [self._get(stream_id)]:
            stream.reset()

    @_locked
    def summary(self, stream_id: Hashable) -> dict[str, Any]:
        """The stream's utterance-level aggregate (EmotionStream.summary)."""
        return self._get(stream_id).summary()

    def _get(self, stream_id: Hashable) -> EmotionStream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise SertrtError(f"unknown stream {stream_id!r} (streams: {self._names()})") from None

    def _names(self) -> str:
        return ", ".join(repr(s) for s in self._streams) or "none"

    # -- audio in, results out -------------------------------------------------------------------
    @_locked
    def push(self, chunks: Mapping[Hashable, np.ndarray], channels_first: bool | None = None
             ) -> dict[Hashable, list[WindowResult]]:
        """Add a chunk (what EmotionStream.push takes, at the stream's input rate) to each named stream; {stream id:
        windows that became complete} for each of them. If any chunk or id is refused, no stream changes."""
        checked = [(sid, stream := self._get(sid), stream._check(chunk, channels_first))
                   for sid, chunk in chunks.items()]
        return self._collect((sid, stream, stream._spans(stream._accept(x))) for sid, stream, x in checked)

    @_locked
    def flush(self, stream_id: Hashable) -> list[WindowResult]:
        """End of one stream: its resampler's tail and final (possibly short) window."""
        stream = self._get(stream_id)
        return self._collect([(stream_id, stream, stream._flush_spans())])[stream_id]

    @_locked
    def flush_all(self) -> dict[Hashable, list[WindowResult]]:
        """End of every stream, their last windows batched together."""
        return self._collect((sid, stream, stream._flush_spans()) for sid, stream in self._streams.items())

    def _collect(self, spans: Iterable[tuple[Hashable, EmotionStream, Iterator[tuple[int, int]]]]
                 ) -> dict[Hashable, list[WindowResult]]:
        """Cut each window into the next free row as it becomes full; run the engine when the rows run out,
        and once at the end. {stream id: its finished windows}."""
        results: dict[Hashable, list[WindowResult]] = {}
        for sid, stream, windows in spans:
            out = results[sid] = []
            for start, n in windows:
                t0 = time.perf_counter()
                row = self._rows
                dbfs, silent = stream._take(self._waveform[row], n)
                if not silent:
                    self._lengths[row] = max(n, RECEPTIVE_FIELD)
                    self._rows += 1
                self._pending.append((out, stream, start, n, dbfs, silent, row, (time.perf_counter() - t0) * 1000.0))
                if self._rows == self.max_batch:
                    self._run()
        self._run()
        return results

    def _run(self) -> None:
        """One engine call for the filled rows, then finish every pending window in the order taken."""
        rows, logits, latency = self._rows, None, 0.0
        try:
            if rows:
                lengths = self._lengths[:rows]
                # A view: contiguous (no copy) whenever some row is a full window, the usual case.
                feeds = {"waveform": self._waveform[:rows, : int(lengths.max())], "lengths": lengths}
                t0 = time.perf_counter()
                logits = self.runner.infer(feeds)["logits"]
                latency = (time.perf_counter() - t0) * 1000.0 / rows
            for out, stream, start, n, dbfs, silent, row, overhead in self._pending:
                out.append(stream._finish(start, n, dbfs, silent, None if silent else logits[row],
                                          0.0 if silent else latency, overhead))
        finally:  # a failed engine call loses its windows, never hands them to the next call
            self._pending.clear()
            self._rows = 0
