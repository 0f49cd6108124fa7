"""Training stage: manifests in, checkpoints out (needs the `train` extra: torch, transformers, ...)."""

from ..versions import require

require("train")
