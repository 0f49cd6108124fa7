"""Engine backends as runners (`sertrt.core.runner.Runner`): names in, names out, numpy arrays.

    runner, card = open_runner("bundle", RunnerOptions(backend="ort", threads=2))
    with runner:
        logits = runner.infer({"waveform": wav, "lengths": lengths})["logits"]

    ort      ONNX Runtime; providers "cpu", "cuda" or "tensorrt" (onnxruntime-gpu)
    trt      TensorRT native, from the bundle's model.plan (sertrt.runtime.trt_runner)

The PyTorch reference runner lives in `sertrt.verify` (it needs torch and the checkpoint); the runtime
never imports it. Importing this module costs numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.bundle import ENGINE_FILE, BundleCard, check_onnx_metadata, load_bundle
from ..core.errors import SertrtError
from ..core.precisions import LIMITS
from ..core.runner import Runner

BACKENDS = ("ort", "trt")
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
ORT_OPTIMIZATION_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True)
class RunnerOptions:
    """How to run a bundle; shared by `stream`, `parity` and `bench` (and their CLI options)."""

    backend: str = "ort"  # ort | trt
    provider: str = "cpu"  # ort: cpu | cuda | tensorrt
    threads: int | None = None  # ort: intra-op threads (None: ONNX Runtime's default)
    spinning: bool | None = None  # ort: intra-op threads spin between calls (None: ONNX Runtime's default, on)
    optimization: str = "all"  # ort: graph optimisation level, basic | extended | all
    io_binding: bool = False  # ort: feed and fetch through an IOBinding
    trust: Path | None = None  # an ed25519 public key (PEM): refuse a bundle it did not sign

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise SertrtError(f"unknown backend {self.backend!r} (valid: {', '.join(BACKENDS)})")
        if self.provider not in ORT_PROVIDERS:
            raise SertrtError(f"unknown ONNX Runtime provider {self.provider!r} (valid: {', '.join(ORT_PROVIDERS)})")
        if self.optimization not in ORT_OPTIMIZATION_LEVELS:
            raise SertrtError(f"unknown ONNX Runtime optimization level {self.optimization!r} "
                              f"(valid: {', '.join(ORT_OPTIMIZATION_LEVELS)})")
        if self.threads is not None and self.threads < 1:
            raise SertrtError(f"--threads {self.threads}: must be >= 1 (or left out for ONNX Runtime's default)")


class OrtRunner:
    """ONNX Runtime. `optimization`: graph optimisation level ("basic", "extended", "all");
    `spinning`: session.intra_op.allow_spinning (None: ONNX Runtime's default, which spins; False frees
    the cores between calls, which a machine shared with other work wants); `io_binding`: feed and
    fetch through an IOBinding instead of session.run."""

    def __init__(self, onnx_path: str | Path, provider: str = "cpu", threads: int | None = None, *,
                 optimization: str = "all", spinning: bool | None = None, io_binding: bool = False,
                 card: BundleCard | None = None, precision: str | None = None):
        RunnerOptions(provider=provider, threads=threads, optimization=optimization).check()
        self.onnx_path, self.provider, self.threads = Path(onnx_path), provider, threads
        self.optimization, self.spinning, self.io_binding = optimization, spinning, io_binding
        self.card = card  # the bundle's card: the model's metadata_props must agree with it
        # what the model is (the card's, unless given): its session config comes from LIMITS[precision].ort_config
        self.precision = precision or (card.precision if card is not None else None)
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.session = None
        self._binding = None

    @classmethod
    def from_options(cls, onnx_path: str | Path, options: RunnerOptions, card: BundleCard | None = None,
                     precision: str | None = None) -> OrtRunner:
        return cls(onnx_path, options.provider, options.threads, optimization=options.optimization,
                   spinning=options.spinning, io_binding=options.io_binding, card=card, precision=precision)

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
        for key, value in LIMITS[self.precision].ort_config if self.precision is not None else ():
            options.add_session_config_entry(key, value)
        providers = [wanted, "CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [wanted]
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        if self.card is not None:
            check_onnx_metadata(self.card, dict(self.session.get_modelmeta().custom_metadata_map), self.onnx_path)
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



def open_runner(bundle: str | Path, options: RunnerOptions | None = None) -> tuple[Runner, BundleCard]:
    """(runner, bundle card), the runner not yet entered. The bundle's digest and hashes are checked first
    (and with `options.trust`, an ed25519 public key, its signature); a tampered bundle is refused before
    any model file is read."""
    options = options or RunnerOptions()
    options.check()
    card = load_bundle(bundle, trust=options.trust)
    bundle = Path(bundle)
    if options.backend == "ort":
        return OrtRunner.from_options(bundle / card.model, options, card=card), card
    from .trt_runner import TrtRunner

    engine = bundle / ENGINE_FILE
    if not engine.is_file():
        raise SertrtError(f"{bundle}: no TensorRT engine ({ENGINE_FILE}); build one on the device with `sertrt build-engine {bundle}`")
    if ENGINE_FILE not in card.all_files:
        # load_bundle hashed every listed file; an unlisted plan was never checked and is never deserialised
        raise SertrtError(f"{bundle}: {ENGINE_FILE} is not listed in its manifest.json, so it was not checked; "
                          f"build it with `sertrt build-engine {bundle}`")
    return TrtRunner(engine, card.engine), card
