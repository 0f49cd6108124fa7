"""Training stage: manifests in, checkpoints out (needs the `train` extra: torch, transformers, ...)."""
