"""sertrt.export.tensorrt_engine (no TensorRT or GPU here): our code around NVIDIA's Polygraphy, driven with a
stand-in for `polygraphy.backend.trt` that records what it is given and fake `tensorrt` modules shaped like
TensorRT 10.3 (JetPack 6), 10.13 and 11.x where those differ (docs/tensorrt-api-versions.md), each exposing
only names its version's compiled bindings have (checked below, against tests/data/tensorrt-{10.3,10.13,11}-
names.txt.gz, written by scripts/tensorrt_names.py). The same fakes run engines in tests/test_trt_runner.py."""

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
from packaging.version import Version
from polygraphy.exception import PolygraphyException

from sertrt.core.engine import POLYGRAPHY_MISSING, TRT_MISSING, check_engine_compatible, environment, record_path
from sertrt.core.errors import SertrtError
from sertrt.export.spec import Profile
from sertrt.export.tensorrt_engine import EngineOptions, build_engine, engine_record, trtexec_command

PROFILE = Profile(min_batch=1, opt_batch=2, max_batch=4, min_samples=400, opt_samples=16000, max_samples=64000)
GPU = ("NVIDIA Orin", 8, 7)
# The TensorRT versions the fakes are shaped like: name list (tests/data/tensorrt-KEY-names.txt.gz) -> __version__
TRT = {"10.3": "10.3.0.30", "10.13": "10.13.0.35", "11": "11.4.0.106"}  # 10.3.0.30: JetPack 6's


# ---------------------------------------------------------------- fake tensorrt: only real names, per version
class FakeEngine:
    """trt.ICudaEngine as TrtRunner reads it: waveform (B, N) float32 + lengths (B,) int64 -> logits (B, 4)."""

    _tensors = {"waveform": ("INPUT", "FLOAT"), "lengths": ("INPUT", "INT64"), "logits": ("OUTPUT", "FLOAT")}

    def __init__(self, trt):
        self._trt = trt

    @property
    def num_io_tensors(self):
        return len(self._tensors)

    def get_tensor_name(self, index):
        return list(self._tensors)[index]

    def get_tensor_mode(self, name):
        return self._trt.TensorIOMode[self._tensors[name][0]]

    def get_tensor_dtype(self, name):
        return self._trt.DataType[self._tensors[name][1]]

    def get_tensor_profile_shape(self, name, profile_index):
        assert profile_index == 0
        return PROFILE.shapes()[name]

    def create_execution_context(self):
        return self._trt.IExecutionContext(self)


def fake_logits(wav: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """What the fake engine computes: [sum of the first lengths[b] samples / 1000, lengths[b] / 64000, B / 4,
    N / 64000] per row, enough to see the feeds reach the engine and come back."""
    b, n = wav.shape
    return np.array([[wav[i, : lengths[i]].sum() / 1000, lengths[i] / 64000, b / 4, n / 64000] for i in range(b)],
                    dtype=np.float32)


def _at(address: int, shape: tuple, dtype) -> np.ndarray:
    """A numpy view of memory the fake cuda runtime handed out (real host memory standing in for the device)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.ctypeslib.as_array((ctypes.c_byte * nbytes).from_address(address)).view(dtype).reshape(shape)


class FakeContext:
    """trt.IExecutionContext: reads its inputs at the addresses it was given and writes the logits there, as work
    on the fake GPU's stream (`_gpu`, set by tests/test_trt_runner.py): a captured CUDA graph replays it."""

    _gpu = None

    def __init__(self, engine):
        self._shapes, self._addresses = {}, {}

    def set_input_shape(self, name, shape):
        self._gpu.calls.append(("set_input_shape", name, tuple(shape)))
        self._shapes[name] = tuple(int(d) for d in shape)
        return True

    def get_tensor_shape(self, name):
        return (self._shapes["waveform"][0], 4) if name == "logits" else self._shapes[name]

    def set_tensor_address(self, name, memory):
        self._gpu.calls.append(("set_tensor_address", name))
        self._addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle):
        (b, n), at = self._shapes["waveform"], dict(self._addresses)
        self._gpu.calls.append(("execute_async_v3", stream_handle, (b, n)))

        def work():
            wav, lengths = _at(at["waveform"], (b, n), np.float32), _at(at["lengths"], (b,), np.int64)
            self._gpu.calls.append(("ran", (b, n), lengths.tolist(), [float(wav[i, : lengths[i]].sum()) for i in range(b)]))
            _at(at["logits"], (b, 4), np.float32)[:] = fake_logits(wav, lengths)

        return self._gpu.enqueue(stream_handle, work)


class FakeRuntime:
    """trt.Runtime: a plan that starts with b"FOREIGN" is one TensorRT cannot load (it logs and returns None)."""

    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, serialized_engine):
        return None if bytes(serialized_engine).startswith(b"FOREIGN") else self._trt.ICudaEngine(self._trt)


class FakeLayer:
    name = "/encoder/Gelu"


class FakeLayer10(FakeLayer):
    precision_is_set = False  # deprecated in 10.12, removed in 11; the ONNX's types carry the precision
    precision = None


class FakeNetwork:
    """trt.INetworkDefinition as build_engine and Polygraphy's CreateConfig read it."""

    def __init__(self, trt, inputs):
        self._trt, self._inputs = trt, inputs

    @property
    def num_inputs(self):
        return len(self._inputs)

    def get_input(self, index):
        return types.SimpleNamespace(name=self._inputs[index])

    @property
    def num_layers(self):
        return 1

    def get_layer(self, index):
        return self._trt.ILayer()


def fake_trt(version: str) -> types.ModuleType:
    """A `tensorrt` shaped like `version` where sertrt or Polygraphy meet a difference between 10.3, 10.13
    and 11.x (docs/tensorrt-api-versions.md)."""
    v = Version(version)
    eleven = v.major >= 11
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
    trt.DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32 BOOL UINT8 BF16 INT64"
                             + (" FP4 E8M0" if v >= Version("10.13") else ""))  # not in 10.3's bindings
    # 10.x: EXPLICIT_BATCH (deprecated, a no-op) and STRONGLY_TYPED opting in; 11: STRONGLY_TYPED only, as 0,
    # always on and ignored. Polygraphy shifts by int(flag): never hard-code 1 << 1.
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0} if eleven else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", "TF32" if eleven else "FP16 INT8 TF32")  # FP16/INT8 gone in 11
    trt.ICudaEngine, trt.IExecutionContext = FakeEngine, FakeContext
    trt.Runtime = type("Runtime", (FakeRuntime,), {"_trt": trt})
    trt.Logger = type("Logger", (), {"WARNING": "WARNING", "ERROR": "ERROR", "__init__": lambda self, min_severity=None: None})
    trt.INetworkDefinition = FakeNetwork
    trt.ILayer = FakeLayer if eleven else FakeLayer10
    if not eleven:
        trt.IAlgorithmSelector = type("IAlgorithmSelector", (), {})  # removed in 11
    return trt


def exposed_names(module: types.ModuleType) -> set[str]:
    """Module attributes, enum members and class attributes (ours start with "_")."""
    names = {n for n in vars(module) if not n.startswith("__")}
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, enum.Enum):
            names |= set(value.__members__)
        elif isinstance(value, type):
            names |= {n for klass in value.__mro__[:-1] for n in vars(klass) if not n.startswith("_")}
    return names


@functools.cache
def invented(fake: str, bindings: str) -> frozenset[str]:
    """Names the fake shaped like TensorRT `fake` exposes that TensorRT `bindings` lacks. install() refuses a fake
    that invents one: it would let our code call something that TensorRT version does not have."""
    with gzip.open(REPO / "tests" / "data" / f"tensorrt-{bindings}-names.txt.gz", "rt", encoding="utf-8") as f:
        real = set(f.read().split())
    return frozenset(n for n in exposed_names(fake_trt(TRT[fake])) if not any(r == n or r.endswith(n) for r in real))


# ---------------------------------------------------------------- stand-in for polygraphy.backend.trt
def fake_poly(trt, calls: list, *, polygraphy="0.53.6", parse_ok=True, build_ok=True,
              inputs=("waveform", "lengths")):
    """Behaves like Polygraphy `polygraphy` where TensorRT versions matter: up to 0.49.x CreateConfig reads
    ILayer.precision_is_set unguarded (an AttributeError on TensorRT 11), 0.50.3 on catches it."""
    poly = types.ModuleType("polygraphy.backend.trt")

    class Profile(dict):
        def add(self, name, min, opt, max):
            calls.append(("Profile.add", name, tuple(min), tuple(opt), tuple(max)))
            self[name] = (min, opt, max)
            return self

    def CreateConfig(**kw):
        calls.append(("CreateConfig", kw))

        def load(builder, network):  # Polygraphy calls it with the parsed network, inside the build
            layers = [network.get_layer(i) for i in range(network.num_layers)]
            try:
                precisions = {layer.name: layer.precision for layer in layers if layer.precision_is_set}
            except AttributeError:  # TensorRT 11: layers have no precision
                if Version(polygraphy) < Version("0.50.3"):
                    raise
                precisions = {}
            return "config", precisions

        return load

    def NetworkFromOnnxPath(path, strongly_typed=None):
        calls.append(("NetworkFromOnnxPath", path, strongly_typed))

        def load():
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
            calls.append(("create_network", flags))
            if not parse_ok:
                raise PolygraphyException("Could not parse ONNX correctly\nIn node 0 (Gelu): UNSUPPORTED_NODE")
            return "builder", trt.INetworkDefinition(trt, inputs), "parser"

        return load

    def EngineBytesFromNetwork(network, config=None, save_timing_cache=None):
        calls.append(("EngineBytesFromNetwork", config, save_timing_cache))

        def build():
            if callable(config):
                config(*network[:2])
            if not build_ok:
                raise PolygraphyException("Invalid Engine. Please ensure the engine was built correctly")
            if save_timing_cache:
                with open(save_timing_cache, "wb") as f:
                    f.write(b"TUNED")
            return b"PLAN-" + trt.__version__.encode()

        return build

    for f in (Profile, CreateConfig, NetworkFromOnnxPath, EngineBytesFromNetwork):
        setattr(poly, f.__name__, f)
    return poly


@pytest.fixture
def calls():
    return []


@pytest.fixture(params=list(TRT.values()), ids=list(TRT))
def trt_version(request):
    return request.param


def install(monkeypatch, version, calls, gpu=GPU, polygraphy="0.53.6", **poly_kw):
    key = next((k for k, v in TRT.items() if v == version), None)
    assert key is None or invented(key, key) == set(), invented(key, key)
    trt = fake_trt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(sys.modules["polygraphy"], "__version__", polygraphy)  # what sertrt reads
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", fake_poly(trt, calls, polygraphy=polygraphy, **poly_kw))
    cudart = types.ModuleType("cuda.bindings.runtime")  # to name the GPU (tests/test_trt_runner.py runs engines)
    cudart.cudaError_t = enum.Enum("cudaError_t", "cudaSuccess")
    cudart.cudaGetDevice = lambda: (cudart.cudaError_t.cudaSuccess, 0)
    cudart.cudaGetDeviceProperties = lambda d: (cudart.cudaError_t.cudaSuccess, types.SimpleNamespace(
        name=gpu[0].encode() + b"\0" * 8, major=gpu[1], minor=gpu[2]))
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime, cuda.bindings = cudart, bindings
    for name, mod in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, mod)
    return trt


# ---------------------------------------------------------------- build side
def options(tmp_path, **kw):
    onnx = tmp_path / "model.onnx"
    if not onnx.exists():
        onnx.write_bytes(b"ONNX-BYTES")
    kw.setdefault("timing_cache", tmp_path / "timing.cache")
    return EngineOptions(onnx=onnx, out=tmp_path / "model.plan", precision="fp16", profile=PROFILE, **kw)


def test_build_goes_through_polygraphy(tmp_path, monkeypatch, calls, trt_version):
    version = trt_version
    trt = install(monkeypatch, version, calls)
    opts = options(tmp_path, workspace_mb=1024)
    opts.timing_cache.write_bytes(b"OLD-CACHE")
    record = build_engine(opts)

    # strongly typed on every version: 10.x opts in by the flag (bit 1), 11.x always is (bit 0, ignored there)
    assert ("NetworkFromOnnxPath", str(opts.onnx), True) in calls  # a path: external weights are found
    assert ("create_network", 0b1 if Version(version).major >= 11 else 0b10) in calls
    assert [c for c in calls if c[0] == "Profile.add"] == [
        ("Profile.add", "waveform", (1, 400), (2, 16000), (4, 64000)),
        ("Profile.add", "lengths", (1,), (2,), (4,)),
    ]
    config = next(c[1] for c in calls if c[0] == "CreateConfig")
    assert config["memory_pool_limits"] == {trt.MemoryPoolType.WORKSPACE: 1024 << 20}
    assert config["builder_optimization_level"] == 3 and config["load_timing_cache"] == str(opts.timing_cache)
    assert not {"fp16", "int8", "bf16", "tf32", "precision_constraints"} & set(config)  # precision is in the ONNX
    assert next(c for c in calls if c[0] == "EngineBytesFromNetwork")[2] == str(opts.timing_cache)

    assert opts.out.read_bytes() == b"PLAN-" + version.encode()
    assert opts.timing_cache.read_bytes() == b"TUNED"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert json.loads(record_path(opts.out).read_text()) == record
    assert record["tensorrt_version"] == version and record["built_with"] == "polygraphy"
    assert record["gpu_name"] == "NVIDIA Orin" and record["compute_capability"] == "8.7"
    assert record["precision"] == "fp16" and record["strongly_typed"] is True
    assert record["profile_shapes"] == {"waveform": [[1, 400], [2, 16000], [4, 64000]], "lengths": [[1], [2], [4]]}
    assert record["sertrt_version"] and len(record["onnx_sha256"]) == 64 and record["engine"] == "model.plan"
    assert "--fp16" not in record["trtexec"]


def test_a_new_timing_cache_is_not_loaded_but_saved(tmp_path, monkeypatch, calls):
    install(monkeypatch, TRT["11"], calls)
    opts = options(tmp_path)
    build_engine(opts)
    assert next(c[1] for c in calls if c[0] == "CreateConfig")["load_timing_cache"] is None
    assert opts.timing_cache.read_bytes() == b"TUNED"


def test_failed_build_leaves_existing_engine(tmp_path, monkeypatch, calls, trt_version):
    install(monkeypatch, trt_version, calls, build_ok=False)
    opts = options(tmp_path)
    opts.out.write_bytes(b"GOOD-OLD-PLAN")
    with pytest.raises(SertrtError) as e:
        build_engine(opts)
    assert "\n" not in str(e.value) and "could not build an engine" in str(e.value) and "Invalid Engine" in str(e.value)
    assert opts.out.read_bytes() == b"GOOD-OLD-PLAN"
    assert not record_path(opts.out).exists() and not opts.timing_cache.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.plan"]


def test_parser_errors_one_line(tmp_path, monkeypatch, calls, trt_version):
    install(monkeypatch, trt_version, calls, parse_ok=False)
    with pytest.raises(SertrtError) as e:
        build_engine(options(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "Could not parse ONNX correctly" in msg
    assert "EngineBytesFromNetwork" not in [c[0] for c in calls]


def test_wrong_inputs_and_options_refused(tmp_path, monkeypatch, calls):
    install(monkeypatch, TRT["11"], calls, inputs=("input_values",))
    with pytest.raises(SertrtError, match="expect"):
        build_engine(options(tmp_path))
    assert "EngineBytesFromNetwork" not in [c[0] for c in calls]  # refused before the minutes-long build
    with pytest.raises(SertrtError, match="precision"):
        build_engine(EngineOptions(tmp_path / "model.onnx", tmp_path / "x.plan", "bf16", PROFILE))
    with pytest.raises(SertrtError, match="not found"):
        build_engine(EngineOptions(tmp_path / "missing.onnx", tmp_path / "x.plan", "fp32", PROFILE))


def test_int8_dynamic_refused_before_tensorrt(tmp_path, monkeypatch, calls):
    """The ONNX Runtime CPU artifact (DynamicQuantizeLinear/MatMulInteger) is not TensorRT's INT8 format."""
    install(monkeypatch, "10.3.0", calls)
    opts = options(tmp_path)
    opts.precision = "int8-dynamic"
    with pytest.raises(SertrtError) as e:
        build_engine(opts)
    msg = str(e.value)
    assert "\n" not in msg and "TensorRT takes the `int8` (QDQ) bundle" in msg and "MatMulInteger" in msg
    assert calls == [] and not opts.out.exists()  # refused before TensorRT was touched


def bundle_of(tmp_path, precision: str):
    """A bundle whose ONNX is a placeholder (the fakes never parse it), over PROFILE."""
    from dataclasses import asdict

    from sertrt.core.bundle import BundleCard, write_bundle

    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "model.onnx").write_bytes(b"ONNX-BYTES")
    card = BundleCard(precision=precision, model="model.onnx", labels=("neutral", "happy", "angry", "sad"),
                      sample_rate=16000, spec={"window_seconds": 2.0, "hop_seconds": 0.5, "profile": asdict(PROFILE)})
    return write_bundle(tmp_path / "bundle", staged, card)


def test_build_engine_command_refuses_int8_dynamic_bundle(tmp_path):
    bundle = bundle_of(tmp_path, "int8-dynamic")
    r = subprocess.run([sys.executable, "-m", "sertrt", "build-engine", str(bundle)], capture_output=True, text=True,
                       env=sertrt_env(), cwd=REPO, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "TensorRT takes the `int8` (QDQ) bundle" in lines[0]
    assert not (bundle / "model.plan").exists()


def test_build_engine_command_names_the_tensorrt_and_gpu_it_built_with(tmp_path, monkeypatch, calls, cli):
    from sertrt.core.bundle import load_bundle

    install(monkeypatch, TRT["10.3"], calls)
    bundle = bundle_of(tmp_path, "fp16")
    r = cli("build-engine", bundle, "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {bundle / 'model.plan'} (TensorRT {TRT['10.3']}, NVIDIA Orin)"
    assert {"model.plan", "model.plan.json"} <= set(load_bundle(bundle).local_files)  # hashed into the card


def test_old_tensorrt_refused(tmp_path, monkeypatch, calls):
    install(monkeypatch, "8.6.2", calls)
    with pytest.raises(SertrtError, match="TensorRT 10 or newer"):
        build_engine(options(tmp_path))


@pytest.mark.parametrize("version, polygraphy, refused", [
    (TRT["11"], "0.49.24", True),  # TensorRT 10.13's Polygraphy
    (TRT["11"], "0.49.26", True),  # the last 0.49 on PyPI
    (TRT["11"], "0.50.3", False),
    (TRT["10.3"], "0.49.13", False),  # TensorRT 10.3's own (OSS v10.3.0)
    (TRT["10.13"], "0.49.24", False),
])
def test_tensorrt_11_needs_polygraphy_0_50_3(tmp_path, monkeypatch, calls, version, polygraphy, refused):
    install(monkeypatch, version, calls, polygraphy=polygraphy)
    opts = options(tmp_path)
    if not refused:
        build_engine(opts)
        assert opts.out.read_bytes() == b"PLAN-" + version.encode()
        return
    with pytest.raises(SertrtError) as e:
        build_engine(opts)
    assert str(e.value) == (f"TensorRT {version} needs polygraphy >= 0.50.3, found {polygraphy} (older ones read layer "
                            "precisions TensorRT 11 removed and fail mid-build): pip install -U 'polygraphy>=0.53'")
    assert calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # before anything is built


def test_missing_tensorrt_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(SertrtError) as e:
        build_engine(options(tmp_path))
    assert str(e.value) == TRT_MISSING and "\n" not in TRT_MISSING
    assert "python3-libnvinfer" in TRT_MISSING and "pip install tensorrt" in TRT_MISSING
    with pytest.raises(SertrtError, match="TensorRT Python bindings not found"):
        engine_record("fp16", PROFILE)


def test_missing_polygraphy_one_line(tmp_path, monkeypatch, calls):
    install(monkeypatch, "10.3.0", calls)
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", None)
    with pytest.raises(SertrtError) as e:
        build_engine(options(tmp_path))
    assert str(e.value) == POLYGRAPHY_MISSING and "pip install polygraphy" in POLYGRAPHY_MISSING


def test_check_engine_compatible(monkeypatch, calls):
    install(monkeypatch, "10.3.0", calls)
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
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(TRT["11"]))
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime"):
        monkeypatch.setitem(sys.modules, name, None)

    def run(cmd, **kw):
        assert cmd[0] == "nvidia-smi"
        return subprocess.CompletedProcess(cmd, 0, stdout="NVIDIA H100 80GB HBM3, 9.0\n")

    monkeypatch.setattr(subprocess, "run", run)
    record = environment()
    assert (record["gpu_name"], record["compute_capability"]) == ("NVIDIA H100 80GB HBM3", "9.0")

    def missing(cmd, **kw):
        raise FileNotFoundError(cmd[0])

    monkeypatch.setattr(subprocess, "run", missing)  # JetPack 6: no nvidia-smi, no cuda-python
    assert environment()["gpu_name"] is None
    check_engine_compatible({"tensorrt_version": TRT["11"], "gpu_name": "NVIDIA Orin", "compute_capability": "8.7"})


@pytest.mark.parametrize("major", [10, 11])
def test_trtexec_command(major):
    cmd = trtexec_command("m fp16.onnx", "model.plan", PROFILE, major)
    assert cmd.startswith("trtexec '--onnx=m fp16.onnx' --saveEngine=model.plan ")
    assert "--minShapes=waveform:1x400,lengths:1" in cmd
    assert "--optShapes=waveform:2x16000,lengths:2" in cmd
    assert "--maxShapes=waveform:4x64000,lengths:4" in cmd
    assert "--memPoolSize=workspace:2048" in cmd
    for flag in ("--fp16", "--int8", "--best"):
        assert flag not in cmd
    assert ("--stronglyTyped" in cmd) == (major == 10)
