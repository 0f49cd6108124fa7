"""torch.compile for the upstream, one transformer layer at a time.

Compiling the whole SERModel does not finish in reasonable time on xlsr-53 (the GRU head breaks the graph, and
every shape is a full compile). The encoder layers hold most of the FLOPs and share one code path: with torch's
inlining of nn.Module calls the parameters are graph inputs, so the first layer's graph serves every layer.
`dynamic=True` keeps a new length from recompiling; `fullgraph=True` makes a graph break an error.
"""

from __future__ import annotations

import torch.nn as nn

from ..core.errors import SertrtError


def compile_encoder_layers(model: nn.Module, backend: str = "inductor") -> int:
    """Compile each encoder layer of a wav2vec2 upstream (SERModel or the upstream itself) in place; the layers keep
    their parameters, so checkpoints, DDP and the optimizer see the same tensors. Returns the number compiled."""
    upstream = getattr(model, "upstream", model)
    layers = getattr(getattr(getattr(upstream, "model", None), "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise SertrtError("compiling encoder layers needs a wav2vec2 upstream "
                          f"(this model has {type(upstream).__name__})")
    for layer in layers:
        layer.compile(backend=backend, dynamic=True, fullgraph=True)
    return len(layers)
