"""SERModel -> ONNX (FP32) with named dynamic axes from the spec.

The TorchScript exporter (`dynamo=False`) is used on purpose: with torch 2.13 the dynamo exporter
fails on our GRU head once the frame axis is derived from num_samples (the GRU decomposition
specialises num_samples to the traced value: "Specializations unexpectedly required"), while the
head alone exports fine. The TorchScript exporter emits one ONNX `GRU` per direction with the
right `linear_before_reset`, and the post-export validation checks it numerically every time.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..model.ser import SERModel
from .spec import DYNAMIC_AXES, INPUTS, OUTPUTS, ExportSpec


def example_inputs(spec: ExportSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The traced example: two rows of one streaming window, the second partly padded."""
    n = int(spec.window_seconds * spec.sample_rate)
    g = torch.Generator().manual_seed(0)
    waveform = 0.1 * torch.randn(2, n, generator=g)
    lengths = torch.tensor([n, (3 * n) // 4], dtype=torch.int64)
    waveform[1, lengths[1]:] = 0
    return waveform, lengths


def export_onnx(model: SERModel, path: Path, spec: ExportSpec) -> Path:
    import onnx

    model = model.eval().cpu()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer warnings
        torch.onnx.export(
            model, example_inputs(spec), str(path),
            input_names=[t.name for t in INPUTS], output_names=[t.name for t in OUTPUTS],
            dynamic_axes=DYNAMIC_AXES, opset_version=spec.opset, dynamo=False, do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return path
