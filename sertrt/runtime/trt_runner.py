"""TensorRT runner: names in, names out, numpy at the boundary (Polygraphy's TrtRunner, trimmed).

    with TrtRunner("bundle/model.plan") as runner:
        out = runner.infer({"waveform": wav, "lengths": lengths})   # wav (B, num_samples) float32
        logits = out["logits"]                                      # (B, num_labels) float32

Import cost is numpy only: `tensorrt` and `cuda-python` (device memory and streams) are imported when
a runner is entered, never torch. An engine is bound to one GPU model and one TensorRT version, so the
engine record written beside the plan (`model.plan.json`, see `sertrt.export.tensorrt_engine`) is
checked first and a mismatch is refused with one line instead of a TensorRT crash.

NOT RUN AGAINST A REAL TENSORRT OR GPU: no TensorRT or GPU was available where this was written.
It follows the documented TensorRT 10/11 Python API (name-based tensor API, `execute_async_v3`) and
cuda-python's runtime bindings, and is tested only with fake `tensorrt` and `cudart` modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.engine import (
    check_engine_compatible,
    import_cudart,
    import_tensorrt,
    record_path,
)
from ..core.errors import SertrtError

# trt.DataType member name -> numpy; our own table because trt.nptype lacks INT64 in some 10.x releases.
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}


def cuda_call(cudart, name: str, result: Any) -> Any:
    """cuda-python returns (err, *values): raise on err, return the value(s)."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise SertrtError(f"CUDA call {name} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else tuple(values)


class TrtRunner:
    """Run a serialized TensorRT engine. Entering deserializes it and creates the execution context
    and a CUDA stream; leaving frees them. Device buffers persist across `infer` calls and only grow."""

    def __init__(self, engine_path: str | Path, record: dict[str, Any] | None = None):
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise SertrtError(f"TensorRT engine not found: {self.engine_path}")
        if record is None and record_path(self.engine_path).is_file():
            record = json.loads(record_path(self.engine_path).read_text(encoding="utf-8"))
        self.record = record
        if record is not None:
            try:
                check_engine_compatible(record)
            except SertrtError as e:
                raise SertrtError(f"{self.engine_path}: {e}") from None
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.dtypes: dict[str, np.dtype] = {}
        self.profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}  # inputs: min/opt/max
        self._cudart = self._runtime = self._engine = self._context = self._stream = None
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)

    def __enter__(self) -> TrtRunner:
        trt = import_tensorrt()
        self._cudart = import_cudart()
        try:
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self._engine is None:
                raise SertrtError(
                    f"{self.engine_path}: TensorRT {trt.__version__} could not load this engine (built by another "
                    "TensorRT version or for another GPU?); rebuild it on this machine"
                )
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise SertrtError(f"{self.engine_path}: could not create a TensorRT execution context (out of GPU memory?)")
            for i in range(self._engine.num_io_tensors):
                name = self._engine.get_tensor_name(i)
                trt_dtype = self._engine.get_tensor_dtype(name)
                if getattr(trt_dtype, "name", None) not in NUMPY_DTYPES:
                    raise SertrtError(f"{self.engine_path}: I/O tensor {name!r} has a dtype numpy cannot hold "
                                      f"({trt_dtype}); export with FP32/INT64 I/O (keep_io_types)")
                self.dtypes[name] = np.dtype(NUMPY_DTYPES[trt_dtype.name])
                if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    self.input_names.append(name)
                    self.profile[name] = tuple(tuple(int(d) for d in s)
                                               for s in self._engine.get_tensor_profile_shape(name, 0))
                else:
                    self.output_names.append(name)
            # A non-default stream: execute_async_v3 on the default one adds device-wide synchronizations.
            self._stream = cuda_call(self._cudart, "cudaStreamCreate", self._cudart.cudaStreamCreate())
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        cudart = self._cudart
        for ptr, _ in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers.clear()
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        # Context before engine before runtime: each holds the next one's memory.
        self._stream = self._context = self._engine = self._runtime = None
        self.input_names, self.output_names = [], []

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, capacity = self._buffers.get(name, (0, 0))
        if nbytes > capacity:
            if ptr:
                cuda_call(self._cudart, "cudaFree", self._cudart.cudaFree(ptr))
            capacity = max(nbytes, 2 * capacity, 256)  # grow geometrically: streams vary num_samples
            ptr = int(cuda_call(self._cudart, "cudaMalloc", self._cudart.cudaMalloc(capacity)))
            self._buffers[name] = (ptr, capacity)
        return ptr

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Names, dtypes and shapes against the engine's profile, before TensorRT sees anything."""
        if set(feeds) != set(self.input_names):
            raise SertrtError(f"engine inputs are {self.input_names}, got {sorted(feeds)}")
        arrays = {}
        for name in self.input_names:
            arr, dtype = np.asarray(feeds[name]), self.dtypes[name]
            if arr.dtype != dtype:
                if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
                    raise SertrtError(f"input {name!r} must be {dtype}, got {arr.dtype}")
                arr = arr.astype(dtype)
            lo, _, hi = self.profile[name]
            if arr.ndim != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, arr.shape, hi)):
                raise SertrtError(
                    f"input {name!r} has shape {tuple(arr.shape)}, outside the engine's profile {lo} .. {hi}: "
                    "split the input or rebuild the engine with a wider profile"
                )
            arrays[name] = np.ascontiguousarray(arr)
        return arrays

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{input name: array} -> {output name: array}; blocks until the results are on the host."""
        if self._context is None:
            raise RuntimeError("TrtRunner.infer() needs an active runner: `with TrtRunner(path) as runner:`")
        cudart, ctx, stream = self._cudart, self._context, self._stream
        arrays = self._check_feeds(feeds)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, arr in arrays.items():
            if not ctx.set_input_shape(name, arr.shape):
                raise SertrtError(f"TensorRT refused shape {arr.shape} for input {name!r}")
            ptr = self._device_buffer(name, arr.nbytes)
            cuda_call(cudart, "cudaMemcpyAsync", cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, stream))
            ctx.set_tensor_address(name, ptr)
        outputs = {}
        for name in self.output_names:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {name!r} shape {shape} unresolved after setting every input shape")
            outputs[name] = np.empty(shape, dtype=self.dtypes[name])
            ctx.set_tensor_address(name, self._device_buffer(name, outputs[name].nbytes))
        if not ctx.execute_async_v3(int(stream)):
            raise SertrtError(f"{self.engine_path}: TensorRT execution failed (see the TensorRT messages above)")
        for name, host in outputs.items():
            ptr = self._buffers[name][0]
            cuda_call(cudart, "cudaMemcpyAsync", cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, stream))
        cuda_call(cudart, "cudaStreamSynchronize", cudart.cudaStreamSynchronize(stream))
        return outputs
