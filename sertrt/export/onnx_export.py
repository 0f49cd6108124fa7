"""SERModel -> ONNX (FP32) with named dynamic axes from the spec, then simplified for TensorRT.

    export_onnx(model, path, spec)   torch.onnx.export, attention as a plain masked softmax
    simplify_onnx(path)              onnxslim: constants folded, shape arithmetic simplified, in place
    stamp_metadata(path, props)      the card's contract into metadata_props, in place

The TorchScript exporter (`dynamo=False`) is used on purpose: with torch 2.13 the dynamo exporter
fails on our GRU head once the frame axis is derived from num_samples (the GRU decomposition
specialises num_samples to the traced value: "Specializations unexpectedly required"), while the
head alone exports fine. The TorchScript exporter emits one ONNX `GRU` per direction with the
right `linear_before_reset`, and the post-export validation checks it numerically every time.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import torch

from ..core.atomic import atomic_path
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
    with contextlib.ExitStack() as stack, torch.no_grad():
        if hasattr(model.upstream, "attention_implementation"):  # wav2vec2: a plain masked softmax, no IsNaN/Where
            stack.enter_context(model.upstream.attention_implementation("eager"))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")  # TorchScript exporter deprecation and tracer warnings
        torch.onnx.export(
            model, example_inputs(spec), str(path),
            input_names=[t.name for t in INPUTS], output_names=[t.name for t in OUTPUTS],
            dynamic_axes=DYNAMIC_AXES, opset_version=spec.opset, dynamo=False, do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return path


def simplify_onnx(path: Path) -> dict[str, Any]:
    """Fold constants and simplify shape arithmetic in place (onnxslim), before any precision pass: fewer
    nodes for TensorRT to parse and fewer int64 shape computations at run time. The export validates the
    result against PyTorch at untraced shapes afterwards, like every graph it writes."""
    import onnx
    import onnxslim

    model = onnx.load(str(path))
    before = len(model.graph.node)
    slim = onnxslim.slim(model)
    onnx.checker.check_model(slim)
    with atomic_path(path) as tmp:
        onnx.save(slim, str(tmp))
    return {"tool": f"onnxslim {onnxslim.__version__}", "nodes_before": before, "nodes_after": len(slim.graph.node)}


def stamp_metadata(path: Path, props: dict[str, str]) -> None:
    """Write `props` into the model's metadata_props (replacing those keys, keeping any others), in place. Weights in
    external data files stay where they are: the graph is loaded without them and saved pointing at them."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
