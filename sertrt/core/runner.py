"""The runner contract: a backend is something you enter, feed named arrays and leave (Polygraphy's
`BaseRunner`). ONNX Runtime, TensorRT and the PyTorch reference all satisfy it, so streams, parity and
benchmarks never branch on the backend.

    with runner:
        logits = runner.infer({"waveform": wav, "lengths": lengths})["logits"]
        # wav (B, num_samples) float32, lengths (B,) int64 -> logits (B, num_labels) float32
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Runner(Protocol):
    input_names: list[str]  # known once entered
    output_names: list[str]

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: Any) -> None: ...

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
