"""The one-call API: a bundle as a function of audio (what audonnx users expect).

    from sertrt.runtime import load
    rec = load("bundle")                          # open_runner + the card, entered once
    rec(signal, 44100)                            # -> Prediction(label, probabilities, logits)
    rec([a, b, c], 16000)                         # a batch: a list of utterances of any lengths
    rec.files(["a.wav", "b.flac"])                # read, resampled, scored in batches
    stream = rec.stream(smoothing="ema")          # an EmotionStream with the bundle's window and hop
    rec.close()                                   # or: with load("bundle") as rec: ...

One utterance is a 1-D array `(num_samples,)` or `(num_samples, channels)` (downmixed, as the stream does),
float or int16, at any rate (resampled with soxr); a batch is a list of them. Each utterance is scored
whole, as `sertrt evaluate` does, padded with its length given to the model: a batch gives what each
utterance alone gives. Audio shorter than the model's shortest input is zero-padded to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.audio import as_mono, load_audio, pad_batch, resample
from ..core.bundle import BundleCard
from ..core.errors import SertrtError
from ..core.metrics import softmax
from ..core.runner import Runner
from .runners import RunnerOptions, open_runner
from .stream import EmotionStream, StreamConfig


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]  # label -> probability, in the bundle's label order
    logits: np.ndarray  # (num_labels,) float32
    path: str | None = None  # set by Recognizer.files

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": self.probabilities, **({"path": self.path} if self.path else {})}


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

    def _prepare(self, signal: Any, rate: int, where: str) -> np.ndarray:
        x = as_mono(signal, where)  # what the stream accepts as a chunk, the same way
        if x.shape[0] == 0:
            raise SertrtError(f"{where}: empty audio")
        return resample(x, rate, self.sample_rate)

    def _score(self, clips: list[np.ndarray], paths: Sequence[str | None]) -> list[Prediction]:
        order = np.argsort([len(c) for c in clips], kind="stable")  # similar lengths together: less padding
        out: list[Prediction | None] = [None] * len(clips)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            waveform, lengths = pad_batch([clips[i] for i in rows], self._min_samples)
            logits = self.runner.infer({"waveform": waveform, "lengths": lengths})["logits"]
            for i, row in zip(rows, logits):
                probs = softmax(row.astype(np.float64))
                out[i] = Prediction(self.labels[int(np.argmax(row))], dict(zip(self.labels, probs.tolist())),
                                    row.astype(np.float32), paths[i])
        return [p for p in out if p is not None]

    def __call__(self, signal: Any, sample_rate: int) -> Prediction | list[Prediction]:
        """One utterance -> a Prediction; a list of utterances -> a list, in order."""
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise SertrtError(f"sample rate must be a positive integer, got {sample_rate!r}")
        if isinstance(signal, (list, tuple)):
            if not signal:
                return []
            clips = [self._prepare(s, int(sample_rate), f"utterance {i}") for i, s in enumerate(signal)]
            return self._score(clips, [None] * len(clips))
        return self._score([self._prepare(signal, int(sample_rate), "audio")], [None])[0]

    def files(self, paths: Sequence[str | Path]) -> list[Prediction]:
        """Score audio files (any soundfile format and rate), in batches; a bad file is an error naming it."""
        clips = [load_audio(p, self.sample_rate) for p in paths]
        return self._score(clips, [str(p) for p in paths])

    def stream(self, **config: Any) -> EmotionStream:
        """An EmotionStream on this recognizer's runner; window and hop default to the bundle's."""
        config = {"window_seconds": self.card.window_seconds, "hop_seconds": self.card.hop_seconds, **config}
        return EmotionStream(self.runner, self.labels, StreamConfig(**config))


def load(bundle: str | Path, backend: str = "ort", *, provider: str = "cpu", threads: int | None = None,
         trust: str | Path | None = None, batch_size: int = 8) -> Recognizer:
    """Open a bundle for inference: its digest, hashes (and with `trust`, its signature) checked first."""
    options = RunnerOptions(backend=backend, provider=provider, threads=threads,
                            trust=Path(trust) if trust is not None else None)
    return Recognizer(bundle, options, batch_size)
