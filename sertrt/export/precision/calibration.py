"""INT8 calibration data: feeds read from a manifest, and the adapter onnxruntime's quantize_static takes.
Utterances are picked round-robin over labels, so that a few dozen still cover every class's activation ranges.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ...core.audio import SAMPLE_RATE, load_audio, pad_batch, seconds_to_samples
from ...core.errors import SertrtError
from ...core.manifest import Utterance, read_manifest


class _FeedReader:
    """An iterable of feeds as onnxruntime's CalibrationDataReader (get_next -> dict or None)."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]):
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def manifest_calibration(manifest: Path, num: int = 64, seconds: float = 2.0,
                         seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Up to `num` utterances, each centre-cropped or zero-padded to `seconds` (the streaming window):
    [{"waveform": (1, num_samples) float32, "lengths": (1,) int64}], lengths = valid samples."""
    n = seconds_to_samples(seconds)
    feeds = []
    for utterance in split_calibration(manifest, num, seed)[0]:
        audio = load_audio(utterance.path, SAMPLE_RATE)
        start = max(len(audio) - n, 0) // 2
        waveform, lengths = pad_batch([audio[start:start + n]], min_samples=n)
        feeds.append({"waveform": waveform, "lengths": lengths})
    return feeds


def split_calibration(
    manifest: Path, num: int = 64, seed: int = 0, min_utterances: int = 16, max_held_out: int | None = None
) -> tuple[list[Utterance], list[Utterance]]:
    """(calibration, held_out): the utterances manifest_calibration calibrates on, and the rest of the
    manifest (up to `max_held_out` of them, stratified over labels), on which an INT8 export is gated when
    no test manifest is given."""
    if num < min_utterances:
        raise SertrtError(f"calibration num={num} is below the minimum of {min_utterances} utterances")
    utterances = read_manifest(manifest, check_audio=False)  # load_audio names any bad file it meets
    if len(utterances) < min_utterances:
        raise SertrtError(
            f"{manifest}: {len(utterances)} utterance(s), INT8 calibration needs at least {min_utterances}"
        )
    chosen = _stratified_pick([u.label for u in utterances], num, seed)
    picked = set(chosen)
    rest = [u for i, u in enumerate(utterances) if i not in picked]
    if max_held_out is not None and len(rest) > max_held_out:
        rest = [rest[i] for i in sorted(_stratified_pick([u.label for u in rest], max_held_out, seed + 1))]
    return [utterances[i] for i in chosen], rest


def _stratified_pick(labels: list[str], num: int, seed: int) -> list[int]:
    """Up to `num` indices, one label at a time in turn, each label's order shuffled by `seed`."""
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(np.array(labels) == label)).tolist() for label in sorted(set(labels))]
    return [i for turn in itertools.zip_longest(*queues) for i in turn if i is not None][:num]
