"""Manifest -> in-memory 16 kHz audio -> padded batches.

Audio is decoded and resampled once, up front, so a bad file stops the run before the first step
(naming the file), not hours into an epoch. Batches group utterances of similar length to keep
padding small; each epoch's order comes from (seed, epoch) alone, so a resumed run sees the same
batches it would have seen.

Two ways to batch an epoch:
    batches(batch_size, ...)              fixed-size batches (one optimizer step each)
    budget_batches(budget_samples, ...)   micro-batches of at most `budget_samples` padded samples
                                          (rows x longest row), cut from length-sorted pools; then
    group_steps(micro_batches, ...)       consecutive micro-batches per optimizer step (gradient accumulation)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..core.audio import SAMPLE_RATE, load_audio, pad_batch
from ..core.labels import label_index
from ..core.manifest import Utterance
from .augment import augment as augment_clip

POOL_BATCHES = 64  # a sort pool holds about this many micro-batches' worth of audio


def bucket_by_length(lengths: np.ndarray, order: np.ndarray, budget_samples: int, rng: np.random.Generator,
                     pool_batches: int = POOL_BATCHES) -> list[list[int]]:
    """Micro-batches of `order` (indices into `lengths`, in the epoch's random order), each within
    rows x longest row <= `budget_samples`; an utterance longer than the budget gets one of its own.

    `order` is cut into pools of about `pool_batches` x `budget_samples` samples of audio; each pool is
    sorted by length and filled greedily, so a micro-batch holds near-equal lengths (little padding), and
    which utterances meet changes with each epoch's pools (a set smaller than one pool keeps its micro-batches,
    as fixed batches do within their chunks). The micro-batches are then shuffled with `rng`.
    """
    pool_samples = pool_batches * budget_samples
    pools, start, total = [], 0, 0
    for i, n in enumerate(lengths[order]):
        total += int(n)
        if total >= pool_samples:
            pools.append(order[start : i + 1])
            start, total = i + 1, 0
    if start < len(order):
        pools.append(order[start:])
    micro_batches: list[list[int]] = []
    for pool in pools:
        current: list[int] = []
        for i in pool[np.argsort(lengths[pool], kind="stable")].tolist():
            # ascending: the new utterance is the longest of the batch it joins
            if current and (len(current) + 1) * int(lengths[i]) > budget_samples:
                micro_batches.append(current)
                current = []
            current.append(i)
        if current:
            micro_batches.append(current)
    rng.shuffle(micro_batches)
    return micro_batches


def group_steps(micro_batches: Sequence[list[int]], batch_size: int, world_size: int = 1) -> list[list[list[int]]]:
    """Consecutive micro-batches per optimizer step: a step closes once it holds >= `batch_size` x
    `world_size` utterances in a multiple of `world_size` micro-batches, so each rank runs step[rank::world_size],
    the same number of micro-batches as every other rank (DDP stays in lockstep). The last step may hold fewer
    utterances; under DDP it is completed with micro-batches from the epoch's start (those utterances run twice)."""
    steps: list[list[list[int]]] = []
    step: list[list[int]] = []
    held = 0
    for batch in micro_batches:
        step.append(batch)
        held += len(batch)
        if held >= batch_size * world_size and len(step) % world_size == 0:
            steps.append(step)
            step, held = [], 0
    if step:
        k = 0
        while len(step) % world_size:
            step.append(micro_batches[k % len(micro_batches)])
            k += 1
        steps.append(step)
    return steps


def padding_share(lengths: np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """Padded samples / all samples of the padded (rows, longest row) batches: the share of work spent on padding."""
    valid = sum(int(lengths[b].sum()) for b in batches)
    total = sum(len(b) * int(lengths[b].max()) for b in batches)
    return 1.0 - valid / total if total else 0.0


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

    def _draw(self, rng: np.random.Generator, balanced: bool) -> np.ndarray:
        """The epoch's utterances in random order: a permutation, or (`balanced`) as many drawn with
        replacement, each label equally likely (class-balanced sampling)."""
        if balanced:
            counts = np.bincount(self.labels)
            weights = 1.0 / counts[self.labels]
            return rng.choice(len(self), size=len(self), replace=True, p=weights / weights.sum())
        return rng.permutation(len(self))

    def batches(self, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0, balanced: bool = False) -> list[list[int]]:
        """Index lists of similar-length utterances; shuffled per (seed, epoch) when `shuffle`. `balanced`: an
        epoch of as many utterances drawn with replacement, each label equally likely (class-balanced sampling)."""
        if not shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        rng = np.random.default_rng([seed, epoch])
        perm = self._draw(rng, balanced)
        # Sort within chunks of 32 batches: similar lengths together, order still random.
        chunk = 32 * batch_size
        batches = []
        for start in range(0, len(perm), chunk):
            part = perm[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
        rng.shuffle(batches)
        return batches

    def budget_batches(self, budget_samples: int, max_samples: int, seed: int = 0, epoch: int = 0,
                       balanced: bool = False, min_samples: int = 0) -> list[list[int]]:
        """Micro-batches of at most `budget_samples` padded samples each, by the lengths training really
        runs: cropped to `max_samples`, a batch tensor at least `min_samples` long (collate's). Order and
        draw come from (seed, epoch), as in `batches`."""
        rng = np.random.default_rng([seed, epoch])
        order = self._draw(rng, balanced)
        return bucket_by_length(np.clip(self.lengths, min_samples, max_samples), order, budget_samples, rng)

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
