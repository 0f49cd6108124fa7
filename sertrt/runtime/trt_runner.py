"""TensorRT runner on TensorRT's own Python API and cuda-python: names in, names out, numpy at the boundary.

    with TrtRunner("bundle/model.plan", cuda_graphs=True) as runner:
        out = runner.infer({"waveform": wav, "lengths": lengths})   # wav (B, num_samples) float32
        logits = out["logits"]                                      # (B, num_labels) float32

The way NVIDIA's own samples run an engine (samples/python/common_runtime.py; the TensorRT Python API's
`IExecutionContext`): `Runtime.deserialize_cuda_engine`, one execution context, `set_input_shape`,
`set_tensor_address`, `execute_async_v3` on a stream of ours (not the default stream: its docstring warns of
an extra cudaDeviceSynchronize). Around that, what a production runner needs and Polygraphy's TrtRunner (a
debugging tool by its own docstring; sertrt keeps it for `build-engine` and comparisons) does not do:
device buffers allocated once for the profile's maximum and reused, pinned host staging (cudaMallocHost),
one copy in per input, one copy out per output, one stream synchronisation per call, and optionally one
CUDA graph per (batch, num_samples) shape, captured around `execute_async_v3` after that shape's first
call and replayed from then on (trtexec --useCudaGraph; the TensorRT developer guide's "CUDA Graphs":
enqueue once after a shape change, then capture). Device memory through `cuda.bindings.runtime`, never torch.

Audio longer than the profile's `max_samples` is scored in windows of `max_samples`, hop half a window,
the last one ending at the row's end; such a row's logits are the log of its windows' mean probability, so
softmax(logits) is exactly that mean (probabilities averaged, not logits: one confident window cannot
outvote the rest by its scale). Rows beyond the profile's `max_batch` run in several calls; a row that fits
the profile keeps its own logits, whatever else is in the batch.

The engine record beside the plan (`model.plan.json`) is checked first, so an engine built for another GPU
or TensorRT is refused in one line, and every feed is checked against the profile before TensorRT sees it.
Importing this module costs numpy; `tensorrt` and cuda-python are imported when a runner is entered.

NOT RUN AGAINST A REAL TENSORRT OR GPU: neither was available where this was written. Tests drive it with
fake `tensorrt` (shaped like 10.3, 10.13 and 11.x) and `cuda.bindings.runtime` modules that expose only
names the real bindings have (tests/test_trt_runner.py, against tests/data/*-names.txt.gz).
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.engine import check_engine_compatible, import_cudart, import_tensorrt, record_path
from ..core.errors import SertrtError
from ..core.metrics import softmax
from .stream import window_starts

# trt.DataType member name -> numpy: our own explicit table (names checked against the 10.3, 10.13 and 11 lists)
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}
WINDOWED = ("waveform", "lengths")  # the export contract's inputs: what long audio is windowed on


class TrtRunner:
    """Run a serialized TensorRT engine (`sertrt.core.runner.Runner`). Entering deserialises it and
    allocates the stream and buffers; leaving frees them. `cuda_graphs`: capture one CUDA graph per
    input shape and replay it."""

    def __init__(self, engine_path: str | Path, record: dict[str, Any] | None = None, *, cuda_graphs: bool = False):
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise SertrtError(f"TensorRT engine not found: {self.engine_path}")
        if record is None and record_path(self.engine_path).is_file():
            record = json.loads(record_path(self.engine_path).read_text(encoding="utf-8"))
        self.record, self.cuda_graphs = record, cuda_graphs
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
        """Rows cut into windows of at most max_samples (hop half a window, the last one ending at the row's
        end), max_batch windows a call. A row that fits keeps its logits; a longer one gets the log of its
        windows' mean probability. Which rows share a call changes nothing."""
        max_batch, width = self.profile["waveform"][2]
        width = min(width, wav.shape[1])
        if lengths.ndim != 1 or not all(1 <= v <= wav.shape[1] for v in lengths.tolist()):
            raise SertrtError(f"input 'lengths' must hold one count per row in 1 .. {wav.shape[1]}, got {lengths.tolist()!r:.80}")
        rows, spans = [], []
        for row, n in enumerate(int(v) for v in lengths):
            cuts = window_starts(n, width, max(width // 2, 1))  # as the stream cuts them
            rows += [row] * len(cuts)
            spans += [(a, b - a) for a, b in cuts]
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.output_names}
        for first in range(0, len(spans), max_batch):
            chunk = spans[first:first + max_batch]
            windows = np.zeros((len(chunk), width), dtype=wav.dtype)
            for i, ((s, k), row) in enumerate(zip(chunk, rows[first:first + max_batch])):
                windows[i, :k] = wav[row, s:s + k]
            for name, logits in self._run({"waveform": windows, "lengths": np.array([k for _, k in chunk], dtype=lengths.dtype)}).items():
                parts[name].append(logits)
        index = np.array(rows)
        result = {}
        for name, chunks in parts.items():
            logits = np.concatenate(chunks)
            out = np.empty((len(wav),) + logits.shape[1:], dtype=logits.dtype)
            for row in range(len(wav)):
                mine = logits[index == row].astype(np.float64)
                out[row] = mine[0] if len(mine) == 1 else np.log(softmax(mine).mean(axis=0))
            result[name] = out
        return result

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
