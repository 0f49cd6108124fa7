"""The PyTorch reference as a runner (`sertrt.core.runner.Runner`): same interface as the engines.

    with TorchRunner("runs/demo") as ref:           # a run directory (best.safetensors) or a checkpoint
        logits = ref.infer({"waveform": wav, "lengths": lengths})["logits"]
    TorchRunner(run, device="cuda", precision="fp16", cuda_graphs=True)   # the fast GPU reference

fp16 and bf16 are the half model (sertrt.model.half); `cuda_graphs` replays one CUDA graph per
(batch, samples) bucket (sertrt.model.cuda_graphs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.checkpoint import resolve_checkpoint
from ..core.choices import TORCH_PRECISIONS as PRECISIONS
from ..core.errors import SertrtError


class TorchRunner:
    """Needs the `train` extra (torch, transformers); entering loads the checkpoint, checked against its digest."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", precision: str = "fp32", cuda_graphs: bool = False):
        if precision not in PRECISIONS:
            raise SertrtError(f"unknown PyTorch precision {precision!r} (valid: {', '.join(PRECISIONS)})")
        if cuda_graphs and not device.startswith("cuda"):
            raise SertrtError(f"CUDA graphs need a CUDA device, not {device!r} (--torch-device cuda)")
        self.checkpoint, self.device, self.precision, self.cuda_graphs = Path(checkpoint), device, precision, cuda_graphs
        self.model: Any = None  # the model, or its CUDA graphs (BucketedGraphs), while entered
        self.input_names = ["waveform", "lengths"]
        self.output_names = ["logits"]
        self.resolved: Path | None = None  # the checkpoint file a run directory names, once entered

    def __enter__(self) -> TorchRunner:
        try:
            import torch
        except ImportError:
            raise SertrtError("the PyTorch reference runner needs the full install: pip install 'sertrt[train]'") from None
        from ..model.half import half_model
        from ..model.io import load_model

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise SertrtError(f"--torch-device {self.device}: torch sees no CUDA device here")
        self.resolved = resolve_checkpoint(self.checkpoint)
        model, _ = load_model(self.resolved)
        self.model = half_model(model.eval().to(self.device), self.precision)
        if self.cuda_graphs:
            from ..model.cuda_graphs import BucketedGraphs

            self.model = BucketedGraphs(self.model)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.model = None

    def settings(self) -> dict[str, Any]:
        return {"device": self.device, "precision": self.precision, "cuda_graphs": self.cuda_graphs}

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(feeds["waveform"]).to(self.device),
                                torch.from_numpy(feeds["lengths"]).to(self.device))
        return {"logits": logits.float().cpu().numpy()}
