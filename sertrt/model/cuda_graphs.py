"""CUDA graphs for the SER model: one graph per (batch, samples) bucket, inputs padded up to the bucket.

    graphed = BucketedGraphs(model, max_batch=8, bucket_seconds=0.5)   # on a CUDA device, eval mode
    logits = graphed(waveform, lengths)   # (B, N) float32, (B,) int64 on the device -> (B, labels), a new tensor

A bucket is the batch rounded up to a power of two (at most `max_batch`) and the samples up to a multiple of
`bucket_seconds`: zeros past each row's length, which the model masks, and silent rows whose logits are dropped.
A graph is captured the first time its bucket is seen; the model's forward must not sync with the host
(SERModel's eval forward does not). PyTorch's "CUDA Graphs" notes (torch.cuda.graph) describe the capture rules.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..core.audio import RECEPTIVE_FIELD, SAMPLE_RATE
from ..core.errors import SertrtError


class CapturedGraph:
    """`fn(waveform, lengths)` recorded once in a CUDA graph for fixed shapes; a call copies the inputs into the
    static buffers and replays. The output tensor is the graph's own, overwritten by the next replay."""

    def __init__(self, fn: Callable[..., torch.Tensor], waveform: torch.Tensor, lengths: torch.Tensor):
        self.inputs = (waveform.clone(), lengths.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
            for _ in range(3):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = fn(*self.inputs)

    def __call__(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.inputs[0].copy_(waveform)
        self.inputs[1].copy_(lengths)
        self.graph.replay()
        return self.output


def bucket(batch: int, samples: int, max_batch: int, bucket_samples: int) -> tuple[int, int]:
    """The (batch, samples) a call of this shape replays: batch up to a power of two (capped at max_batch, or the
    batch itself beyond it), samples up to a multiple of bucket_samples (and at least one frame)."""
    if batch < 1 or samples < 1:
        raise SertrtError(f"a batch needs rows and samples, got ({batch}, {samples})")
    rows = min(1 << (batch - 1).bit_length(), max(max_batch, batch))
    return rows, max(math.ceil(samples / bucket_samples) * bucket_samples, RECEPTIVE_FIELD)


def pad_to(waveform: torch.Tensor, lengths: torch.Tensor, rows: int, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero samples past the end of each row and silent rows of one frame, up to (rows, samples)."""
    batch, n = waveform.shape
    padded = waveform.new_zeros((rows, samples))
    padded[:batch, :n] = waveform
    filler = lengths.new_full((rows - batch,), RECEPTIVE_FIELD)
    return padded, torch.cat([lengths, filler])


class BucketedGraphs:
    def __init__(self, model: Callable[..., torch.Tensor], max_batch: int = 8, bucket_seconds: float = 0.5):
        if not torch.cuda.is_available():
            raise SertrtError("CUDA graphs need a CUDA device (torch.cuda.is_available() is False)")
        self.model, self.max_batch = model, max_batch
        self.bucket_samples = max(int(round(bucket_seconds * SAMPLE_RATE)), 1)
        self.graphs: dict[tuple[int, int], CapturedGraph] = {}

    def __call__(self, waveform: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, samples = waveform.shape
        rows, width = bucket(batch, samples, self.max_batch, self.bucket_samples)
        padded, padded_lengths = pad_to(waveform, lengths, rows, width)
        graph = self.graphs.get((rows, width))
        if graph is None:
            graph = self.graphs[(rows, width)] = CapturedGraph(self.model, padded, padded_lengths)
        return graph(padded, padded_lengths)[:batch].clone()
