"""ONNX -> TensorRT engine (.plan) plus its record (`model.plan.json`: the GPU model and TensorRT version it
runs on), on TensorRT 10.x and 11.x, built with NVIDIA's Polygraphy (`NetworkFromOnnxPath(strongly_typed=True)`,
`CreateConfig(profiles=...)`, `EngineBytesFromNetwork`).

Precision is carried by the ONNX, so the network is strongly typed and no precision builder flag is set: on
10.x STRONGLY_TYPED opts in (the FP16/INT8 flags are deprecated since 10.12 and not allowed with it); 11.x
removed them and is always strongly typed (TensorRT developer guide, "Strongly Typed Networks";
docs/tensorrt-api-versions.md).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from .. import __version__
from ..core.atomic import atomic_path, write_text
from ..core.audio import seconds_to_samples
from ..core.bundle import sha256_file
from ..core.engine import environment, import_polygraphy_trt, import_tensorrt, record_path
from ..core.errors import SertrtError
from ..core.precisions import LIMITS, PRECISIONS
from .spec import INPUTS, Profile

INT8_DYNAMIC_REFUSED = ("an int8-dynamic bundle is ONNX Runtime CPU's artifact: TensorRT takes the `int8` (QDQ) bundle "
                        "(DynamicQuantizeLinear/MatMulInteger are not TensorRT's INT8 format); "
                        "export one with --precision int8 --calib-manifest M")
OPTIMIZATION_LEVEL = 3  # builder_optimization_level, 0-5: TensorRT's default


@dataclass
class EngineOptions:
    onnx: Path  # the precision's ONNX (FP32, FP16 or INT8 Q/DQ)
    out: Path  # engine file (.plan); the record goes to <out>.json
    precision: str  # "fp32" | "fp16" | "int8": recorded ("int8-dynamic" is refused)
    profile: Profile
    workspace_mb: int = 2048
    timing_cache: Path | None = None  # read if present, written back after the build


def trt_major(trt: Any) -> int:
    major = Version(trt.__version__).major
    if major < 10:
        raise SertrtError(f"TensorRT {trt.__version__} is too old: sertrt needs TensorRT 10 or newer (JetPack 6.1+)")
    return major


# Up to 0.49.x Polygraphy's CreateConfig reads ILayer.precision_is_set, which TensorRT 11 removed: the build
# dies mid-way on an AttributeError. 0.50.3 is the oldest release known to handle it.
POLYGRAPHY_FOR_TRT11 = "0.50.3"


def check_polygraphy(trt_version: str, major: int) -> None:
    """Refuse, before building, a Polygraphy too old for TensorRT `major` (one line, SertrtError)."""
    import polygraphy

    found = polygraphy.__version__
    if major >= 11 and Version(found) < Version(POLYGRAPHY_FOR_TRT11):
        raise SertrtError(f"TensorRT {trt_version} needs polygraphy >= {POLYGRAPHY_FOR_TRT11}, found {found} (older "
                          "ones read layer precisions TensorRT 11 removed and fail mid-build): "
                          "pip install -U 'polygraphy>=0.53'")


def engine_record(precision: str, profile: Profile) -> dict[str, Any]:
    """What builds (or would build) an engine of `precision` over `profile` here."""
    return {"sertrt_version": __version__, **environment(), "precision": precision,
            "profile_shapes": {name: [list(s) for s in shapes] for name, shapes in profile.shapes().items()}}


def _check_precision(precision: str) -> None:
    if precision == "int8-dynamic":
        raise SertrtError(INT8_DYNAMIC_REFUSED)
    if precision not in PRECISIONS:
        valid = [p for p in PRECISIONS if p != "int8-dynamic"]
        raise SertrtError(f"unknown precision {precision!r}; choose from {', '.join(valid)}")


def build_engine(opts: EngineOptions) -> dict[str, Any]:
    """Build a strongly typed engine over `opts.profile`, write the plan atomically and its record beside it;
    returns the record. A failed build leaves an existing plan untouched."""
    _check_precision(opts.precision)
    if opts.workspace_mb <= 0:
        raise SertrtError(f"workspace_mb must be positive, got {opts.workspace_mb}")
    opts.profile.check()
    onnx, out = Path(opts.onnx), Path(opts.out)
    if not onnx.is_file():
        raise SertrtError(f"ONNX file not found: {onnx}")
    trt = import_tensorrt()
    major = trt_major(trt)
    poly, failure = import_polygraphy_trt()
    check_polygraphy(trt.__version__, major)

    profile = poly.Profile()
    for name, (lo, opt, hi) in opts.profile.shapes().items():
        profile.add(name, min=lo, opt=opt, max=hi)
    cache = Path(opts.timing_cache) if opts.timing_cache is not None else None
    config = poly.CreateConfig(
        profiles=[profile], memory_pool_limits={trt.MemoryPoolType.WORKSPACE: opts.workspace_mb << 20},
        builder_optimization_level=OPTIMIZATION_LEVEL,
        load_timing_cache=str(cache) if cache is not None and cache.is_file() else None,
    )
    try:
        # Parsed from the path, so the parser finds external weights (model.onnx.data) beside the file.
        builder, network, parser = poly.NetworkFromOnnxPath(str(onnx), strongly_typed=True)()
        names = {network.get_input(i).name for i in range(network.num_inputs)}
        expected = [t.name for t in INPUTS]
        if names != set(expected):
            raise SertrtError(f"{onnx} has inputs {sorted(names)}; sertrt engines expect {expected}")
        plan = poly.EngineBytesFromNetwork((builder, network, parser), config=config,
                                           save_timing_cache=str(cache) if cache is not None else None)()
    except failure as e:
        raise SertrtError(f"TensorRT {trt.__version__} could not build an engine from {onnx}: "
                          f"{str(e).splitlines()[0] if str(e) else 'see the messages above'}") from None
    with atomic_path(out) as tmp:
        tmp.write_bytes(bytes(plan))

    record = engine_record(opts.precision, opts.profile)
    record.update({
        "strongly_typed": True,
        "built_with": "polygraphy",
        "onnx": onnx.name, "onnx_sha256": sha256_file(onnx),
        "engine": out.name, "engine_sha256": sha256_file(out),
        "workspace_mb": opts.workspace_mb, "optimization_level": OPTIMIZATION_LEVEL,
        "trtexec": trtexec_command(onnx.name, out.name, opts.profile, major, workspace_mb=opts.workspace_mb),
    })
    write_text(record_path(out), json.dumps(record, indent=2) + "\n")
    return record


def trtexec_command(onnx: str | Path, engine: str | Path, profile: Profile, trt_major: int,
                    workspace_mb: int = 2048) -> str:
    """The trtexec line equivalent to `build_engine` (JetPack: /usr/src/tensorrt/bin/trtexec; the pip
    wheels ship none). Never --fp16/--int8/--best; --stronglyTyped on 10.x (a no-op on 11.x)."""
    shapes = profile.shapes()

    def at(i: int) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in s[i])}" for name, s in shapes.items())

    args = [f"--onnx={onnx}", f"--saveEngine={engine}", f"--minShapes={at(0)}", f"--optShapes={at(1)}",
            f"--maxShapes={at(2)}", f"--memPoolSize=workspace:{workspace_mb}",
            f"--builderOptimizationLevel={OPTIMIZATION_LEVEL}"]
    if trt_major == 10:
        args.append("--stronglyTyped")
    return shlex.join(["trtexec", *args])


def device_commands(bundle: str | Path, precision: str, profile: Profile, sample_rate: int = 16000,
                    window_seconds: float = 2.0) -> list[tuple[str, str]]:
    """[(what, command line)] to build, compare with ONNX Runtime and time the engine, run from inside the
    bundle on the device (`sertrt build-engine BUNDLE --dry-run` prints them)."""
    _check_precision(precision)
    shapes = profile.shapes()
    n = seconds_to_samples(window_seconds, sample_rate)

    def poly(i: int) -> str:
        return " ".join(f"{name}:[{','.join(str(d) for d in s[i])}]" for name, s in shapes.items())

    limits = LIMITS[precision]
    # Polygraphy builds FP32 without TF32 unless --tf32, trtexec with it (TensorRT's default): 1e-3 covers both
    tol = max(limits.atol, 1e-3)
    build = ["polygraphy", "convert", "model.onnx", "--convert-to", "trt", "-o", "model.plan", "--strongly-typed",
             "--trt-min-shapes", poly(0), "--trt-opt-shapes", poly(1), "--trt-max-shapes", poly(2),
             "--pool-limit", "workspace:2G", "--builder-optimization-level", str(OPTIMIZATION_LEVEL)]
    compare = ["polygraphy", "run", "model.onnx", "--trt", "--onnxrt", "--strongly-typed",
               "--input-shapes", f"waveform:[1,{n}]", "lengths:[1]", "--val-range", "waveform:[-0.5,0.5]", f"lengths:[{n},{n}]",
               "--atol", f"{tol:g}", "--rtol", f"{max(limits.rtol, 1e-3):g}", "--check-error-stat", "mean"]
    timing = ["trtexec", "--loadEngine=model.plan", f"--shapes=waveform:1x{n},lengths:1", "--loadInputs=lengths:lengths.bin",
              "--useCudaGraph", "--noDataTransfers", "--iterations=500"]
    return [
        ("build the engine the runtime loads (the same build, then hashed into the bundle card; "
         "a plan built by hand is refused until recorded this way)", f"sertrt build-engine {shlex.quote(str(bundle))}"),
        ("or build it with Polygraphy (to inspect or debug the build)", shlex.join(build)),
        ("or with trtexec (JetPack: /usr/src/tensorrt/bin/trtexec)",
         trtexec_command("model.onnx", "model.plan", profile, 10)),
        ("compare TensorRT with ONNX Runtime on one window", shlex.join(compare)),
        ("the lengths input trtexec reads",
         shlex.join(["python3", "-c", f"import numpy as np; np.array([{n}], np.int64).tofile(\"lengths.bin\")"])),
        ("time the engine (one window, batch 1, CUDA graph)", shlex.join(timing)),
    ]
