"""ONNX Runtime as a runner (`sertrt.core.runner.Runner`): names in, names out, numpy arrays; `open_runner` opens
a bundle on ONNX Runtime or its TensorRT engine (sertrt.runtime.trt_runner).

    runner, card = open_runner("bundle", RunnerOptions(backend="ort", threads=2))
    with runner:
        logits = runner.infer({"waveform": wav, "lengths": lengths})["logits"]

With a trust key, files outside the bundle's signature (a plan `build-engine` added on the device, ONNX Runtime's
TensorRT caches beside the bundle) load only with `allow_local_engine`: anyone who can write there can replace them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.choices import BACKENDS, ORT_PROVIDERS
from ..core.bundle import ENGINE_FILE, BundleCard, check_onnx_metadata, load_bundle
from ..core.errors import SertrtError
from ..core.precisions import LIMITS, cpu_target_mismatch
from ..core.runner import Runner

PROVIDER_NAMES = dict(zip(ORT_PROVIDERS, ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider")))
TRT_WORKSPACE_BYTES = 2 << 30  # what `sertrt build-engine` gives TensorRT by default (--workspace-mb 2048)
ORT_OPTIMIZATION_LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True)
class RunnerOptions:
    """How to run a bundle: `stream`, `parity`, `bench` and `sertrt.load` share it."""

    backend: str = "ort"  # ort | trt
    provider: str = "cpu"  # ort: cpu | cuda | tensorrt
    threads: int | None = None  # ort: intra-op threads (None: ONNX Runtime's default)
    spinning: bool = False  # ort: intra-op threads spin while a call runs (off: see OrtRunner)
    optimization: str = "all"  # ort: graph optimisation level, basic | extended | all
    io_binding: bool = False  # ort: feed and fetch through an IOBinding
    cuda_graphs: bool = False  # trt: one CUDA graph per input shape, replayed
    trust: Path | None = None  # an ed25519 public key (PEM): refuse a bundle it did not sign
    allow_local_engine: bool = False  # with trust: load engines the device built (unsigned) all the same

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
    """ONNX Runtime. `spinning` is off unless asked, although ONNX Runtime's default is on: beside another job,
    as on an edge device, off is faster; on, threads spin only while a call runs (docs/runtime.md)."""

    def __init__(self, onnx_path: str | Path, provider: str = "cpu", threads: int | None = None, *,
                 optimization: str = "all", spinning: bool = False, io_binding: bool = False,
                 card: BundleCard | None = None, precision: str | None = None, trt_cache: Path | None = None):
        RunnerOptions(provider=provider, threads=threads, optimization=optimization).check()
        self.onnx_path, self.provider, self.threads = Path(onnx_path), provider, threads
        self.optimization, self.spinning, self.io_binding = optimization, spinning, io_binding
        self.card = card  # the model's metadata_props must agree with it
        self.trt_cache = trt_cache  # provider "tensorrt": engine and timing caches here (None: none kept)
        self.precision = precision or (card.precision if card is not None else None)
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.session = None
        self._binding = None

    def settings(self) -> dict[str, Any]:
        """What was asked for (None: ONNX Runtime's default)."""
        return {"provider": self.provider, "threads": self.threads, "optimization": self.optimization,
                "spinning": self.spinning, "io_binding": self.io_binding}

    def providers(self) -> list[str | tuple[str, dict[str, str]]]:
        """Providers in priority order with their options, values as strings (onnxruntime.ai/docs/execution-providers/
        TensorRT-ExecutionProvider.html "Configurations", CUDA-ExecutionProvider.html "Configuration Options")."""
        # HEURISTIC: the stream's shapes vary and EXHAUSTIVE, the default, benchmarks cuDNN again at each new shape
        cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": "1"})
        if self.provider == "cpu":
            return ["CPUExecutionProvider"]
        if self.provider == "cuda":
            return [cuda, "CPUExecutionProvider"]
        return [("TensorrtExecutionProvider", self.tensorrt_options()), cuda, "CPUExecutionProvider"]

    def tensorrt_options(self) -> dict[str, str]:
        """From the card: its precision, its profile (so no shape the stream sends forces a rebuild) and, with
        `trt_cache`, the engine and timing caches (else every process builds the engine again)."""
        opts = {"trt_max_workspace_size": str(TRT_WORKSPACE_BYTES)}
        if self.precision == "fp16":
            # a weakly typed network: without the flag TensorRT may run the half layers in FP32; with it, it may
            # pick half kernels for the export's FP32 layers, so layer norms are held in FP32 (`parity` checks the rest)
            opts.update(trt_fp16_enable="True", trt_layer_norm_fp32_fallback="True")
        elif self.precision == "int8":
            # Q/DQ graph: no calibration table (the provider's docs: not allowed with Q/DQ nodes)
            opts["trt_int8_enable"] = "True"
        profile = self.card.profile if self.card is not None else {}
        if profile:
            for level in ("min", "opt", "max"):
                batch, samples = profile[f"{level}_batch"], profile[f"{level}_samples"]
                opts[f"trt_profile_{level}_shapes"] = f"waveform:{batch}x{samples},lengths:{batch}"
        if self.trt_cache is not None:
            opts.update(trt_engine_cache_enable="True", trt_engine_cache_path=str(self.trt_cache),
                        trt_timing_cache_enable="True", trt_timing_cache_path=str(self.trt_cache))
        return opts

    def __enter__(self) -> OrtRunner:
        import onnxruntime as ort

        wanted = PROVIDER_NAMES[self.provider]
        if wanted not in ort.get_available_providers():
            raise SertrtError(f"ONNX Runtime here has no {wanted} (available: {', '.join(ort.get_available_providers())}); "
                              "install onnxruntime-gpu for cuda/tensorrt")
        if self.trt_cache is not None and self.provider == "tensorrt":
            self.trt_cache.mkdir(mode=0o700, parents=True, exist_ok=True)  # only this user writes what TensorRT loads
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPTIMIZATION_LEVELS[self.optimization])
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        # and they stop when it returns (onnxruntime_session_options_config_keys.h,
        # kOrtSessionOptionsConfigForceSpinningStop: "forces any TP threads spinning stop immediately when the last
        # of concurrent Run() call returns")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        for key, value in LIMITS[self.precision].ort_config if self.precision is not None else ():
            options.add_session_config_entry(key, value)
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=self.providers())
        if self.card is not None:
            check_onnx_metadata(self.card, dict(self.session.get_modelmeta().custom_metadata_map), self.onnx_path)
            if self.provider == "cpu" and (mismatch := cpu_target_mismatch(self.card.cpu_target)):
                warnings.warn(mismatch, RuntimeWarning, stacklevel=2)
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
    """(runner, bundle card), the runner not yet entered. The bundle's hashes (and with `options.trust`, its
    signature) are checked before any model file is read."""
    options = options or RunnerOptions()
    options.check()
    card = load_bundle(bundle, trust=options.trust)
    bundle = Path(bundle)
    local_ok = options.trust is None or options.allow_local_engine
    if options.backend == "ort":
        cache = trt_cache_dir(bundle, card) if options.provider == "tensorrt" and local_ok else None
        return OrtRunner(bundle / card.model, options.provider, options.threads, optimization=options.optimization,
                         spinning=options.spinning, io_binding=options.io_binding, card=card, trt_cache=cache), card
    from .trt_runner import TrtRunner

    engine = bundle / ENGINE_FILE
    if not engine.is_file():
        raise SertrtError(f"{bundle}: no TensorRT engine ({ENGINE_FILE}); build one on the device with `sertrt build-engine {bundle}`")
    if ENGINE_FILE not in card.all_files:
        raise SertrtError(f"{bundle}: {ENGINE_FILE} is not listed in its manifest.json, so it was not checked; "
                          f"build it with `sertrt build-engine {bundle}`")
    if ENGINE_FILE not in card.files and not local_ok:
        raise SertrtError(f"{bundle}: {ENGINE_FILE} was added on this device, outside what --trust verifies (the "
                          "signature); pass --allow-local-engine (allow_local_engine=True) to load it, trusting this folder's permissions")
    return TrtRunner(engine, card.engine, cuda_graphs=options.cuda_graphs), card


def trt_cache_dir(bundle: Path, card: BundleCard) -> Path:
    """ONNX Runtime's TensorRT caches, beside the bundle: one folder per model sha256 and ONNX Runtime version, since
    its docs say to clear the cache when either changes (TensorRT refuses a plan from another version or GPU)."""
    import onnxruntime as ort

    digest = card.files[card.model]  # load_bundle refuses a card whose model is not among its files
    return bundle.parent / f"{bundle.name}.trt-cache" / f"{digest[:16]}-onnxruntime-{ort.__version__}"
