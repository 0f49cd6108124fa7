"""Manifest -> in-memory 16 kHz audio -> padded batches.

Audio is decoded and resampled once, up front, so a bad file stops the run before the first step
(naming the file), not hours into an epoch. Batches group utterances of similar length to keep
padding small; each epoch's order comes from (seed, epoch) alone, so a resumed run sees the same
batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..core.audio import SAMPLE_RATE, load_audio, pad_batch
from ..core.labels import label_index
from ..core.manifest import Utterance
from .augment import augment as augment_clip


class AudioSet:
    def __init__(self, utterances: Sequence[Utterance], progress: Callable[[int], None] | None = None):
        self.utterances = list(utterances)
        self.labels = np.array([label_index(u.label, u.path) for u in self.utterances], dtype=np.int64)
        self.audio: list[np.ndarray] = []
        for utt in self.utterances:
            self.audio.append(load_audio(utt.path, SAMPLE_RATE))
            if progress is not None:
                progress(1)
        self.lengths = np.array([len(a) for a in self.audio], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.audio)

    def batches(self, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0, balanced: bool = False) -> list[list[int]]:
        """Index lists of similar-length utterances; shuffled per (seed, epoch) when `shuffle`. `balanced`: an
        epoch of as many utterances drawn with replacement, each label equally likely (class-balanced sampling)."""
        if not shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        rng = np.random.default_rng([seed, epoch])
        if balanced:
            counts = np.bincount(self.labels)
            weights = 1.0 / counts[self.labels]
            perm = rng.choice(len(self), size=len(self), replace=True, p=weights / weights.sum())
        else:
            perm = rng.permutation(len(self))
        # Sort within chunks of 32 batches: similar lengths together, order still random.
        chunk = 32 * batch_size
        batches = []
        for start in range(0, len(perm), chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
        rng.shuffle(batches)
        return batches

    def collate(
        self, indices: Sequence[int], max_samples: int | None = None, rng: np.random.Generator | None = None,
        min_samples: int = 0, augment: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> waveform (B, num_samples) zero-padded, lengths (B,), labels (B,).

        `augment` (training only, needs `rng`) passes each whole utterance through sertrt.training.augment first.
        Utterances longer than `max_samples` are then cropped (randomly with `rng`, else centred).
        `min_samples` pads the batch tensor (not the lengths) to at least that many samples.
        """
        if augment and rng is None:
            raise ValueError("augmentation needs a generator")
        clips = []
        for i in indices:
            a = augment_clip(self.audio[i], augment, rng) if augment else self.audio[i]
            if max_samples is not None and len(a) > max_samples:
                extra = len(a) - max_samples
                start = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
                a = a[start : start + max_samples]
            clips.append(a)
        waveform, lengths = pad_batch(clips, min_samples)
        return torch.from_numpy(waveform), torch.from_numpy(lengths), torch.from_numpy(self.labels[list(indices)])
