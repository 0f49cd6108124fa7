"""Backends as runners with one interface (Polygraphy's): names in, names out, numpy arrays.

    with open_runner("bundle", backend="ort") as runner:
        logits = runner.infer({"waveform": wav, "lengths": lengths})["logits"]

    ort      ONNX Runtime; providers "cpu", "cuda" or "tensorrt" (onnxruntime-gpu)
    trt      TensorRT native, from the bundle's model.plan (sertrt.runtime.trt_runner)
    torch    the PyTorch reference, from a checkpoint (full install only)

Streaming, parity and benchmarks never branch on the backend. Importing this module costs numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import load_bundle
from ..errors import SertrtError

BACKENDS = ("ort", "trt", "torch")
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


class Runner:
    input_names: list[str] = ["waveform", "lengths"]
    output_names: list[str] = ["logits"]

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class OrtRunner(Runner):
    def __init__(self, onnx_path: str | Path, provider: str = "cpu", threads: int | None = None):
        if provider not in ORT_PROVIDERS:
            raise SertrtError(f"unknown ONNX Runtime provider {provider!r} (valid: {', '.join(ORT_PROVIDERS)})")
        self.onnx_path, self.provider, self.threads = Path(onnx_path), provider, threads
        self.session = None

    def __enter__(self) -> OrtRunner:
        import onnxruntime as ort

        wanted = ORT_PROVIDERS[self.provider]
        if wanted not in ort.get_available_providers():
            raise SertrtError(f"ONNX Runtime here has no {wanted} (available: {', '.join(ort.get_available_providers())}); "
                              "install onnxruntime-gpu for cuda/tensorrt")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        providers = [wanted, "CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [wanted]
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.session = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))


class TorchRunner(Runner):
    """The PyTorch FP32 reference (needs the `train` extra); same interface as the engines."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        self.checkpoint, self.device, self.model = Path(checkpoint), device, None

    def __enter__(self) -> TorchRunner:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise SertrtError("the PyTorch reference runner needs the full install: pip install 'sertrt[train]'") from None
        from ..checkpoint import load_model
        from ..training.evaluate import resolve_checkpoint

        self.model, _ = load_model(resolve_checkpoint(self.checkpoint))
        self.model.to(self.device)
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            logits = self.model(torch.from_numpy(feeds["waveform"]).to(self.device),
                                torch.from_numpy(feeds["lengths"]).to(self.device))
        return {"logits": logits.float().cpu().numpy()}


def open_runner(bundle: str | Path, backend: str = "ort", provider: str = "cpu", threads: int | None = None,
                checkpoint: str | Path | None = None) -> tuple[Runner, dict[str, Any]]:
    """(runner, bundle manifest). The bundle's hashes are checked first; a tampered bundle is refused."""
    if backend not in BACKENDS:
        raise SertrtError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
    manifest = load_bundle(bundle)
    bundle = Path(bundle)
    if backend == "ort":
        return OrtRunner(bundle / manifest["model"], provider, threads), manifest
    if backend == "trt":
        from .trt_runner import TrtRunner

        engine = bundle / "model.plan"
        if not engine.is_file():
            raise SertrtError(f"{bundle}: no TensorRT engine (model.plan); build one on the device with `sertrt build-engine {bundle}`")
        return TrtRunner(engine, manifest.get("engine")), manifest
    if checkpoint is None:
        checkpoint = manifest["source_checkpoint"]["path"]
    return TorchRunner(checkpoint), manifest
