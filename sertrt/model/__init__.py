"""The model floor: torch modules (SERModel, upstreams, heads, layers), weights I/O and FLOPs. Stands on
core/ only; training, export, verify and bench stand on it, the runtime never does."""
