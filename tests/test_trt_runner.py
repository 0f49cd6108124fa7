"""sertrt.runtime.trt_runner on fake `tensorrt` modules (10.3, 10.13, 11.x: tests/test_tensorrt_engine.py) and a
fake `cuda.bindings.runtime` that records every call, both exposing only names the real bindings have (the
TensorRT lists there, cuda-bindings' in tests/data/cuda-bindings-runtime-names.txt.gz, written by
scripts/cuda_runtime_names.py). Host memory stands in for the device: a copy is a memmove, enqueued work
runs at once unless the stream is capturing, and then it runs when the captured graph is launched."""

from __future__ import annotations

import ctypes
import enum
import functools
import gzip
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import REPO, sertrt_env
from test_tensorrt_engine import GPU, PROFILE, TRT, FakeContext, exposed_names, fake_logits, install

from sertrt.core.engine import CUDA_PYTHON_MISSING, record_path
from sertrt.core.errors import SertrtError
from sertrt.export.tensorrt_engine import engine_record
from sertrt.runtime.trt_runner import TrtRunner


class FakeGpu:
    """The state behind the fake cuda runtime: allocations, streams, captures, and every call in order."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.memory: dict[int, ctypes.Array] = {}
        self.capturing: dict[int, list] = {}  # stream handle -> work captured so far

    def alloc(self, what, size):
        buf = ctypes.create_string_buffer(size)
        self.memory[ctypes.addressof(buf)] = buf
        self.calls.append((what, size))
        return ctypes.addressof(buf)

    def enqueue(self, stream_handle, work):
        if stream_handle in self.capturing:
            self.capturing[stream_handle].append(work)
        else:
            work()
        return True

    def module(self) -> types.ModuleType:
        cudart = types.ModuleType("cuda.bindings.runtime")
        err = cudart.cudaError_t = enum.Enum("cudaError_t", "cudaSuccess cudaErrorMemoryAllocation")
        ok = err.cudaSuccess
        cudart.cudaMemcpyKind = enum.Enum("cudaMemcpyKind", "cudaMemcpyHostToDevice cudaMemcpyDeviceToHost")
        cudart.cudaStreamCaptureMode = enum.Enum("cudaStreamCaptureMode", "cudaStreamCaptureModeGlobal "
                                                 "cudaStreamCaptureModeThreadLocal cudaStreamCaptureModeRelaxed")
        gpu = self

        class Stream:  # cudaStream_t: an opaque handle that int() reads
            def __init__(self, handle):
                self.handle = handle

            def __int__(self):
                return self.handle

        def record(name, *args):
            gpu.calls.append((name, *args))

        def cudaStreamCreate():
            record("cudaStreamCreate")
            return ok, Stream(0x5EED)

        def cudaMemcpyAsync(dst, src, count, kind, stream):
            record("cudaMemcpyAsync", kind.name, int(stream), count)
            gpu.enqueue(int(stream), lambda: ctypes.memmove(int(dst), int(src), count))
            return (ok,)

        def cudaStreamBeginCapture(stream, mode):
            record("cudaStreamBeginCapture", int(stream), mode.name)
            gpu.capturing[int(stream)] = []
            return (ok,)

        def cudaStreamEndCapture(stream):
            record("cudaStreamEndCapture", int(stream))
            return ok, gpu.capturing.pop(int(stream))

        def cudaGraphLaunch(graph, stream):
            record("cudaGraphLaunch", int(stream))
            for work in graph:
                gpu.enqueue(int(stream), work)
            return (ok,)

        functions = {
            "cudaStreamCreate": cudaStreamCreate, "cudaMemcpyAsync": cudaMemcpyAsync,
            "cudaStreamBeginCapture": cudaStreamBeginCapture, "cudaStreamEndCapture": cudaStreamEndCapture,
            "cudaGraphLaunch": cudaGraphLaunch,
            "cudaMalloc": lambda size: (ok, gpu.alloc("cudaMalloc", size)),
            "cudaMallocHost": lambda size: (ok, gpu.alloc("cudaMallocHost", size)),
            "cudaGraphInstantiate": lambda graph, flags: (record("cudaGraphInstantiate"), (ok, tuple(graph)))[1],
            "cudaStreamSynchronize": lambda stream: (record("cudaStreamSynchronize", int(stream)), (ok,))[1],
            "cudaGraphDestroy": lambda graph: (ok,),
            "cudaGraphExecDestroy": lambda graph: (record("cudaGraphExecDestroy"), (ok,))[1],
            "cudaFree": lambda ptr: (record("cudaFree"), (ok,))[1],
            "cudaFreeHost": lambda ptr: (record("cudaFreeHost"), (ok,))[1],
            "cudaStreamDestroy": lambda stream: (record("cudaStreamDestroy"), (ok,))[1],
            "cudaGetDevice": lambda: (ok, 0),
            "cudaGetDeviceProperties": lambda device: (ok, types.SimpleNamespace(
                name=GPU[0].encode() + b"\0" * 8, major=GPU[1], minor=GPU[2])),
        }
        for name, f in functions.items():
            setattr(cudart, name, f)
        return cudart


@functools.cache
def cuda_runtime_names() -> frozenset[str]:
    with gzip.open(REPO / "tests" / "data" / "cuda-bindings-runtime-names.txt.gz", "rt", encoding="utf-8") as f:
        return frozenset(line.strip() for line in f if line.strip() and not line.startswith("#"))


@pytest.fixture(params=list(TRT.values()), ids=list(TRT))
def gpu(request, tmp_path, monkeypatch):
    install(monkeypatch, request.param, [])
    gpu = FakeGpu()
    cudart = gpu.module()
    # a fake that invents a cuda-python call would let the runner call something cuda-bindings does not have
    assert exposed_names(cudart) - cuda_runtime_names() == set()
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    monkeypatch.setattr(sys.modules["cuda.bindings"], "runtime", cudart)
    monkeypatch.setattr(FakeContext, "_gpu", gpu)
    gpu.plan = tmp_path / "model.plan"
    gpu.plan.write_bytes(b"PLAN")
    return gpu


def names(calls, *which):
    return [c for c in calls if c[0] in which]


def test_runner_call_order_and_buffer_reuse(gpu):
    rng = np.random.default_rng(0)
    with TrtRunner(gpu.plan) as runner:
        assert runner.input_names == ["waveform", "lengths"] and runner.output_names == ["logits"]
        setup = list(gpu.calls)
        # buffers for the profile's maximum: (4, 64000) float32, (4,) int64, logits (4, 4) float32; device and pinned
        assert sorted(c[1] for c in names(setup, "cudaMalloc")) == sorted(c[1] for c in names(setup, "cudaMallocHost")) \
            == sorted([4 * 64000 * 4, 4 * 8, 4 * 4 * 4])
        order = [c[0] for c in setup if c[0] in ("set_input_shape", "set_tensor_address")]
        assert order == ["set_input_shape"] * 2 + ["set_tensor_address"] * 3  # shapes first, then addresses
        assert names(setup, "set_input_shape") == [("set_input_shape", "waveform", (4, 64000)), ("set_input_shape", "lengths", (4,))]

        results = []
        for shape, lengths in (((2, 16000), [16000, 9000]), ((4, 64000), [64000] * 4), ((2, 16000), [100, 16000])):
            wav = rng.standard_normal(shape).astype(np.float32)
            before = len(gpu.calls)
            out = runner.infer({"waveform": wav, "lengths": np.array(lengths, dtype=np.int32)})  # int32 is cast
            call = gpu.calls[before:]
            assert [c[0] for c in call] == ["set_input_shape", "cudaMemcpyAsync", "set_input_shape", "cudaMemcpyAsync",
                                            "execute_async_v3", "ran", "cudaMemcpyAsync", "cudaStreamSynchronize"]
            assert call[4] == ("execute_async_v3", 0x5EED, shape)  # on our stream, never the default one
            assert [c[1:3] for c in names(call, "cudaMemcpyAsync")] == [("cudaMemcpyHostToDevice", 0x5EED)] * 2 + [
                ("cudaMemcpyDeviceToHost", 0x5EED)]
            assert names(call, "cudaMemcpyAsync")[-1][3] == shape[0] * 4 * 4  # only the rows there are come back
            np.testing.assert_allclose(out["logits"], fake_logits(wav, np.array(lengths)), rtol=1e-5)
            results.append(out["logits"])
        np.testing.assert_allclose(results[0][:, 1], [16000 / 64000, 9000 / 64000])  # what we handed out is ours
        assert not names(gpu.calls[len(setup):], "cudaMalloc", "cudaMallocHost")  # allocated once, reused
    assert len(names(gpu.calls, "cudaFree")) == len(names(gpu.calls, "cudaFreeHost")) == 3
    assert gpu.calls[-1] == ("cudaStreamDestroy",)


def test_cuda_graph_captured_once_per_shape_then_replayed(gpu):
    rng = np.random.default_rng(1)
    shapes = [(2, 16000), (2, 16000), (1, 8000), (2, 16000), (1, 8000), (2, 16000)]
    with TrtRunner(gpu.plan, cuda_graphs=True) as runner:
        for i, shape in enumerate(shapes):
            wav = rng.standard_normal(shape).astype(np.float32)  # new data each call: a replay reads it
            lengths = np.full(shape[0], shape[1] - i, dtype=np.int64)
            before = len(gpu.calls)
            out = runner.infer({"waveform": wav, "lengths": lengths})
            np.testing.assert_allclose(out["logits"], fake_logits(wav, lengths), rtol=1e-5)
            call = gpu.calls[before:]
            first = shape not in shapes[:i]
            assert bool(names(call, "cudaStreamBeginCapture")) == first  # captured after the shape's first call
            assert bool(names(call, "cudaGraphLaunch")) == (not first)  # replayed from then on
            assert len(names(call, "cudaStreamSynchronize")) == 1
        assert len(runner.graphs) == 2
    assert names(gpu.calls, "cudaStreamBeginCapture")[0][2] == "cudaStreamCaptureModeThreadLocal"
    assert len(names(gpu.calls, "cudaGraphExecDestroy")) == 2


def test_no_graph_without_the_option(gpu):
    with TrtRunner(gpu.plan) as runner:
        for _ in range(3):
            runner.infer({"waveform": np.ones((1, 8000), np.float32), "lengths": np.array([8000])})
    assert not names(gpu.calls, "cudaStreamBeginCapture", "cudaGraphLaunch")


def test_long_audio_is_scored_in_windows_inside_the_profile(gpu):
    """100000 samples against a profile of at most 64000: windows of 64000, hop 32000, the last one ending at the
    row's end; the row's logits are the log of the windows' mean probability. A row that fits keeps its logits."""
    rng = np.random.default_rng(2)
    wav = rng.standard_normal((2, 100000)).astype(np.float32)
    lengths = np.array([100000, 30000])
    with TrtRunner(gpu.plan) as runner:
        out = runner.infer({"waveform": wav, "lengths": lengths})["logits"]
    ran = names(gpu.calls, "ran")
    assert [r[1] for r in ran] == [(4, 64000)] and ran[0][2] == [64000, 64000, 64000, 30000]
    starts = [0, 32000, 36000]
    np.testing.assert_allclose(ran[0][3], [wav[0, s:s + 64000].sum() for s in starts] + [wav[1, :30000].sum()], rtol=1e-4)
    windows = np.stack([wav[0, s:s + 64000] for s in starts] + [np.pad(wav[1, :30000], (0, 34000))])
    logits = fake_logits(windows, np.array([64000, 64000, 64000, 30000])).astype(np.float64)
    p = np.exp(logits[:3]) / np.exp(logits[:3]).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out[0], np.log(p.mean(axis=0)), rtol=1e-5)
    np.testing.assert_allclose(out[1], logits[3], rtol=1e-5)
    e = np.exp(out[0] - out[0].max())
    np.testing.assert_allclose(e / e.sum(), p.mean(axis=0), rtol=1e-5)  # softmax(logits) is the mean probability


def test_a_batch_beyond_the_profile_runs_in_calls_and_each_row_keeps_its_logits(gpu):
    wav = np.random.default_rng(3).standard_normal((6, 16000)).astype(np.float32)
    lengths = np.array([16000, 9000, 16000, 400, 12000, 16000])
    with TrtRunner(gpu.plan) as runner:
        whole = runner.infer({"waveform": wav, "lengths": lengths})["logits"]
        alone = np.concatenate([runner.infer({"waveform": wav[i:i + 1], "lengths": lengths[i:i + 1]})["logits"]
                                for i in range(6)])
    assert [r[1] for r in names(gpu.calls, "ran")][:2] == [(4, 16000), (2, 16000)]
    np.testing.assert_allclose(whole[:, :2], alone[:, :2], rtol=1e-5)  # columns 2, 3 report the call's own shape


@pytest.mark.parametrize("shape", [(1, 100), (16000,)])
def test_runner_refuses_out_of_profile_before_tensorrt(gpu, shape):
    with TrtRunner(gpu.plan) as runner:
        with pytest.raises(SertrtError) as e:
            runner.infer({"waveform": np.zeros(shape, np.float32), "lengths": np.ones(shape[:1], np.int64)})
    msg = str(e.value)
    assert "\n" not in msg and "'waveform'" in msg and str(shape) in msg and "(1, 400) .. (4, 64000)" in msg
    assert not names(gpu.calls, "execute_async_v3")


def test_runner_refuses_bad_feeds(gpu):
    with TrtRunner(gpu.plan) as runner:
        with pytest.raises(SertrtError, match="engine inputs are"):
            runner.infer({"waveform": np.zeros((1, 800), np.float32)})
        with pytest.raises(SertrtError, match="must be int64"):
            runner.infer({"waveform": np.zeros((1, 800), np.float32), "lengths": np.ones(1, np.float32)})
        with pytest.raises(SertrtError, match="'lengths' must hold one count per row in 1 .. 70000"):
            runner.infer({"waveform": np.zeros((1, 70000), np.float32), "lengths": np.array([80000])})
    with pytest.raises(RuntimeError, match="active runner"):
        runner.infer({})


def test_runner_checks_record_beside_engine(gpu):
    record = engine_record("fp32", PROFILE)
    record_path(gpu.plan).write_text(json.dumps({**record, "tensorrt_version": "10.16.1"}))
    with pytest.raises(SertrtError, match=r"TensorRT 10.16.1 \(here "):
        TrtRunner(gpu.plan)
    with pytest.raises(SertrtError, match="GPU Thor"):
        TrtRunner(gpu.plan, record={**record, "gpu_name": "Thor"})
    record_path(gpu.plan).write_text(json.dumps(record))
    with TrtRunner(gpu.plan) as runner:
        assert runner.output_names == ["logits"]


def test_runner_refuses_dtype_numpy_cannot_hold(gpu, monkeypatch):
    from test_tensorrt_engine import FakeEngine

    monkeypatch.setitem(FakeEngine._tensors, "logits", ("OUTPUT", "BF16"))
    with pytest.raises(SertrtError, match="'logits' has a dtype numpy cannot hold"):
        with TrtRunner(gpu.plan):
            pass
    assert gpu.calls[-1] == ("cudaStreamDestroy",)  # what was allocated is released


def test_an_engine_tensorrt_cannot_load_is_one_line(gpu):
    gpu.plan.write_bytes(b"FOREIGN PLAN")
    with pytest.raises(SertrtError) as e:
        with TrtRunner(gpu.plan):
            pass
    assert "\n" not in str(e.value) and "could not load this engine" in str(e.value) and "rebuild it" in str(e.value)
    assert not names(gpu.calls, "cudaMalloc", "cudaStreamCreate")


def test_missing_cuda_python_is_one_line(gpu, monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SertrtError) as e:
        with TrtRunner(gpu.plan):
            pass
    assert str(e.value) == CUDA_PYTHON_MISSING and "\n" not in CUDA_PYTHON_MISSING and "pip install" in CUDA_PYTHON_MISSING


def test_runtime_import_is_torch_and_polygraphy_free():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['polygraphy'] = None\n"
            "import sertrt.runtime.trt_runner, sertrt.runtime.runners\n"
            "heavy = [m for m in ('torch', 'tensorrt', 'cuda', 'onnx', 'onnxruntime') if sys.modules.get(m)]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=sertrt_env())
