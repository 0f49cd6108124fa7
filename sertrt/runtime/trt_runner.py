"""TensorRT runner: names in, names out, numpy at the boundary, on Polygraphy's TrtRunner.

    with TrtRunner("bundle/model.plan") as runner:
        out = runner.infer({"waveform": wav, "lengths": lengths})   # wav (B, num_samples) float32
        logits = out["logits"]                                      # (B, num_labels) float32

NVIDIA's Polygraphy does the TensorRT work (deserialising, the execution context, device buffers, the
stream, `execute_async_v3`); around it we keep what is ours: the engine record beside the plan
(`model.plan.json`) is checked first, so an engine built for another GPU or TensorRT is refused in one
line instead of a TensorRT crash, and every feed is checked against the engine's profile before
TensorRT sees it. Import cost is numpy only: Polygraphy imports `tensorrt` lazily, when a runner is
entered; never torch.

NOT RUN AGAINST A REAL TENSORRT OR GPU: no TensorRT or GPU was available where this was written. Tests
drive it with a stand-in for Polygraphy's TrtRunner and fake `tensorrt` modules shaped like 10.3, 10.13
and 11.x, each exposing only names its version's bindings have (tests/test_tensorrt_engine.py). Nothing
here differs between those versions (docs/tensorrt-api-versions.md), so the runner does not branch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.engine import (
    check_engine_compatible,
    import_polygraphy_trt,
    import_tensorrt,
    record_path,
)
from ..core.errors import SertrtError

# trt.DataType member name -> numpy: our own explicit table (trt.nptype has INT64 in every 10.x and 11.x release, but
# names checked here are what the fakes and the 10.3, 10.13 and 11 name lists test).
NUMPY_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}


class TrtRunner:
    """Run a serialized TensorRT engine (`sertrt.core.runner.Runner`). Entering deserialises it and
    activates Polygraphy's runner (context, stream, buffers); leaving frees them."""

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
        self._runner: Any = None

    def __enter__(self) -> TrtRunner:
        trt = import_tensorrt()
        poly, failure = import_polygraphy_trt()
        runner = poly.TrtRunner(poly.EngineFromBytes(self.engine_path.read_bytes()), name=self.engine_path.name)
        try:
            runner.activate()
        except failure as e:
            raise SertrtError(f"{self.engine_path}: TensorRT {trt.__version__} could not load this engine "
                              f"({str(e).splitlines()[0] if str(e) else 'see the messages above'}); rebuild it on this machine") from None
        self._runner = runner
        try:
            engine = runner.engine
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
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            self._runner.deactivate()
        self._runner = None
        self.input_names, self.output_names = [], []

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
        """{input name: array} -> {output name: array on the host}; blocks until the results are there."""
        if self._runner is None:
            raise RuntimeError("TrtRunner.infer() needs an active runner: `with TrtRunner(path) as runner:`")
        outputs = self._runner.infer(self._check_feeds(feeds))
        # Polygraphy reuses its host buffers from one call to the next: copy what we hand out
        return {name: np.array(outputs[name], copy=True) for name in self.output_names}
