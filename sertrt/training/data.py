"""Manifest -> 16 kHz audio -> padded batches, decoded where they are used (DataLoader workers in training).

Only the headers are read up front (lengths for batching; a bad file stops the run before the first step). Batches
group utterances of similar length; each epoch's order comes from (seed, epoch) alone, so a resumed run sees the
same batches. `batches` cuts fixed-size batches (one step each); `budget_batches` cuts micro-batches of at most a
budget of padded samples, which `group_steps` accumulates into optimizer steps; `train_loader` feeds them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from ..core.audio import SAMPLE_RATE, load_audio, open_audio, pad_batch
from ..core.labels import label_index
from ..core.manifest import Utterance
from .augment import augment as augment_clip

POOL_BATCHES = 64  # a sort pool holds about this many micro-batches' worth of audio


def bucket_by_length(lengths: np.ndarray, order: np.ndarray, budget_samples: int,
                     rng: np.random.Generator) -> list[list[int]]:
    """Micro-batches of `order` (indices into `lengths`, the epoch's random order), shuffled with `rng`, each within
    rows x longest row <= `budget_samples` (a longer utterance gets one of its own). `order` is cut into pools of
    about POOL_BATCHES x `budget_samples` samples, each sorted by length and filled greedily: little padding, and
    which utterances meet changes with each epoch's pools."""
    pool_samples = POOL_BATCHES * budget_samples
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
        steps.append(step + [micro_batches[k % len(micro_batches)] for k in range(-len(step) % world_size)])
    return steps


def _header_length(path: str) -> int:
    """Samples of the file once load_audio resamples it to SAMPLE_RATE (soxr rounds half up)."""
    with open_audio(path) as f:
        return (2 * f.frames * SAMPLE_RATE + f.samplerate) // (2 * f.samplerate)


class _Decoded(Sequence[np.ndarray]):
    """utterances[i]'s audio, decoded when asked for (`(num_samples,)` float32 at SAMPLE_RATE)."""

    def __init__(self, utterances: Sequence[Utterance]):
        self.paths = [u.path for u in utterances]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        return load_audio(self.paths[i], SAMPLE_RATE)


class AudioSet:
    def __init__(self, utterances: Sequence[Utterance], progress: Callable[[int], None] | None = None):
        self.utterances = list(utterances)
        self.labels = np.array([label_index(u.label, u.path) for u in self.utterances], dtype=np.int64)
        self.audio: Sequence[np.ndarray] = _Decoded(self.utterances)
        self.lengths = np.zeros(len(self.utterances), dtype=np.int64)
        for i, utt in enumerate(self.utterances):
            self.lengths[i] = _header_length(utt.path)
            if progress is not None:
                progress(1)

    def __len__(self) -> int:
        return len(self.audio)

    def _draw(self, seed: int, epoch: int, balanced: bool) -> tuple[np.random.Generator, np.ndarray]:
        """The epoch's generator, from (seed, epoch) alone, and its utterances in random order: a permutation, or
        (`balanced`) as many drawn with replacement, each label equally likely (class-balanced sampling)."""
        rng = np.random.default_rng([seed, epoch])
        if balanced:
            weights = 1.0 / np.bincount(self.labels)[self.labels]
            return rng, rng.choice(len(self), size=len(self), replace=True, p=weights / weights.sum())
        return rng, rng.permutation(len(self))

    def batches(self, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0, balanced: bool = False) -> list[list[int]]:
        """Index lists of similar-length utterances; shuffled per (seed, epoch) when `shuffle`; `balanced`: `_draw`."""
        if not shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        rng, perm = self._draw(seed, epoch, balanced)
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
        """Micro-batches of at most `budget_samples` padded samples each, by the lengths training runs: cropped to
        `max_samples`, a batch tensor at least `min_samples` long (collate's). Order and draw as in `batches`."""
        rng, order = self._draw(seed, epoch, balanced)
        return bucket_by_length(np.clip(self.lengths, min_samples, max_samples), order, budget_samples, rng)

    def collate(
        self, indices: Sequence[int], max_samples: int | None = None, rng: np.random.Generator | None = None,
        min_samples: int = 0, augment: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`_collate` of the rows `clip` makes."""
        return _collate([(self.clip(i, max_samples, rng, augment), self.labels[i]) for i in indices], min_samples)

    def clip(self, i: int, max_samples: int | None = None, rng: np.random.Generator | None = None,
             augment: tuple[str, ...] = ()) -> np.ndarray:
        """Utterance `i` decoded, augmented (needs `rng`), then cropped to `max_samples` (randomly with `rng`, else centred)."""
        if augment and rng is None:
            raise ValueError("augmentation needs a generator")
        a = augment_clip(self.audio[i], augment, rng) if augment else self.audio[i]
        if max_samples is not None and len(a) > max_samples:
            extra = len(a) - max_samples
            start = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
            a = a[start : start + max_samples]
        return a


Key = tuple[int, int, int, int]  # utterance index, epoch, micro-batch number in this rank's epoch, row


class TrainClips(torch.utils.data.Dataset):
    """One training clip per key, decoded, augmented and cropped in a DataLoader worker with a generator from
    (seed, rank, epoch, micro-batch, row) alone: a seed reproduces a run on one machine with any --workers."""

    def __init__(self, data: AudioSet, max_samples: int, augment: tuple[str, ...], seed: int, rank: int):
        self.data, self.max_samples, self.augment, self.seed, self.rank = data, max_samples, augment, seed, rank

    def __getitem__(self, key: Key) -> tuple[np.ndarray, int]:
        i, epoch, batch, row = key
        rng = np.random.default_rng([self.seed, self.rank, epoch, batch, row])
        return self.data.clip(i, self.max_samples, rng, self.augment), int(self.data.labels[i])


class PlannedBatches(torch.utils.data.Sampler[list[Key]]):
    """Yields the micro-batches `plan` gave it for an epoch (planned by `batches` or `budget_batches` and
    `group_steps`), each row keyed for TrainClips."""

    def __init__(self) -> None:
        self.epoch, self.micro_batches = 0, list[list[int]]()

    def plan(self, epoch: int, micro_batches: Sequence[Sequence[int]]) -> None:
        self.epoch, self.micro_batches = epoch, [list(b) for b in micro_batches]

    def __len__(self) -> int:
        return len(self.micro_batches)

    def __iter__(self) -> Iterator[list[Key]]:
        for n, batch in enumerate(self.micro_batches):
            yield [(i, self.epoch, n, row) for row, i in enumerate(batch)]


def _collate(items: list[tuple[np.ndarray, int]], min_samples: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clip, label) rows -> waveform (B, num_samples) zero-padded to >= `min_samples`, lengths (B,), labels (B,)."""
    waveform, lengths = pad_batch([clip for clip, _ in items], min_samples)
    labels = np.array([label for _, label in items], dtype=np.int64)
    return torch.from_numpy(waveform), torch.from_numpy(lengths), torch.from_numpy(labels)


def default_workers() -> int:
    """DataLoader workers per process when --workers is not given: up to 4, leaving two cores for the training loop;
    none on 2 cores or fewer, where workers only compete with it (benchmarks/results/dataloader.md)."""
    return max(0, min(4, (os.cpu_count() or 1) - 2))


def train_loader(data: AudioSet, sampler: PlannedBatches, max_samples: int, min_samples: int, augment: tuple[str, ...],
                 seed: int, rank: int, workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """Batches (waveform (B, num_samples), lengths (B,), labels (B,)) of `sampler`'s plan, built by `workers`
    processes (0: in this one) that stay up across epochs; pinned for an asynchronous copy to a GPU.
    Spawned, not forked: a forked worker would inherit the run folder's lock and could outlive a SIGKILLed trainer,
    holding the lock a `--resume` needs. Its own generator: starting workers would otherwise draw from torch's global
    RNG, and a resumed run's dropout would part from an uninterrupted one's."""
    return torch.utils.data.DataLoader(
        TrainClips(data, max_samples, augment, seed, rank), batch_sampler=sampler, num_workers=workers,
        collate_fn=functools.partial(_collate, min_samples=min_samples), pin_memory=pin_memory,
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed),
        multiprocessing_context="spawn" if workers > 0 else None,
    )
