"""ONNX Runtime's GPU providers as sertrt configures them (sertrt/runtime/runners.py), with a recorder standing in
for `onnxruntime.InferenceSession` (no onnxruntime-gpu here): the provider order, every option, the TensorRT
caches' folder and the trust rule that keeps it unloaded. Option names are only those ONNX Runtime's provider
documentation lists (below, with the page)."""

from __future__ import annotations

import stat
import types
from dataclasses import asdict

import onnxruntime
import pytest
from test_bundle import keypair

from sertrt.core.bundle import BundleCard, load_bundle, staging_dir, write_bundle
from sertrt.core.errors import SertrtError
from sertrt.export.spec import Profile
from sertrt.runtime.runners import OrtRunner, RunnerOptions, open_runner

# https://onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html#configurations ("Execution Provider
# Options"); trt_timing_cache_path: microsoft/onnxruntime#17865, listed on that page since 1.17
TENSORRT_OPTIONS = {
    "device_id", "user_compute_stream", "trt_max_workspace_size", "trt_max_partition_iterations", "trt_min_subgraph_size",
    "trt_fp16_enable", "trt_bf16_enable", "trt_int8_enable", "trt_int8_calibration_table_name",
    "trt_int8_use_native_calibration_table", "trt_dla_enable", "trt_dla_core", "trt_engine_cache_enable",
    "trt_engine_cache_path", "trt_engine_cache_prefix", "trt_dump_subgraphs", "trt_force_sequential_engine_build",
    "trt_context_memory_sharing_enable", "trt_layer_norm_fp32_fallback", "trt_timing_cache_enable",
    "trt_timing_cache_path", "trt_force_timing_cache", "trt_detailed_build_log", "trt_build_heuristics_enable",
    "trt_sparsity_enable", "trt_builder_optimization_level", "trt_auxiliary_streams", "trt_tactic_sources",
    "trt_extra_plugin_lib_paths", "trt_profile_min_shapes", "trt_profile_max_shapes", "trt_profile_opt_shapes",
    "trt_cuda_graph_enable", "trt_dump_ep_context_model", "trt_ep_context_file_path", "trt_ep_context_embed_mode",
    "trt_engine_decryption_enable", "trt_engine_decryption_lib_path",
}
# https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html#configuration-options
CUDA_OPTIONS = {
    "device_id", "gpu_mem_limit", "arena_extend_strategy", "cudnn_conv_algo_search", "do_copy_in_default_stream",
    "cudnn_conv_use_max_workspace", "cudnn_conv1d_pad_to_nc1d", "enable_cuda_graph", "enable_skip_layer_norm_strict_mode",
    "use_tf32", "use_ep_level_unified_stream", "user_compute_stream", "gpu_external_alloc", "gpu_external_free",
    "gpu_external_empty_cache", "prefer_nhwc", "tunable_op_enable", "tunable_op_tuning_enable",
    "tunable_op_max_tuning_duration_ms",
}
PROFILE = Profile(min_batch=1, opt_batch=2, max_batch=4, min_samples=400, opt_samples=16000, max_samples=64000)
GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


class Session:
    """Records how onnxruntime.InferenceSession was asked for; answers what OrtRunner reads."""

    made: list[Session] = []

    def __init__(self, path, sess_options=None, providers=None):
        self.path, self.options, self.providers = path, sess_options, providers
        Session.made.append(self)

    def get_modelmeta(self):
        return types.SimpleNamespace(custom_metadata_map={})

    def get_inputs(self):
        return [types.SimpleNamespace(name="waveform"), types.SimpleNamespace(name="lengths")]

    def get_outputs(self):
        return [types.SimpleNamespace(name="logits")]


@pytest.fixture
def sessions(monkeypatch):
    Session.made = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(GPU_PROVIDERS))
    return Session.made


def bundle_of(tmp_path, precision="fp32", sign_key=None, name="bundle"):
    staged = staging_dir(tmp_path / name)
    (staged / "model.onnx").write_bytes(b"ONNX " + precision.encode())
    card = BundleCard(precision=precision, model="model.onnx", labels=("neutral", "happy", "angry", "sad"),
                      sample_rate=16000, spec={"window_seconds": 2.0, "hop_seconds": 0.5, "profile": asdict(PROFILE)})
    return write_bundle(tmp_path / name, staged, card, sign_key=sign_key)


def entered(bundle, **options):
    runner, _ = open_runner(bundle, RunnerOptions(**options))
    with runner:
        pass
    return runner


@pytest.mark.parametrize("precision, flags", [
    ("fp32", {}),
    ("fp16", {"trt_fp16_enable": "True", "trt_layer_norm_fp32_fallback": "True"}),
    ("int8", {"trt_int8_enable": "True"}),  # Q/DQ: INT8 on, and no calibration table (the docs: none for QDQ models)
    ("int8-dynamic", {}),
])
def test_tensorrt_then_cuda_then_cpu_with_the_cards_options(tmp_path, sessions, precision, flags):
    bundle = bundle_of(tmp_path, precision)
    entered(bundle, provider="tensorrt")
    (trt_name, trt), (cuda_name, cuda), cpu = sessions[0].providers
    assert (trt_name, cuda_name, cpu) == tuple(GPU_PROVIDERS)
    digest = load_bundle(bundle).files["model.onnx"][:16]
    cache = str(tmp_path / "bundle.trt-cache" / f"{digest}-onnxruntime-{onnxruntime.__version__}")
    assert trt == {
        "trt_max_workspace_size": str(2 << 30),
        "trt_profile_min_shapes": "waveform:1x400,lengths:1",
        "trt_profile_opt_shapes": "waveform:2x16000,lengths:2",
        "trt_profile_max_shapes": "waveform:4x64000,lengths:4",
        "trt_engine_cache_enable": "True", "trt_engine_cache_path": cache,
        "trt_timing_cache_enable": "True", "trt_timing_cache_path": cache,
        **flags,
    }
    assert cuda == {"cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": "1"}
    assert set(trt) <= TENSORRT_OPTIONS and set(cuda) <= CUDA_OPTIONS
    assert "trt_int8_calibration_table_name" not in trt


def test_cuda_then_cpu(tmp_path, sessions):
    entered(bundle_of(tmp_path), provider="cuda")
    assert sessions[0].providers == [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC",
                                                                "do_copy_in_default_stream": "1"}), "CPUExecutionProvider"]
    assert not list(tmp_path.glob("*.trt-cache"))  # only TensorRT keeps caches
    entered(bundle_of(tmp_path, name="cpu"), provider="cpu")
    assert sessions[1].providers == ["CPUExecutionProvider"]


def test_the_cache_folder_is_per_model_and_private(tmp_path, sessions):
    first = bundle_of(tmp_path, "fp32")
    entered(first, provider="tensorrt")
    again = bundle_of(tmp_path, "fp16", name="again")
    entered(again, provider="tensorrt")
    paths = [s.providers[0][1]["trt_engine_cache_path"] for s in sessions]
    assert paths[0] != paths[1]  # a cached engine is never taken for another model's
    for path in paths:
        assert stat.S_IMODE((tmp_path / path).stat().st_mode) == 0o700
    assert not [p for p in first.iterdir() if p.suffix not in (".onnx", ".json", ".sha256")]  # nothing inside the bundle


def test_with_a_trust_key_the_caches_are_used_only_when_allowed(tmp_path, sessions):
    private, public = keypair(tmp_path, "vendor")
    bundle = bundle_of(tmp_path, "fp16", sign_key=private)
    entered(bundle, provider="tensorrt", trust=public)
    assert not {k for k in sessions[0].providers[0][1] if "cache" in k}  # nothing outside the signature is loaded
    assert not list(tmp_path.glob("*.trt-cache"))
    entered(bundle, provider="tensorrt", trust=public, allow_local_engine=True)
    assert sessions[1].providers[0][1]["trt_engine_cache_enable"] == "True"
    entered(bundle, provider="tensorrt")  # no key: as before
    assert sessions[2].providers[0][1]["trt_engine_cache_enable"] == "True"


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_missing_onnxruntime_gpu_is_one_line(tmp_path, provider):
    """The real (CPU) onnxruntime here has neither GPU provider."""
    with pytest.raises(SertrtError) as e:
        with OrtRunner(tmp_path / "model.onnx", provider):
            pass
    assert "\n" not in str(e.value) and "install onnxruntime-gpu" in str(e.value)
