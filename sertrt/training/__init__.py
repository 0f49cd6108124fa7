"""Training stage: manifests in, checkpoints out (needs the `train` extra: torch, transformers, ...)."""

from ..core.versions import require

require("train")
