"""The engine record (model.plan.json beside model.plan): the TensorRT version, GPU name and compute
capability an engine was built for, since an engine runs only there. The export writes it and the runtime
checks it, so it lives below both. `tensorrt` and cuda-python are imported lazily; never torch.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from .errors import SertrtError

TRT_MISSING = (
    "TensorRT Python bindings not found: on Jetson they ship with JetPack (python3-libnvinfer; a "
    "virtualenv needs --system-site-packages); elsewhere `pip install tensorrt` (11.x; `tensorrt<11` for 10.x)"
)
POLYGRAPHY_MISSING = "Polygraphy not found (sertrt builds TensorRT engines through it): `pip install polygraphy`"
CUDA_PYTHON_MISSING = ("cuda-python not found (the TensorRT runner's device memory and stream): `pip install "
                       "'cuda-python>=12.6,<13'` for CUDA 12 (JetPack 6), `cuda-python>=13` for CUDA 13")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise SertrtError(TRT_MISSING) from None
    return trt


def import_polygraphy_trt() -> tuple[Any, type[Exception]]:
    """(polygraphy.backend.trt, PolygraphyException): NVIDIA's TensorRT loaders, imported when an engine is
    built. Polygraphy is pure Python and imports `tensorrt` itself, lazily."""
    from importlib import import_module

    try:
        poly = import_module("polygraphy.backend.trt")
        from polygraphy.exception import PolygraphyException
    except ImportError:
        raise SertrtError(POLYGRAPHY_MISSING) from None
    return poly, PolygraphyException


def import_cudart(required: bool = True) -> Any:
    """cuda-python's runtime bindings; without them a one-line error, or None when not `required`."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6.1
    except ImportError:
        try:
            from cuda import cudart  # up to 12.6.0 (removed in 13)
        except ImportError:
            if required:
                raise SertrtError(CUDA_PYTHON_MISSING) from None
            return None
    return cudart


def record_path(engine: str | Path) -> Path:
    """The engine record lives beside the plan: model.plan -> model.plan.json."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def gpu_identity() -> tuple[str | None, str | None]:
    """(GPU name, compute capability "major.minor") of the current device, via cuda-python, else
    nvidia-smi, else (None, None): JetPack 6 has no nvidia-smi, so install cuda-python there."""
    cudart = import_cudart(required=False)
    if cudart is not None:
        err, device = cudart.cudaGetDevice()
        if err == cudart.cudaError_t.cudaSuccess:
            err, prop = cudart.cudaGetDeviceProperties(device)
            if err == cudart.cudaError_t.cudaSuccess:
                name = prop.name
                if isinstance(name, bytes):
                    name = name.split(b"\0", 1)[0].decode(errors="replace")
                return name.strip(), f"{prop.major}.{prop.minor}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    index = visible if visible.isdigit() else "0"  # nvidia-smi ignores CUDA_VISIBLE_DEVICES
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader", "-i", index],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    fields = [f.strip() for f in out.strip().splitlines()[0].rsplit(",", 1)] if out.strip() else []
    return (fields[0], fields[1]) if len(fields) == 2 else (None, None)


def environment() -> dict[str, Any]:
    """What an engine depends on, for this machine: TensorRT version, GPU name, compute capability."""
    trt = import_tensorrt()
    name, cc = gpu_identity()
    return {"tensorrt_version": str(trt.__version__), "gpu_name": name, "compute_capability": cc}


def check_engine_compatible(record: dict[str, Any]) -> None:
    """SertrtError (one line) if this machine's TensorRT version, GPU model or compute capability differs from
    the engine record's. A GPU field unknown on either side is not compared (TensorRT still refuses the plan)."""
    from packaging.version import InvalidVersion, Version

    here = environment()
    built_trt, here_trt = record.get("tensorrt_version"), here["tensorrt_version"]
    try:
        same_trt = built_trt is not None and Version(str(built_trt)) == Version(here_trt)
    except InvalidVersion:
        same_trt = str(built_trt) == here_trt
    mismatches = [] if same_trt else [f"TensorRT {built_trt} (here {here_trt})"]
    for key, label in (("gpu_name", "GPU"), ("compute_capability", "compute capability")):
        if record.get(key) and here.get(key) and str(record[key]) != str(here[key]):
            mismatches.append(f"{label} {record[key]} (here {here[key]})")
    if mismatches:
        raise SertrtError(
            f"engine was built for {', '.join(mismatches)}: a TensorRT engine only runs on the GPU model and "
            "TensorRT version that built it; rebuild it on this machine from the bundle's ONNX"
        )
