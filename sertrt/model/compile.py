"""torch.compile for the upstream, one transformer layer at a time.

    compile_encoder_layers(model, backend="inductor")   # in place; returns how many layers were compiled

Compiling the whole SERModel does not finish in reasonable time on xlsr-53 (the GRU head breaks the graph,
and every (batch, samples) shape and train/eval variant is a full compile, past dynamo's recompile limit).
The encoder layers are the FLOPs (>85% of xlsr-53 at 2 s) and all 24 are the same code with other weights:
with torch's inlining of nn.Module calls (on by default since 2.5) the parameters are graph inputs, so the
first layer's graph serves every layer. `dynamic=True` marks the batch and frame axes symbolic, so a new
length does not recompile. `fullgraph=True` makes a graph break an error instead of a silent fallback: the
layers hold none (tests/test_gpu_speed.py compiles them with fullgraph on the CPU).
The feature encoder, the frame mask arithmetic and the HGFM head (its GRU) stay eager.
"""

from __future__ import annotations

import torch.nn as nn

from ..core.errors import SertrtError


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a wav2vec2 upstream (SERModel or the upstream itself)."""
    upstream = getattr(model, "upstream", model)
    hf = getattr(upstream, "model", None)
    layers = getattr(getattr(hf, "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise SertrtError("compiling encoder layers needs a wav2vec2 upstream "
                          f"(this model has {type(upstream).__name__})")
    return layers


def compile_encoder_layers(model: nn.Module, *, backend: str = "inductor", mode: str | None = None,
                           dynamic: bool = True, fullgraph: bool = True) -> int:
    """Compile each encoder layer's forward in place (`nn.Module.compile`); the layers keep their parameters, so
    checkpoints, DDP and the optimizer see the same tensors. Returns the number of layers compiled."""
    layers = encoder_layers(model)
    for layer in layers:
        layer.compile(backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph)
    return len(layers)
