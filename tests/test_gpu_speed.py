"""The GPU inference reference, the parts that run on a CPU: the half model, compiled encoder layers (fullgraph),
CUDA-graph buckets (their padding, not the capture), the PyTorch runner's options and bench-gpu's new columns."""

import json

import numpy as np
import pytest
import torch
from conftest import make_tone_corpus
from test_cli import assert_one_line_error

from sertrt.core.audio import RECEPTIVE_FIELD
from sertrt.core.errors import SertrtError
from sertrt.model.compile import compile_encoder_layers
from sertrt.model.cuda_graphs import bucket, pad_to
from sertrt.model.half import half_model
from sertrt.model.ser import build_model


def batch(seed=0, lengths=(32000, 20000, 16000, 27000)):
    g = torch.Generator().manual_seed(seed)
    wave = 0.1 * torch.randn(len(lengths), max(lengths), generator=g)
    lengths = torch.tensor(lengths)
    wave *= (torch.arange(wave.shape[1])[None] < lengths[:, None])
    return wave, lengths


def pair(precision, **kw):
    torch.manual_seed(0)
    ref = build_model("tiny", **kw).eval()
    half = build_model("tiny", **kw).eval()
    half.load_state_dict(ref.state_dict())
    return ref, half_model(half, precision)


def row_cosine(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=1)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("layer_weights", [False, True])
def test_half_model_keeps_norms_and_head_fp32_and_agrees_with_fp32(precision, layer_weights):
    ref, half = pair(precision, layer_weights=layer_weights)
    dtype = half.compute_dtype
    assert dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    for name, module in half.upstream.named_modules():
        own = list(module.parameters(recurse=False))
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
            assert all(p.dtype == torch.float32 for p in own), name
        elif isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
            assert all(p.dtype == dtype for p in own), name
    assert all(p.dtype == torch.float32 for p in half.head.parameters())
    wave, lengths = batch()
    with torch.inference_mode():
        want, got = ref(wave, lengths), half(wave, lengths)
    assert got.dtype == torch.float32
    assert (row_cosine(want, got) > 0.999).all()
    assert torch.equal(want.argmax(1), got.argmax(1))
    assert not torch.equal(want, got)  # it really ran in half precision


def test_fp32_is_the_model_itself_and_unknown_precisions_are_refused():
    model = build_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert half_model(model, "fp32") is model and model.compute_dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(SertrtError, match="unknown PyTorch precision 'fp8'"):
        half_model(model, "fp8")


@pytest.mark.slow  # inductor compiles
def test_encoder_layers_compile_with_fullgraph_once_for_every_layer_and_length():
    """inductor on the CPU: no graph break in a layer (fullgraph), one graph for all layers and lengths."""
    import torch._dynamo
    import torch._dynamo.utils

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    wave, lengths = batch()
    with torch.inference_mode():
        want = model(wave, lengths)
        assert compile_encoder_layers(model) == model.dims.upstream.config["num_hidden_layers"]
        got = model(wave, lengths)
        other = batch(1, (40000, 9000))
        model(*other)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_compiling_layers_of_an_upstream_without_them_is_one_line():
    with pytest.raises(SertrtError, match="needs a wav2vec2 upstream"):
        compile_encoder_layers(build_model("fbank"))


@pytest.mark.parametrize("shape, want", [((1, 32000), (1, 32000)), ((3, 30001), (4, 32000)), ((5, 100), (8, 8000)),
                                         ((8, 8000), (8, 8000)), ((11, 8000), (11, 8000))])
def test_buckets_round_batch_to_a_power_of_two_and_samples_to_the_bucket(shape, want):
    assert bucket(*shape, max_batch=8, bucket_samples=8000) == want


def test_padding_up_to_a_bucket_leaves_the_logits_of_every_row():
    """What a replayed graph sees is the call padded up to its bucket; the model masks that padding."""
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    wave, lengths = batch(lengths=(27000, 20000, 16500))
    rows, samples = bucket(*wave.shape, max_batch=8, bucket_samples=8000)
    padded, padded_lengths = pad_to(wave, lengths, rows, samples)
    assert padded.shape == (4, 32000) and padded_lengths.tolist() == [27000, 20000, 16500, RECEPTIVE_FIELD]
    with torch.inference_mode():
        torch.testing.assert_close(model(padded, padded_lengths)[:3], model(wave, lengths), rtol=1e-4, atol=1e-5)


def test_cuda_graphs_without_cuda_are_refused_in_one_line():
    from sertrt.model.cuda_graphs import BucketedGraphs
    from sertrt.verify.torch_runner import TorchRunner

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SertrtError, match="CUDA graphs need a CUDA device"):
        BucketedGraphs(build_model("tiny"))
    with pytest.raises(SertrtError, match="CUDA graphs need a CUDA device, not 'cpu'"):
        TorchRunner("run", cuda_graphs=True)
    with pytest.raises(SertrtError, match="unknown PyTorch precision 'int4'"):
        TorchRunner("run", precision="int4")


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory):
    """A tiny run and its fp32 bundle on generated tones."""
    from sertrt.export.exporter import ExportOptions, export_bundle
    from sertrt.model.io import save_checkpoint

    root = tmp_path_factory.mktemp("gpu-speed")
    manifest = make_tone_corpus(root, per_label=2, seed=5)
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    save_checkpoint(root / "run" / "best.safetensors", model, {"strategy": "full", "epoch": 0, "metrics": {}})
    export_bundle(ExportOptions(root / "run", root / "bundle", "fp32"), log=lambda s: None)
    return root, manifest


def test_torch_runner_half_precision_agrees_with_fp32(tone_run):
    from sertrt.core.manifest import read_manifest
    from sertrt.verify.compare import run_batches
    from sertrt.verify.torch_runner import TorchRunner
    from sertrt.core.audio import load_audio

    root, manifest = tone_run
    clips = [load_audio(u.path) for u in read_manifest(manifest)]
    with TorchRunner(root / "run") as fp32, TorchRunner(root / "run", precision="bf16") as bf16:
        assert bf16.settings() == {"device": "cpu", "precision": "bf16", "cuda_graphs": False}
        want, got = run_batches(fp32, clips, 4), run_batches(bf16, clips, 4)
    assert (row_cosine(torch.from_numpy(want), torch.from_numpy(got)) > 0.999).all()
    assert np.array_equal(want.argmax(1), got.argmax(1)) and not np.array_equal(want, got)


def test_stream_and_parity_run_the_pytorch_side_as_asked(tone_run, cli):
    from sertrt.core.manifest import read_manifest

    root, manifest = tone_run
    audio = read_manifest(manifest)[0].path
    onnx = cli("stream", root / "bundle", audio, "--threads", "1")
    torch_fp32 = cli("stream", root / "bundle", audio, "--backend", "torch", "--run", root / "run")
    assert onnx.returncode == torch_fp32.returncode == 0, torch_fp32.stderr
    windows = [[json.loads(x) for x in r.stdout.splitlines() if '"index"' in x] for r in (onnx, torch_fp32)]
    assert [w["start"] for w in windows[0]] == [w["start"] for w in windows[1]] and windows[0]
    for a, b in zip(*windows):
        assert a["raw_label"] == b["raw_label"]
        np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-4)
    assert_one_line_error(cli("stream", root / "bundle", audio, "--backend", "torch"), "--backend torch needs --run")
    assert_one_line_error(cli("stream", root / "bundle", audio, "--backend", "torch", "--run", root / "run",
                              "--cuda-graphs"), "CUDA graphs need a CUDA device, not 'cpu'")
    parity = cli("parity", root / "bundle", "--run", root / "run", "--manifest", manifest, "--torch-precision", "bf16",
                 "--json")
    assert parity.returncode == 0, parity.stderr
    result = json.loads(parity.stdout)
    assert result["torch"] == {"device": "cpu", "precision": "bf16", "cuda_graphs": False}
    assert result["modes"]["utterance"]["logits_max_abs"] > 0  # bf16 against the fp32 bundle: not bit-equal


def test_bench_gpu_half_variants_and_share_of_a_measured_peak_on_cpu(tmp_path):
    from sertrt.bench.gpu import GpuBenchOptions, run_gpu_bench
    from sertrt.bench.measure import forward_flops
    from sertrt.model.flops import model_flops

    data = run_gpu_bench(GpuBenchOptions(target="tiny", out=tmp_path, device="cpu", variants=("half-bf16", "half-fp16-cudagraph"),
                                         windows=(1.0,), batches=(2,), repeats=3, warmup=1))
    peak = data["matmul_peak"]
    assert peak["dtype"] == "float32" and peak["n"] == 1024 and peak["flops_per_s"] > 1e8
    rows = {r["variant"]: r for r in data["results"]}
    assert set(rows) == {"eager-fp32", "half-bf16"}
    assert data["skipped"]["half-fp16-cudagraph"] == "CUDA graphs need a CUDA device"
    model = build_model("tiny")
    flops = model_flops(model.dims.upstream.config, model.dims.head, 16000, 2)["total"]
    assert forward_flops(model.dims, 1.0, 2)["total"] == flops
    for r in rows.values():
        assert r["tflops_per_s"] == pytest.approx(flops / (r["p50_ms"] / 1000) / 1e12)
        assert r["share_of_peak"] == pytest.approx(r["tflops_per_s"] * 1e12 / peak["flops_per_s"])
    assert rows["half-bf16"]["cosine_vs_fp32"] > 0.999 and rows["half-bf16"]["top1_vs_fp32"] == 1.0
    assert "% peak" in (tmp_path / f"{data['options']['name']}.md").read_text()



def test_spec_augment_drawn_on_the_device_matches_transformers_and_never_masks_padding():
    """The time mask a GPU step draws without a host sync: the share transformers' numpy sampler masks, whole spans,
    only valid frames."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

    from sertrt.model.layers import time_mask_spans

    torch.manual_seed(0)
    np.random.seed(0)
    frames, prob, span = 300, 0.05, 10
    lengths = torch.randint(40, frames + 1, (3000,))
    valid = torch.arange(frames)[None] < lengths[:, None]
    # 375 batches of 8 (one rounding draw per batch in both), so the shares compare expectations
    ours = torch.cat([time_mask_spans(part, frames, prob, span) for part in lengths.split(8)])
    theirs = torch.cat([torch.from_numpy(_compute_mask_indices((len(part), frames), prob, span, attention_mask=v.long()))
                        for part, v in zip(lengths.split(8), valid.split(8))])
    assert ours.shape == theirs.shape == (3000, frames) and ours.dtype == torch.bool
    assert not (ours & ~valid).any()  # never a padded frame
    share, their_share = ours.sum() / valid.sum(), theirs.sum() / valid.sum()
    assert abs(share - their_share) < 0.004, (share, their_share)
    runs = np.diff(np.concatenate([np.zeros((3000, 1)), ours.numpy(), np.zeros((3000, 1))], axis=1).astype(int), axis=1)
    starts, ends = np.nonzero(runs == 1), np.nonzero(runs == -1)
    assert (ends[1] - starts[1] >= span).all()  # whole spans (overlaps only lengthen a run)
    assert not time_mask_spans(torch.tensor([5, 9]), 9, prob, span).any()  # shorter than a span: nothing to mask


@pytest.mark.gpu
def test_a_training_step_never_waits_for_the_host():
    """SpecAugment, the frame mask, the loss: the whole forward and backward of a train-mode step under CUDA's
    sync debug mode ("error": a host sync raises)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    model = build_model("tiny").cuda().train()
    wave, lengths = (t.cuda() for t in batch())
    labels = torch.tensor([0, 1, 2, 3], device="cuda")
    model(wave, lengths)  # warm-up: first-call allocations and library loads may sync
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = torch.nn.functional.cross_entropy(model(wave, lengths), labels)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
