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
ORT_OPTIMIZATION_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


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
    """ONNX Runtime. `optimization`: graph optimisation level ("basic", "extended", "all");
    `spinning`: session.intra_op.allow_spinning (None: ONNX Runtime's default, which spins; False frees
    the cores between calls, which a machine shared with other work wants); `io_binding`: feed and
    fetch through an IOBinding instead of session.run."""

    def __init__(self, onnx_path: str | Path, provider: str = "cpu", threads: int | None = None, *,
                 optimization: str = "all", spinning: bool | None = None, io_binding: bool = False):
        if provider not in ORT_PROVIDERS:
            raise SertrtError(f"unknown ONNX Runtime provider {provider!r} (valid: {', '.join(ORT_PROVIDERS)})")
        if optimization not in ORT_OPTIMIZATION_LEVELS:
            raise SertrtError(f"unknown ONNX Runtime optimization level {optimization!r} "
                              f"(valid: {', '.join(ORT_OPTIMIZATION_LEVELS)})")
        self.onnx_path, self.provider, self.threads = Path(onnx_path), provider, threads
        self.optimization, self.spinning, self.io_binding = optimization, spinning, io_binding
        self.session = None
        self._binding = None

    def settings(self) -> dict[str, Any]:
        """What was asked for (None: ONNX Runtime's default)."""
        return {"provider": self.provider, "threads": self.threads, "optimization": self.optimization,
                "spinning": self.spinning, "io_binding": self.io_binding}

    def __enter__(self) -> OrtRunner:
        import onnxruntime as ort

        wanted = ORT_PROVIDERS[self.provider]
        if wanted not in ort.get_available_providers():
            raise SertrtError(f"ONNX Runtime here has no {wanted} (available: {', '.join(ort.get_available_providers())}); "
                              "install onnxruntime-gpu for cuda/tensorrt")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPTIMIZATION_LEVELS[self.optimization])
        if self.spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        providers = [wanted, "CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [wanted]
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._binding = self.session.io_binding() if self.io_binding else None
        return self

    def __exit__(self, *exc: Any) -> None:
        self.session = self._binding = None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._binding is None:
            return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
        b = self._binding
        for name, value in feeds.items():
            b.bind_cpu_input(name, value)
        for name in self.output_names:
            b.bind_output(name, "cpu")
        self.session.run_with_iobinding(b)
        return dict(zip(self.output_names, b.copy_outputs_to_cpu()))


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

        self.resolved = resolve_checkpoint(self.checkpoint)  # the checkpoint file a run directory names
        self.model, _ = load_model(self.resolved)
        self.model.to(self.device)
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            logits = self.model(torch.from_numpy(feeds["waveform"]).to(self.device),
                                torch.from_numpy(feeds["lengths"]).to(self.device))
        return {"logits": logits.float().cpu().numpy()}


def open_runner(bundle: str | Path, backend: str = "ort", provider: str = "cpu", threads: int | None = None,
                checkpoint: str | Path | None = None, *, optimization: str = "all", spinning: bool | None = None,
                io_binding: bool = False, trust: str | Path | None = None) -> tuple[Runner, dict[str, Any]]:
    """(runner, bundle manifest). The bundle's digest and hashes are checked first (and with `trust`, an
    ed25519 public key, its signature); a tampered bundle is refused before any model file is read.
    `threads`, `optimization`, `spinning` and `io_binding` are ONNX Runtime's (see OrtRunner)."""
    if backend not in BACKENDS:
        raise SertrtError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
    if threads is not None and threads < 1:
        raise SertrtError(f"--threads {threads}: must be >= 1 (or left out for ONNX Runtime's default)")
    manifest = load_bundle(bundle, trust=trust)
    bundle = Path(bundle)
    if backend == "ort":
        return OrtRunner(bundle / manifest["model"], provider, threads, optimization=optimization, spinning=spinning,
                         io_binding=io_binding), manifest
    if backend == "trt":
        from .trt_runner import TrtRunner

        engine = bundle / "model.plan"
        if not engine.is_file():
            raise SertrtError(f"{bundle}: no TensorRT engine (model.plan); build one on the device with `sertrt build-engine {bundle}`")
        if "model.plan" not in {**manifest["files"], **(manifest.get("local_files") or {})}:
            # load_bundle hashed every listed file; an unlisted plan was never checked and is never deserialised
            raise SertrtError(f"{bundle}: model.plan is not listed in its manifest.json, so it was not checked; "
                              f"build it with `sertrt build-engine {bundle}`")
        return TrtRunner(engine, manifest.get("engine")), manifest
    if checkpoint is None:
        checkpoint = manifest["source_checkpoint"]["path"]
    return TorchRunner(checkpoint), manifest
