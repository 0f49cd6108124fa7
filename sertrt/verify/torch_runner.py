"""The PyTorch FP32 reference as a runner (`sertrt.core.runner.Runner`): same interface as the engines.

    with TorchRunner("runs/demo") as ref:           # a run directory (best.safetensors) or a checkpoint
        logits = ref.infer({"waveform": wav, "lengths": lengths})["logits"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.checkpoint import resolve_checkpoint
from ..core.errors import SertrtError


class TorchRunner:
    """Needs the `train` extra (torch, transformers); entering loads the checkpoint, checked against its digest."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        self.checkpoint, self.device, self.model = Path(checkpoint), device, None
        self.input_names = ["waveform", "lengths"]
        self.output_names = ["logits"]
        self.resolved: Path | None = None  # the checkpoint file a run directory names, once entered

    def __enter__(self) -> TorchRunner:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise SertrtError("the PyTorch reference runner needs the full install: pip install 'sertrt[train]'") from None
        from ..model.io import load_model

        self.resolved = resolve_checkpoint(self.checkpoint)
        self.model, _ = load_model(self.resolved)
        self.model.to(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.model = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            logits = self.model(torch.from_numpy(feeds["waveform"]).to(self.device),
                                torch.from_numpy(feeds["lengths"]).to(self.device))
        return {"logits": logits.float().cpu().numpy()}
