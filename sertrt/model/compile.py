"""torch.compile for the upstream, one transformer layer at a time.

Compiling the whole SERModel does not finish in reasonable time on xlsr-53 (the GRU head breaks the graph, and
every shape is a full compile). The encoder layers hold most of the FLOPs and share one code path: with torch's
inlining of nn.Module calls the parameters are graph inputs, so the first layer's graph serves every layer.
`dynamic=True` keeps a new length from recompiling; `fullgraph=True` makes a graph break an error.
"""

from __future__ import annotations

from ..core.errors import SertrtError
from .ser import SERModel
from .upstream import Wav2Vec2Upstream


def compile_encoder_layers(model: SERModel, backend: str = "inductor") -> int:
    """Compile each encoder layer of a SERModel's wav2vec2 upstream in place; the layers keep their parameters, so
    checkpoints, DDP and the optimizer see the same tensors. Returns the number compiled."""
    if not isinstance(model.upstream, Wav2Vec2Upstream):
        raise SertrtError("compiling encoder layers needs a wav2vec2 upstream "
                          f"(this model has {type(model.upstream).__name__})")
    layers = model.upstream.model.encoder.layers
    for layer in layers:
        layer.compile(backend=backend, dynamic=True, fullgraph=True)
    return len(layers)
