"""sertrt.export.tensorrt_engine and sertrt.runtime.trt_runner against fake `tensorrt` and `cudart`
modules that record every call (no TensorRT or GPU here): TensorRT 10.3 and 11.4 flavours."""

from __future__ import annotations

import ctypes
import enum
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import REPO, sertrt_env

from sertrt.core.engine import TRT_MISSING, record_path
from sertrt.core.errors import SertrtError
from sertrt.export.spec import Profile
from sertrt.export.tensorrt_engine import (
    EngineOptions,
    build_engine,
    check_engine_compatible,
    engine_record,
    trtexec_command,
)
from sertrt.runtime.trt_runner import TrtRunner

PROFILE = Profile(min_batch=1, opt_batch=2, max_batch=4, min_samples=400, opt_samples=16000, max_samples=64000)
GPU = ("NVIDIA Orin", 8, 7)


# ---------------------------------------------------------------- fake tensorrt
def fake_trt(version: str, calls: list, *, parse_ok=True, build_ok=True, cache_ok=True,
             inputs=("waveform", "lengths"), engine=None):
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    def rec(*call):
        calls.append(call)

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity):
            rec("Logger", severity)

    flags = {"TF32": 0, "REFIT": 1}
    if major == 10:
        flags.update(FP16=2, INT8=3)  # removed in 11
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", flags)
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.Logger = Logger

    class Network:
        num_inputs = len(inputs)

        def get_input(self, i):
            return types.SimpleNamespace(name=inputs[i])

    class Parser:
        num_errors = 0 if parse_ok else 5

        def __init__(self, network, logger):
            rec("OnnxParser")

        def parse(self, data, path=None):
            rec("parse", bytes(data), path)
            return parse_ok

        def get_error(self, i):
            return f"In node {i} (Gelu):\n  UNSUPPORTED_NODE: no importer"

    class Cache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+tuned"

    class Config:
        def __init__(self):
            if major == 10:
                self.int8_calibrator = None  # gone in 11

        def __setattr__(self, name, value):
            if name != "int8_calibrator":
                rec("config." + name, value)
            object.__setattr__(self, name, value)

        def set_memory_pool_limit(self, pool, size):
            rec("set_memory_pool_limit", pool, size)

        def set_flag(self, flag):
            rec("set_flag", flag)

        def add_optimization_profile(self, profile):
            rec("add_optimization_profile", profile)

        def create_timing_cache(self, data):
            rec("create_timing_cache", bytes(data))
            return Cache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            rec("set_timing_cache", cache.data, ignore_mismatch)
            return cache_ok

    class OptimizationProfile:
        def set_shape(self, name, min, opt, max):
            rec("set_shape", name, tuple(min), tuple(opt), tuple(max))

    class Builder:
        def __init__(self, logger):
            rec("Builder")

        def create_network(self, flags):
            rec("create_network", flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return OptimizationProfile()

        def build_serialized_network(self, network, config):
            rec("build_serialized_network")
            return b"PLAN-" + version.encode() if build_ok else None

    trt.Builder, trt.OnnxParser = Builder, Parser

    # runtime side
    trt.TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")
    trt.DataType = enum.Enum("DataType", "FLOAT HALF INT32 INT64 BF16")

    class Runtime:
        def __init__(self, logger):
            rec("Runtime")

        def deserialize_cuda_engine(self, plan):
            rec("deserialize_cuda_engine", bytes(plan))
            return engine

    trt.Runtime = Runtime
    return trt


@pytest.fixture
def calls():
    return []


def install(monkeypatch, trt, gpu=GPU):
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    cudart = FakeCudart(gpu)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda.bindings = bindings
    for name, mod in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, mod)
    return cudart


# ---------------------------------------------------------------- fake cudart: host-side "device" memory
class FakeCudart(types.ModuleType):
    cudaError_t = enum.Enum("cudaError_t", "cudaSuccess cudaErrorMemoryAllocation")
    cudaMemcpyKind = enum.Enum("cudaMemcpyKind", "cudaMemcpyHostToDevice cudaMemcpyDeviceToHost")

    def __init__(self, gpu):
        super().__init__("cuda.bindings.runtime")
        self.gpu, self.mem, self.calls, self.next_ptr = gpu, {}, [], 0x1000

    def ok(self, *values):
        return (self.cudaError_t.cudaSuccess, *values)

    def cudaGetDevice(self):
        return self.ok(0)

    def cudaGetDeviceProperties(self, device):
        name, major, minor = self.gpu
        return self.ok(types.SimpleNamespace(name=name.encode() + b"\0" * 8, major=major, minor=minor))

    def cudaStreamCreate(self):
        self.calls.append(("cudaStreamCreate",))
        return self.ok(77)

    def cudaStreamDestroy(self, stream):
        self.calls.append(("cudaStreamDestroy", stream))
        return self.ok()

    def cudaStreamSynchronize(self, stream):
        self.calls.append(("cudaStreamSynchronize", stream))
        return self.ok()

    def cudaMalloc(self, size):
        ptr, self.next_ptr = self.next_ptr, self.next_ptr + size + 0x100
        self.mem[ptr] = bytearray(size)
        self.calls.append(("cudaMalloc", size))
        return self.ok(ptr)

    def cudaFree(self, ptr):
        del self.mem[ptr]
        self.calls.append(("cudaFree", ptr))
        return self.ok()

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        assert stream == 77
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            self.mem[dst][:count] = ctypes.string_at(src, count)
        else:
            ctypes.memmove(dst, bytes(self.mem[src][:count]), count)
        return self.ok()


class FakeEngine:
    """waveform (B, N) float32 + lengths (B,) int64 -> logits (B, 4) float32 = [sum of the first
    lengths[b] samples, lengths[b], B, N]: enough to see data reach the "device" and come back."""

    tensors = {"waveform": ("INPUT", "FLOAT"), "lengths": ("INPUT", "INT64"), "logits": ("OUTPUT", "FLOAT")}

    def __init__(self, trt, calls, cudart):
        self.trt, self.calls, self.cudart = trt, calls, cudart
        self.num_io_tensors = len(self.tensors)

    def get_tensor_name(self, i):
        return list(self.tensors)[i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode[self.tensors[name][0]]

    def get_tensor_dtype(self, name):
        return self.trt.DataType[self.tensors[name][1]]

    def get_tensor_profile_shape(self, name, index):
        assert index == 0
        return PROFILE.shapes()[name]

    def create_execution_context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.engine.calls.append(("set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return (self.shapes["waveform"][0], 4)

    def set_tensor_address(self, name, ptr):
        self.engine.calls.append(("set_tensor_address", name))
        self.addresses[name] = ptr

    def execute_async_v3(self, stream):
        self.engine.calls.append(("execute_async_v3", stream))
        mem = self.engine.cudart.mem
        b, n = self.shapes["waveform"]
        wav = np.frombuffer(mem[self.addresses["waveform"]], np.float32, b * n).reshape(b, n)
        lengths = np.frombuffer(mem[self.addresses["lengths"]], np.int64, b)
        logits = np.stack([[wav[i, : lengths[i]].sum(), lengths[i], b, n] for i in range(b)]).astype(np.float32)
        mem[self.addresses["logits"]][: logits.nbytes] = logits.tobytes()
        return True


# ---------------------------------------------------------------- build side
def options(tmp_path, **kw):
    onnx = tmp_path / "model.onnx"
    if not onnx.exists():
        onnx.write_bytes(b"ONNX-BYTES")
    kw.setdefault("timing_cache", tmp_path / "timing.cache")
    return EngineOptions(onnx=onnx, out=tmp_path / "model.plan", precision="fp16", profile=PROFILE, **kw)


@pytest.mark.parametrize("version", ["10.3.0", "11.4.0"])
def test_build_call_sequence(tmp_path, monkeypatch, calls, version):
    trt = fake_trt(version, calls)
    install(monkeypatch, trt)
    opts = options(tmp_path, workspace_mb=1024, optimization_level=2)
    opts.timing_cache.write_bytes(b"OLD-CACHE")
    record = build_engine(opts)

    names = [c[0] for c in calls]
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if version.startswith("10") else 0
    assert ("create_network", strongly_typed) in calls  # 10.x opts in; 11.x: always on, no deprecated flag
    assert ("parse", b"ONNX-BYTES", str(opts.onnx)) in calls
    shapes = PROFILE.shapes()
    assert [c for c in calls if c[0] == "set_shape"] == [
        ("set_shape", "waveform", (1, 400), (2, 16000), (4, 64000)),
        ("set_shape", "lengths", (1,), (2,), (4,)),
    ]
    assert shapes["waveform"] == ((1, 400), (2, 16000), (4, 64000))
    assert ("set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 1024 << 20) in calls
    assert ("config.builder_optimization_level", 2) in calls
    assert ("create_timing_cache", b"OLD-CACHE") in calls
    assert ("set_timing_cache", b"OLD-CACHE", False) in calls
    assert "set_flag" not in names  # never FP16/INT8: precision lives in the ONNX
    assert names.index("parse") < names.index("set_shape") < names.index("build_serialized_network")
    assert names.index("set_timing_cache") < names.index("build_serialized_network")

    assert opts.out.read_bytes() == b"PLAN-" + version.encode()
    assert opts.timing_cache.read_bytes() == b"OLD-CACHE+tuned"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    on_disk = json.loads(record_path(opts.out).read_text())
    assert on_disk == record
    assert record["tensorrt_version"] == version
    assert record["gpu_name"] == "NVIDIA Orin" and record["compute_capability"] == "8.7"
    assert record["precision"] == "fp16" and record["strongly_typed"] is True
    assert record["profile_shapes"] == {"waveform": [[1, 400], [2, 16000], [4, 64000]], "lengths": [[1], [2], [4]]}
    assert record["sertrt_version"] and len(record["onnx_sha256"]) == 64 and record["engine"] == "model.plan"
    assert "--fp16" not in record["trtexec"]


def test_new_timing_cache_starts_empty(tmp_path, monkeypatch, calls):
    install(monkeypatch, fake_trt("11.4.0", calls))
    opts = options(tmp_path)
    build_engine(opts)
    assert ("create_timing_cache", b"") in calls
    assert opts.timing_cache.read_bytes() == b"+tuned"


def test_failed_build_leaves_existing_engine(tmp_path, monkeypatch, calls):
    install(monkeypatch, fake_trt("10.3.0", calls, build_ok=False))
    opts = options(tmp_path)
    opts.out.write_bytes(b"GOOD-OLD-PLAN")
    with pytest.raises(SertrtError, match="failed to build"):
        build_engine(opts)
    assert opts.out.read_bytes() == b"GOOD-OLD-PLAN"
    assert not record_path(opts.out).exists() and not opts.timing_cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.plan"]


def test_parser_errors_one_line(tmp_path, monkeypatch, calls):
    install(monkeypatch, fake_trt("10.3.0", calls, parse_ok=False))
    with pytest.raises(SertrtError) as e:
        build_engine(options(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "could not parse" in msg and "In node 0 (Gelu): UNSUPPORTED_NODE" in msg
    assert "2 more" in msg and "build_serialized_network" not in [c[0] for c in calls]


def test_wrong_inputs_and_options_refused(tmp_path, monkeypatch, calls):
    install(monkeypatch, fake_trt("11.4.0", calls, inputs=("input_values",)))
    with pytest.raises(SertrtError, match="expect"):
        build_engine(options(tmp_path))
    with pytest.raises(SertrtError, match="precision"):
        build_engine(EngineOptions(tmp_path / "model.onnx", tmp_path / "x.plan", "bf16", PROFILE))
    with pytest.raises(SertrtError, match="not found"):
        build_engine(EngineOptions(tmp_path / "missing.onnx", tmp_path / "x.plan", "fp32", PROFILE))


def test_int8_dynamic_refused_before_tensorrt(tmp_path, monkeypatch, calls):
    """The ONNX Runtime CPU artifact (DynamicQuantizeLinear/MatMulInteger) is not TensorRT's INT8 format."""
    install(monkeypatch, fake_trt("10.3.0", calls))
    opts = options(tmp_path)
    opts.precision = "int8-dynamic"
    with pytest.raises(SertrtError) as e:
        build_engine(opts)
    msg = str(e.value)
    assert "\n" not in msg and "TensorRT takes the `int8` (QDQ) bundle" in msg and "MatMulInteger" in msg
    assert calls == [] and not opts.out.exists()  # refused before TensorRT was touched
    with pytest.raises(SertrtError, match="TensorRT takes the `int8`"):
        trtexec_command("m.onnx", "m.plan", PROFILE, "int8-dynamic", 10)


def test_build_engine_command_refuses_int8_dynamic_bundle(tmp_path):
    from dataclasses import asdict

    from sertrt.core.bundle import BundleCard, write_bundle

    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "model.onnx").write_bytes(b"ONNX-BYTES")
    card = BundleCard(precision="int8-dynamic", model="model.onnx", labels=("neutral", "happy", "angry", "sad"),
                      sample_rate=16000, spec={"window_seconds": 2.0, "hop_seconds": 0.5, "profile": asdict(PROFILE)})
    bundle = write_bundle(tmp_path / "bundle", staged, card)
    r = subprocess.run([sys.executable, "-m", "sertrt", "build-engine", str(bundle)], capture_output=True, text=True,
                       env=sertrt_env(), cwd=REPO, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "TensorRT takes the `int8` (QDQ) bundle" in lines[0]
    assert not (bundle / "model.plan").exists()


def test_timing_cache_mismatch_refused(tmp_path, monkeypatch, calls):
    install(monkeypatch, fake_trt("10.3.0", calls, cache_ok=False))
    with pytest.raises(SertrtError, match="timing cache"):
        build_engine(options(tmp_path))


def test_old_tensorrt_refused(tmp_path, monkeypatch, calls):
    install(monkeypatch, fake_trt("8.6.2", calls))
    with pytest.raises(SertrtError, match="TensorRT 10 or newer"):
        build_engine(options(tmp_path))


def test_missing_tensorrt_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(SertrtError) as e:
        build_engine(options(tmp_path))
    assert str(e.value) == TRT_MISSING and "\n" not in TRT_MISSING
    assert "python3-libnvinfer" in TRT_MISSING and "pip install tensorrt" in TRT_MISSING
    with pytest.raises(SertrtError, match="TensorRT Python bindings not found"):
        engine_record()


def test_check_engine_compatible(monkeypatch, calls):
    install(monkeypatch, fake_trt("10.3.0", calls))
    record = engine_record("fp16", PROFILE)
    check_engine_compatible(record)  # same machine: fine
    check_engine_compatible({**record, "tensorrt_version": "10.3"})  # same version, other spelling
    for changed, words in (({"tensorrt_version": "10.16.1"}, ["TensorRT 10.16.1", "here 10.3.0"]),
                           ({"gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
                            ["GPU NVIDIA H100 80GB HBM3 (here NVIDIA Orin)", "compute capability 9.0 (here 8.7)"])):
        with pytest.raises(SertrtError) as e:
            check_engine_compatible({**record, **changed})
        assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_gpu_identity_falls_back_to_nvidia_smi(monkeypatch, calls):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("11.4.0", calls))
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.setitem(sys.modules, name, None)

    def run(cmd, **kw):
        assert cmd[0] == "nvidia-smi"
        return subprocess.CompletedProcess(cmd, 0, stdout="NVIDIA H100 80GB HBM3, 9.0\n")

    monkeypatch.setattr(subprocess, "run", run)
    record = engine_record()
    assert (record["gpu_name"], record["compute_capability"]) == ("NVIDIA H100 80GB HBM3", "9.0")

    def missing(cmd, **kw):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(subprocess, "run", missing)  # JetPack 6: no nvidia-smi, no cuda-python
    assert engine_record()["gpu_name"] is None
    check_engine_compatible({"tensorrt_version": "11.4.0", "gpu_name": "NVIDIA Orin", "compute_capability": "8.7"})


@pytest.mark.parametrize("major", [10, 11])
def test_trtexec_command(major):
    cmd = trtexec_command("m fp16.onnx", "model.plan", PROFILE, "fp16", major, timing_cache="tc.bin")
    assert cmd.startswith("trtexec '--onnx=m fp16.onnx' --saveEngine=model.plan ")
    assert "--minShapes=waveform:1x400,lengths:1" in cmd
    assert "--optShapes=waveform:2x16000,lengths:2" in cmd
    assert "--maxShapes=waveform:4x64000,lengths:4" in cmd
    assert "--memPoolSize=workspace:2048" in cmd and "--timingCacheFile=tc.bin" in cmd
    for flag in ("--fp16", "--int8", "--best"):
        assert flag not in cmd
    assert ("--stronglyTyped" in cmd) == (major == 10)
    for precision in ("fp32", "int8"):
        assert "--int8" not in trtexec_command("m.onnx", "m.plan", PROFILE, precision, major)
    with pytest.raises(SertrtError):
        trtexec_command("m.onnx", "m.plan", PROFILE, "fp16", 8)


# ---------------------------------------------------------------- run side
@pytest.fixture
def runner_env(tmp_path, monkeypatch, calls):
    engine = FakeEngine(None, calls, None)
    trt = fake_trt("10.3.0", calls, engine=engine)
    cudart = install(monkeypatch, trt)
    engine.trt, engine.cudart = trt, cudart
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"PLAN")
    return plan, cudart


def test_runner_infer(runner_env, calls):
    plan, cudart = runner_env
    wav = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32)
    lengths = np.array([16000, 9000])  # int64 on Linux; int32 would be cast ("same_kind")
    with TrtRunner(plan) as runner:
        assert runner.input_names == ["waveform", "lengths"] and runner.output_names == ["logits"]
        assert ("deserialize_cuda_engine", b"PLAN") in calls
        out = runner.infer({"waveform": wav, "lengths": lengths.astype(np.int32)})
        logits = out["logits"]
        assert logits.shape == (2, 4) and logits.dtype == np.float32
        np.testing.assert_allclose(logits[:, 0], [wav[0].sum(), wav[1, :9000].sum()], rtol=1e-4)
        np.testing.assert_array_equal(logits[:, 1:], [[16000, 2, 16000], [9000, 2, 16000]])
        assert [c for c in calls if c[0] == "set_input_shape"] == [
            ("set_input_shape", "waveform", (2, 16000)), ("set_input_shape", "lengths", (2,))]
        assert {c[1] for c in calls if c[0] == "set_tensor_address"} == {"waveform", "lengths", "logits"}
        assert calls[-1] == ("execute_async_v3", 77)
        assert cudart.calls[-1] == ("cudaStreamSynchronize", 77)

        mallocs = sum(c[0] == "cudaMalloc" for c in cudart.calls)
        runner.infer({"waveform": wav[:1, :8000], "lengths": lengths[:1] // 2})  # fits: buffers reused
        assert sum(c[0] == "cudaMalloc" for c in cudart.calls) == mallocs
        out = runner.infer({"waveform": np.ones((4, 64000), np.float32), "lengths": np.full(4, 64000)})  # grows
        assert sum(c[0] == "cudaMalloc" for c in cudart.calls) > mallocs
        np.testing.assert_array_equal(out["logits"][:, 0], 64000)
    assert cudart.mem == {} and ("cudaStreamDestroy", 77) in cudart.calls  # everything freed on exit


@pytest.mark.parametrize("shape", [(1, 100), (5, 16000), (1, 64001), (16000,)])
def test_runner_refuses_out_of_profile_before_tensorrt(runner_env, calls, shape):
    plan, _ = runner_env
    with TrtRunner(plan) as runner:
        with pytest.raises(SertrtError) as e:
            runner.infer({"waveform": np.zeros(shape, np.float32), "lengths": np.ones(shape[:1], np.int64)})
    msg = str(e.value)
    assert "\n" not in msg and "'waveform'" in msg and str(shape) in msg and "(1, 400) .. (4, 64000)" in msg
    assert not [c for c in calls if c[0] in ("set_input_shape", "set_tensor_address", "execute_async_v3")]


def test_runner_refuses_bad_feeds(runner_env):
    plan, _ = runner_env
    with TrtRunner(plan) as runner:
        with pytest.raises(SertrtError, match="engine inputs are"):
            runner.infer({"waveform": np.zeros((1, 800), np.float32)})
        with pytest.raises(SertrtError, match="must be int64"):
            runner.infer({"waveform": np.zeros((1, 800), np.float32), "lengths": np.ones(1, np.float32)})
    with pytest.raises(RuntimeError, match="active runner"):
        runner.infer({})


def test_runner_checks_record_beside_engine(runner_env, monkeypatch):
    plan, _ = runner_env
    record = engine_record("fp32", PROFILE)
    record_path(plan).write_text(json.dumps({**record, "tensorrt_version": "11.4.0"}))
    with pytest.raises(SertrtError, match="TensorRT 11.4.0 \\(here 10.3.0\\)"):
        TrtRunner(plan)
    with pytest.raises(SertrtError, match="GPU Thor"):
        TrtRunner(plan, record={**record, "gpu_name": "Thor"})
    record_path(plan).write_text(json.dumps(record))
    with TrtRunner(plan) as runner:
        assert runner.output_names == ["logits"]


def test_runner_refuses_dtype_numpy_cannot_hold(runner_env, monkeypatch):
    plan, cudart = runner_env
    monkeypatch.setitem(FakeEngine.tensors, "logits", ("OUTPUT", "BF16"))
    with pytest.raises(SertrtError, match="'logits' has a dtype numpy cannot hold"):
        TrtRunner(plan).__enter__()
    assert cudart.calls == []  # nothing allocated, nothing leaked


def test_runner_missing_cuda_python(runner_env, monkeypatch):
    plan, _ = runner_env
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(SertrtError, match="pip install cuda-python"):
        TrtRunner(plan).__enter__()


def test_runtime_import_is_torch_free():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import sertrt.runtime.trt_runner\n"
            "heavy = [m for m in ('torch', 'tensorrt', 'cuda', 'onnx', 'onnxruntime') if sys.modules.get(m)]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=sertrt_env())
