"""SERModel -> ONNX (FP32) with named dynamic axes from the spec, then simplified for TensorRT.

The TorchScript exporter (`dynamo=False`) on purpose: torch 2.13's dynamo exporter specialises num_samples to
the traced value in our GRU head ("Specializations unexpectedly required"; docs/export.md#graph-rules).
"""

from __future__ import annotations

import contextlib
import linecache
import warnings
from pathlib import Path
from typing import Any

import torch

from ..core.atomic import atomic_path, naming
from ..core.errors import SertrtError
from ..model.ser import SERModel
from .spec import DYNAMIC_AXES, INPUTS, OUTPUTS, ExportSpec
from .tensorrt_audit import save_joined, split_weights


def example_inputs(spec: ExportSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The traced example: two rows of one streaming window, the second partly padded."""
    n = int(spec.window_seconds * spec.sample_rate)
    g = torch.Generator().manual_seed(0)
    waveform = 0.1 * torch.randn(2, n, generator=g)
    lengths = torch.tensor([n, (3 * n) // 4], dtype=torch.int64)
    waveform[1, lengths[1]:] = 0
    return waveform, lengths


def export_onnx(model: SERModel, path: Path, spec: ExportSpec) -> Path:
    """torch.onnx.export with the spec's names, dynamic axes and opset, attention as a plain masked softmax."""
    model = model.eval().cpu()
    with contextlib.ExitStack() as stack, torch.no_grad():
        if hasattr(model.upstream, "attention_implementation"):  # wav2vec2: a plain masked softmax, no IsNaN/Where
            stack.enter_context(model.upstream.attention_implementation("eager"))
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        stack.enter_context(naming(path))  # a full disk names the file torch could not write
        torch.onnx.export(
            model, example_inputs(spec), str(path),
            input_names=[t.name for t in INPUTS], output_names=[t.name for t in OUTPUTS],
            dynamic_axes=DYNAMIC_AXES, opset_version=spec.opset, dynamo=False, do_constant_folding=True,
        )
    _check_trace_warnings(caught)
    return path  # onnx.checker runs in simplify_onnx, on the graph without its weights


# Warnings the TorchScript exporter gives on our models that are known safe, keyed by the source line that
# warns (or the message's start), with the reason. A TracerWarning not listed here fails the export: it means
# a value was frozen at trace time and the graph may compute something else at other shapes.
_CHECK = "a torch shape check: it raises or passes, never changes the result"
KNOWN_SAFE_WARNINGS = {
    "if waveform.shape[1] < min_samples:": "SERModel's pad to one frame: the runtime pads every input to the "
                                           "spec's min_samples (>= one frame) first, so the branch never runs",
    "if self.input_size != input.size(-1):": _CHECK,  # torch RNN
    "if hx.size() != expected_hidden_size:": _CHECK,  # torch RNN
    "if size_prods == 1:": _CHECK,  # torch group_norm
    "if embed_dim != embed_dim_to_check:": _CHECK,  # torch multi-head attention (the cnn-sa-dnn head)
    "if head_dim * num_heads != embed_dim:": _CHECK,
    "if key.shape != value.shape:": _CHECK,
    "if attn_mask.size(0) == 1 and attn_mask.dim() == 3:": "torch multi-head attention: both branches shape the "
                                                           "mask (batch, heads, L, S) alike",
    "Exporting a model to ONNX with a batch_size other than 1, with a variable length with GRU":
        "the GRU reads padded rows: the export's validation compares batch 8 with one row at a time",
}


def _check_trace_warnings(caught: list[warnings.WarningMessage]) -> None:
    """Drop deprecation notices and known-safe warnings; fail on any other TracerWarning; show the rest."""
    for w in caught:
        source = linecache.getline(w.filename, w.lineno).split("#")[0].strip()
        if issubclass(w.category, DeprecationWarning) or source in KNOWN_SAFE_WARNINGS or any(
                str(w.message).startswith(k) for k in KNOWN_SAFE_WARNINGS):
            continue
        if issubclass(w.category, torch.jit.TracerWarning):
            first = str(w.message).split(". ")[0].replace("\n", " ")
            raise SertrtError(f"{w.filename}:{w.lineno}: TracerWarning {first} ({source!r}): the trace would "
                              f"freeze this value; no bundle written")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def simplify_onnx(path: Path, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Fold constants and simplify shape arithmetic in place (onnxslim): fewer nodes for TensorRT to parse and
    fewer int64 shape computations at run time. onnxslim reads the graph without its weight matrices (minutes
    sooner on xlsr-53's 1.2 GB); `metadata` is stamped in the same write."""
    import onnx
    import onnxslim
    from onnxslim.core import optimize, shape_infer
    from onnxslim.utils import init_logging

    light, weights = split_weights(onnx.load(str(path)))
    onnx.checker.check_model(light)  # torch's graph, and below onnxslim's, without the weights: milliseconds each
    before = len(light.graph.node)
    # One optimize pass on a shape-inferred graph reaches the fixed point onnxslim.slim() iterates to, sooner.
    init_logging()  # as slim() does: ONNX Runtime quiet about the scratch graphs onnxslim folds constants with
    slim = shape_infer(optimize(shape_infer(light)))
    onnx.checker.check_model(slim)
    _set_metadata(slim, metadata or {})
    with atomic_path(path) as tmp:
        save_joined(slim, weights, tmp)
    return {"tool": f"onnxslim {onnxslim.__version__}", "nodes_before": before, "nodes_after": len(slim.graph.node)}


def _set_metadata(model, props: dict[str, str]) -> None:
    from onnx import helper

    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props if p.key not in props}, **props})


def stamp_metadata(path: Path, props: dict[str, str]) -> None:
    """Write `props` into the model's metadata_props (replacing those keys, keeping any others), in place;
    external weights stay where they are."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    _set_metadata(model, props)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
