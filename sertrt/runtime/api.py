"""The one-call API: a bundle as a function of audio.

    import sertrt
    rec = sertrt.load("bundle", device="cpu")    # cpu | cuda | tensorrt; the bundle's hashes checked first
    rec("speech.wav")                             # -> Prediction(label, probabilities, logits)
    rec(signal, 44100)                            # an array at its rate; rec([a, b, c], 16000): a batch
    for path, result in rec.files(paths):         # result: a Prediction, or the SertrtError for that file
        ...
    stream = rec.stream(smoothing="ema")          # an EmotionStream with the bundle's window and hop
    rec.close()                                   # or: with sertrt.load("bundle") as rec: ...

`device`: cpu and cuda run the ONNX in ONNX Runtime; tensorrt runs the bundle's TensorRT engine when it has one,
else the ONNX on ONNX Runtime's TensorRT provider. An utterance is a path or an array (`core.audio.as_mono`'s
shapes and dtypes, resampled), scored whole and padded with its length given, so a batch gives what each
utterance alone gives. Audio longer than the profile's `max_samples` is scored in windows of that length (hop half
a window) and gets the log of its windows' mean probability as logits (`stream.pool_windows`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.audio import as_mono, load_audio, resample, run_batched
from ..core.bundle import ENGINE_FILE, BundleCard
from ..core.choices import DEVICES
from ..core.errors import SertrtError
from ..core.metrics import softmax
from ..core.runner import Runner
from .runners import RunnerOptions, open_runner
from .stream import EmotionStream, StreamConfig, long_audio_windows, pool_windows


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]  # label -> probability, in the bundle's label order
    logits: np.ndarray  # (num_labels,) float32

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": self.probabilities}


class Recognizer:
    """A bundle with its runner open; see the module docstring. Not thread-safe: one per thread."""

    def __init__(self, bundle: str | Path, options: RunnerOptions | None = None, batch_size: int = 8):
        if batch_size < 1:
            raise SertrtError(f"batch size {batch_size}: must be >= 1")
        runner, card = open_runner(bundle, options)
        self.card: BundleCard = card
        self.labels: tuple[str, ...] = card.labels
        self.sample_rate: int = card.sample_rate
        self.batch_size = batch_size
        self._min_samples = int(card.spec.get("min_samples", 0))
        self._max_samples = int(card.profile.get("max_samples", 0))  # 0: no limit recorded, every clip whole
        self._runner: Runner | None = runner
        runner.__enter__()

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise SertrtError("this recognizer is closed")
        return self._runner

    def close(self) -> None:
        if self._runner is not None:
            self._runner.__exit__(None, None, None)
            self._runner = None

    def __enter__(self) -> Recognizer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _prepare(self, signal: Any, rate: int | None, where: str, channels_first: bool | None) -> np.ndarray:
        if isinstance(signal, (str, Path)):
            if rate is not None:  # which rate would win is a guess: refuse it
                raise SertrtError(f"{signal}: a file has its own sample rate; give sample_rate with an array only")
            return load_audio(signal, self.sample_rate)
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
            raise SertrtError(f"sample rate must be a positive integer, got {rate!r}")
        x = as_mono(signal, where, channels_first, int(rate))  # what the stream accepts as a chunk, the same way
        if x.shape[0] == 0:
            raise SertrtError(f"{where}: empty audio")
        return resample(x, int(rate), self.sample_rate)

    def _score(self, clips: list[np.ndarray]) -> list[Prediction]:
        pieces = long_audio_windows([len(clip) for clip in clips], self._max_samples)
        logits = run_batched([b - a for _, a, b in pieces], lambda i: clips[pieces[i][0]][pieces[i][1]:pieces[i][2]],
                             lambda w, n: self.runner.infer({"waveform": w, "lengths": n})["logits"], self.batch_size,
                             self._min_samples)
        rows = pool_windows(logits, np.array([row for row, _, _ in pieces]), len(clips))
        return [Prediction(self.labels[int(np.argmax(row))], dict(zip(self.labels, softmax(row).tolist())),
                           row.astype(np.float32)) for row in rows]

    def __call__(self, audio: Any, sample_rate: int | None = None,
                 channels_first: bool | None = None) -> Prediction | list[Prediction]:
        """A path, or an array at `sample_rate` -> a Prediction; a list of them -> a list, in order. channels_first
        says how a 2-D array lies where its shape does not (core.audio.as_mono)."""
        if isinstance(audio, (list, tuple)):
            return self._score([self._prepare(a, sample_rate, f"utterance {i}", channels_first)
                                for i, a in enumerate(audio)]) if audio else []
        return self._score([self._prepare(audio, sample_rate, "audio", channels_first)])[0]

    def files(self, paths: Iterable[str | Path]) -> Iterator[tuple[str, Prediction | SertrtError]]:
        """(path, Prediction) per audio file (any soundfile format and rate), in order, scored `batch_size` files at a
        time; a file that cannot be read gives (path, the SertrtError naming it) and the others are still scored."""
        names = [str(p) for p in paths]
        for start in range(0, len(names), self.batch_size):
            results: dict[str, Prediction | SertrtError] = {}
            clips: dict[str, np.ndarray] = {}
            for p in names[start : start + self.batch_size]:
                try:
                    clips[p] = load_audio(p, self.sample_rate)
                except SertrtError as e:
                    results[p] = e
                except OSError as e:  # permission denied, a folder: the machine's answer, for this file only
                    results[p] = SertrtError(f"{p}: {e.strerror or e}")
            results.update(zip(clips, self._score(list(clips.values()))))
            yield from ((p, results[p]) for p in names[start : start + self.batch_size])

    def stream(self, **config: Any) -> EmotionStream:
        """An EmotionStream on this recognizer's runner; window and hop default to the bundle's."""
        config = {"window_seconds": self.card.window_seconds, "hop_seconds": self.card.hop_seconds, **config}
        return EmotionStream(self.runner, self.labels, StreamConfig(**config))


def load(bundle: str | Path, device: str = "cpu", *, threads: int | None = None, trust: str | Path | None = None,
         allow_local_engine: bool = False, batch_size: int = 8) -> Recognizer:
    """Open a bundle for inference on `device` (cpu, cuda or tensorrt: see the module docstring); its digest and
    hashes (and with `trust`, an ed25519 public key, its signature) are checked before any model file is read."""
    if device not in DEVICES:
        raise SertrtError(f"device {device!r}: unknown (valid: {', '.join(DEVICES)})")
    engine = device == "tensorrt" and (Path(bundle) / ENGINE_FILE).is_file()
    options = RunnerOptions(backend="trt" if engine else "ort", provider="cpu" if engine else device, threads=threads,
                            trust=Path(trust) if trust is not None else None, allow_local_engine=allow_local_engine)
    return Recognizer(bundle, options, batch_size)
