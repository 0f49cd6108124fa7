"""TensorRT runner on TensorRT's Python API and cuda-python (never torch): names in, names out, numpy at the boundary.

    with TrtRunner("bundle/model.plan", cuda_graphs=True) as runner:
        logits = runner.infer({"waveform": wav, "lengths": lengths})["logits"]   # (B, num_samples) -> (B, num_labels)

The engine runs as NVIDIA's samples run one (samples/python/common_runtime.py): `deserialize_cuda_engine`, one
execution context, `set_input_shape`, `set_tensor_address`, `execute_async_v3` on a stream of ours (the default
stream adds a cudaDeviceSynchronize, per its docstring). Device buffers and pinned host staging are allocated once
for the profile's maximum; optionally one CUDA graph per input shape is captured after that shape's first call
(TensorRT developer guide, "CUDA Graphs": enqueue once after a shape change, then capture).

Audio longer than the profile's `max_samples` is scored in windows (`long_audio_windows`) and gets the log of
its windows' mean probability as logits (`pool_windows`); rows beyond `max_batch` run in several calls. The engine
record (`model.plan.json`) is checked first, so an engine built for another GPU or TensorRT is refused in one line.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.engine import check_engine_compatible, import_cudart, import_tensorrt, record_path
from ..core.errors import SertrtError
from .stream import long_audio_windows, pool_windows

# trt.DataType member name -> numpy: our own explicit table (names checked against the 10.3, 10.13 and 11 lists)
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}
WINDOWED = ("waveform", "lengths")  # the export contract's inputs: what long audio is windowed on


class TrtRunner:
    """A serialized TensorRT engine as a `sertrt.core.runner.Runner`: entering deserialises it and allocates the
    stream and buffers; leaving frees them."""

    def __init__(self, engine_path: str | Path, record: dict[str, Any] | None = None, *, cuda_graphs: bool = False):
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise SertrtError(f"TensorRT engine not found: {self.engine_path}")
        if record is None and record_path(self.engine_path).is_file():
            record = json.loads(record_path(self.engine_path).read_text(encoding="utf-8"))
        self.cuda_graphs = cuda_graphs
        if record is not None:
            try:
                check_engine_compatible(record)
            except SertrtError as e:
                raise SertrtError(f"{self.engine_path}: {e}") from None
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        self.dtypes: dict[str, np.dtype] = {}
        self.profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}  # inputs: min/opt/max
        self.graphs: dict[tuple, Any] = {}  # input shapes -> instantiated CUDA graph (False: not capturable)
        self._cudart: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._device: dict[str, int] = {}  # tensor -> device pointer, profile-max sized
        self._host: dict[str, np.ndarray] = {}  # tensor -> flat pinned host view, profile-max sized
        self._held: list[Any] = []  # runtime and engine: alive as long as the context

    def _cuda(self, result: Any, what: str) -> Any:
        """cuda-python returns (error, *values): the values, or one line naming the call and the error."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self._cudart.cudaError_t.cudaSuccess:
            raise SertrtError(f"{self.engine_path}: {what} failed ({getattr(err, 'name', err)})")
        return values[0] if len(values) == 1 else values

    def __enter__(self) -> TrtRunner:
        trt = import_tensorrt()
        self._cudart = import_cudart()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if engine is None:  # TensorRT logs why and returns None
            raise SertrtError(f"{self.engine_path}: TensorRT {trt.__version__} could not load this engine (see the "
                              "messages above); rebuild it on this machine")
        try:
            self._held = [runtime, engine]
            self._context = engine.create_execution_context()
            self._stream = self._cuda(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                trt_dtype = engine.get_tensor_dtype(name)
                if getattr(trt_dtype, "name", None) not in NUMPY_DTYPES:
                    raise SertrtError(f"{self.engine_path}: I/O tensor {name!r} has a dtype numpy cannot hold "
                                      f"({trt_dtype}); export with FP32/INT64 I/O (keep_io_types)")
                self.dtypes[name] = np.dtype(NUMPY_DTYPES[trt_dtype.name])
                if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    self.input_names.append(name)
                    lo, opt, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
                    self.profile[name] = (lo, opt, hi)
                else:
                    self.output_names.append(name)
            for name in self.input_names:  # the profile's maximum sizes every buffer: outputs follow from it
                self._context.set_input_shape(name, self.profile[name][2])
            for name in self.input_names + self.output_names:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
                if min(shape, default=1) < 0:
                    raise SertrtError(f"{self.engine_path}: output {name!r} has no fixed shape at the profile's maximum {shape}")
                nbytes = max(int(np.prod(shape)), 1) * self.dtypes[name].itemsize
                self._device[name] = self._cuda(self._cudart.cudaMalloc(nbytes), "cudaMalloc")
                pinned = self._cuda(self._cudart.cudaMallocHost(nbytes), "cudaMallocHost")
                self._host[name] = np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(int(pinned))).view(self.dtypes[name])
                self._context.set_tensor_address(name, int(self._device[name]))  # fixed for the runner's life
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        cudart = self._cudart
        if cudart is not None:
            for graph in self.graphs.values():
                if graph is not False:
                    cudart.cudaGraphExecDestroy(graph)
            for host in self._host.values():
                cudart.cudaFreeHost(host.ctypes.data)
            for ptr in self._device.values():
                cudart.cudaFree(ptr)
            if self._stream is not None:
                cudart.cudaStreamDestroy(self._stream)
        self.graphs, self._host, self._device, self._stream, self._context, self._held = {}, {}, {}, None, None, []
        self.input_names, self.output_names = [], []

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Names, dtypes and shapes against the engine's profile, before TensorRT sees anything. Longer audio
        and larger batches than the profile's maximum pass for the contract's inputs (`WINDOWED`)."""
        if set(feeds) != set(self.input_names):
            raise SertrtError(f"engine inputs are {self.input_names}, got {sorted(feeds)}")
        windowed = set(self.input_names) == set(WINDOWED)
        arrays = {}
        for name in self.input_names:
            arr, dtype = np.asarray(feeds[name]), self.dtypes[name]
            if arr.dtype != dtype:
                if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
                    raise SertrtError(f"input {name!r} must be {dtype}, got {arr.dtype}")
                arr = arr.astype(dtype)
            lo, _, hi = self.profile[name]
            if arr.ndim != len(lo) or not all(a <= s and (windowed or s <= b) for a, s, b in zip(lo, arr.shape, hi)):
                raise SertrtError(
                    f"input {name!r} has shape {tuple(arr.shape)}, outside the engine's profile {lo} .. {hi}: "
                    "split the input or rebuild the engine with a wider profile"
                )
            arrays[name] = arr
        if windowed and len({len(a) for a in arrays.values()}) != 1:
            raise SertrtError(f"inputs {list(WINDOWED)} must have one row each, got shapes "
                              f"{[tuple(arrays[n].shape) for n in WINDOWED]}")
        return arrays

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{input name: array} -> {output name: array on the host}; blocks until the results are there."""
        if self._context is None:
            raise RuntimeError("TrtRunner.infer() needs an active runner: `with TrtRunner(path) as runner:`")
        arrays = self._check_feeds(feeds)
        if all(s <= b for name in self.input_names for s, b in zip(arrays[name].shape, self.profile[name][2])):
            return self._run(arrays)
        return self._windowed(arrays["waveform"], arrays["lengths"])

    def _windowed(self, wav: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Long rows in windows, max_batch windows a call (module docstring); the grouping changes nothing."""
        max_batch, width = self.profile["waveform"][2]
        width = min(width, wav.shape[1])
        if lengths.ndim != 1 or not all(1 <= v <= wav.shape[1] for v in lengths.tolist()):
            raise SertrtError(f"input 'lengths' must hold one count per row in 1 .. {wav.shape[1]}, got {lengths.tolist()!r:.80}")
        pieces = long_audio_windows([int(v) for v in lengths], width)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for first in range(0, len(pieces), max_batch):
            chunk = pieces[first:first + max_batch]
            windows = np.zeros((len(chunk), width), dtype=wav.dtype)
            for i, (row, a, b) in enumerate(chunk):
                windows[i, :b - a] = wav[row, a:b]
            counts = np.array([b - a for _, a, b in chunk], dtype=lengths.dtype)
            for name, logits in self._run({"waveform": windows, "lengths": counts}).items():
                parts[name].append(logits)
        rows = np.array([row for row, _, _ in pieces])
        return {name: pool_windows(np.concatenate(p), rows, len(wav)).astype(p[0].dtype) for name, p in parts.items()}

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call within the profile: shapes, copies in, the enqueue (or the shape's graph), copies out, one sync."""
        cudart, ctx, stream = self._cudart, self._context, self._stream
        key = tuple(arrays[name].shape for name in self.input_names)
        for name in self.input_names:
            arr = arrays[name]
            ctx.set_input_shape(name, arr.shape)
            host = self._host[name]
            host[: arr.size] = arr.reshape(-1)
            self._cuda(cudart.cudaMemcpyAsync(self._device[name], host.ctypes.data, arr.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync")
        graph = self.graphs.get(key)
        if graph:
            self._cuda(cudart.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")
        elif not ctx.execute_async_v3(int(stream)):
            raise SertrtError(f"{self.engine_path}: TensorRT could not run the engine on shapes {key} (see the messages above)")
        shapes = {name: tuple(int(d) for d in ctx.get_tensor_shape(name)) for name in self.output_names}
        for name, shape in shapes.items():
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            self._cuda(cudart.cudaMemcpyAsync(self._host[name].ctypes.data, self._device[name], nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync")
        self._cuda(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        outputs = {name: self._host[name][: int(np.prod(shape))].reshape(shape).copy() for name, shape in shapes.items()}
        if self.cuda_graphs and graph is None:
            self.graphs[key] = self._capture()
        return outputs

    def _capture(self) -> Any:
        """A CUDA graph of `execute_async_v3` at the context's current shapes (already enqueued once at them, as
        TensorRT requires after a shape change), or False where this engine cannot be captured: it then runs
        uncaptured, with the same results."""
        cudart, stream = self._cudart, self._stream
        self._cuda(cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
                   "cudaStreamBeginCapture")
        enqueued = self._context.execute_async_v3(int(stream))
        err, graph = cudart.cudaStreamEndCapture(stream)  # always ended: the stream leaves capture mode
        if not enqueued or err != cudart.cudaError_t.cudaSuccess:
            return False
        err, executable = cudart.cudaGraphInstantiate(graph, 0)
        cudart.cudaGraphDestroy(graph)
        return executable if err == cudart.cudaError_t.cudaSuccess else False
