"""Audio sources for `sertrt stream`: a file read block by block, raw PCM on stdin, or a microphone (sounddevice).
Each yields chunks `(n, channels)` at the source's rate and sample type (the stream scales and downmixes them)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.audio import check_finite, open_audio
from ..core.bundle import load_bundle
from ..core.choices import PCM_FORMATS
from ..core.errors import SertrtError
from ..core.runner import Runner
from .runners import RunnerOptions, open_runner
from .stream import EmotionStream, StreamConfig

PCM_DTYPES = dict(zip(PCM_FORMATS, (np.dtype("<i2"), np.dtype("<f4"))))


def file_chunks(path: Path, block_seconds: float = 0.5) -> tuple[int, Iterator[np.ndarray]]:
    """(rate, chunks) of a file, after the checks `load_audio` makes (missing, unreadable or empty files are
    errors; a truncated WAV warns)."""
    f = open_audio(path)
    block = max(1, int(block_seconds * f.samplerate))

    def blocks() -> Iterator[np.ndarray]:
        with f:
            f.seek(0)
            while len(data := f.read(block, dtype="float32", always_2d=True)):
                yield data

    return f.samplerate, blocks()


def pcm_chunks(stream, fmt: str, channels: int, block_bytes: int = 32000) -> Iterator[np.ndarray]:
    if fmt not in PCM_DTYPES:
        raise SertrtError(f"unknown PCM format {fmt!r} (valid: {', '.join(PCM_FORMATS)})")
    dtype = PCM_DTYPES[fmt]
    frame = dtype.itemsize * channels
    pending = b""
    while data := stream.read(block_bytes):
        pending += data
        usable = len(pending) - len(pending) % frame
        if usable:
            yield np.frombuffer(pending[:usable], dtype=dtype).reshape(-1, channels)
            pending = pending[usable:]


def mic_chunks(rate: int, channels: int, block_seconds: float = 0.1) -> Iterator[np.ndarray]:
    try:
        import sounddevice as sd
    except ImportError:
        raise SertrtError("--mic needs sounddevice: pip install sounddevice") from None
    import queue

    q: queue.Queue[np.ndarray] = queue.Queue()
    with sd.InputStream(samplerate=rate, channels=channels, dtype="float32", blocksize=int(rate * block_seconds),
                        callback=lambda data, frames, t, status: q.put(data.copy())):
        while True:
            yield q.get()


@dataclass
class StreamOptions:
    bundle: Path
    source: str  # a file path, or "-" for raw PCM on stdin
    rate: int | None = None  # stdin/mic: the PCM's rate
    format: str = "s16le"
    channels: int = 1
    mic: bool = False
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    window_seconds: float | None = None  # default: the bundle's
    hop_seconds: float | None = None
    smoothing: str = "none"
    silence_dbfs: float | None = -50.0
    vad: str | None = None
    min_speech: float = 0.3
    # Another model behind the bundle's contract (`--backend torch`): the bundle gives labels, window and hop, this
    # runner the logits. None: the bundle's engine.
    runner_factory: Callable[[], Runner] | None = None


def run_stream(opts: StreamOptions, write: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Stream a source through a bundle; `write` gets each window's dict, then the summary."""
    write = write or (lambda d: print(json.dumps(d), flush=True))
    if opts.channels < 1:
        raise SertrtError(f"--channels {opts.channels}: must be >= 1")
    if opts.runner_factory is None:
        runner, card = open_runner(opts.bundle, opts.runner)
    else:  # the bundle gives its card only (checked as open_runner checks it)
        card, runner = load_bundle(opts.bundle, trust=opts.runner.trust), opts.runner_factory()
    if opts.mic or opts.source == "-":
        if opts.rate is None:
            raise SertrtError("raw PCM input needs --rate (its sample rate)")
        if opts.rate < 1:
            raise SertrtError(f"--rate {opts.rate}: must be a positive sample rate in Hz")
        rate = opts.rate
        chunks = mic_chunks(rate, opts.channels) if opts.mic else pcm_chunks(sys.stdin.buffer, opts.format, opts.channels)
    else:
        rate, chunks = file_chunks(Path(opts.source))  # a missing file is refused there, as by load_audio
    where = "microphone" if opts.mic else "stdin" if opts.source == "-" else opts.source
    config = StreamConfig(
        window_seconds=card.window_seconds if opts.window_seconds is None else opts.window_seconds,
        hop_seconds=card.hop_seconds if opts.hop_seconds is None else opts.hop_seconds,
        input_rate=rate, smoothing=opts.smoothing, silence_dbfs=opts.silence_dbfs, vad=opts.vad, min_speech=opts.min_speech,
    )
    with runner:
        stream, done = EmotionStream(runner, card.labels, config), 0
        try:
            for chunk in chunks:
                check_finite(chunk, where, rate, done)  # naming the source and the time in it
                done += len(chunk)
                for result in stream.push(chunk, channels_first=False):
                    write(result.as_dict())
        except KeyboardInterrupt:
            pass
        for result in stream.flush():
            write(result.as_dict())
    summary = stream.summary()
    write(summary)
    return summary
