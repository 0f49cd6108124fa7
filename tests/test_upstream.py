"""The wav2vec2 upstream's forward: transformers' numbers, with no host sync (CUDA-graph capturable).

A CPU machine cannot see a host sync directly, so the model runs on the `meta` device (as on a GPU, any
tensor made on the host then shows up as a CPU tensor) under a dispatch mode that records every op that
reads a value back to the host or meets a host tensor. The CUDA-graph capture itself is tested on a GPU
(marker `gpu`).
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sertrt.core.choices import HEAD_NAMES
from sertrt.core.audio import RECEPTIVE_FIELD
from sertrt.model.layers import lengths_to_mask, masked_group_norm
from sertrt.model.ser import build_model
from sertrt.model.upstream import Wav2Vec2Upstream

WAV2VEC2 = ("tiny", "tiny-base")  # XLSR's layer-norm/pre-LN layout, and wav2vec2-base's group-norm/post-LN one
# Ops that copy a device value to the host (.item(), .tolist(), bool(t), .all() in an `if`, boolean
# indexing), which a CUDA graph cannot capture and which stall the CPU on every eager call.
HOST_SYNC_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero", "aten::masked_select", "aten::equal"}


class HostWatch(TorchDispatchMode):
    """Records host syncs and host tensors met by ops while the model runs on the meta device."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if name in HOST_SYNC_OPS:
            self.found.append(f"{name} (reads a device value on the host)")
        for a in tree_flatten((args, kwargs))[0]:
            if isinstance(a, torch.Tensor) and a.device.type == "cpu":
                self.found.append(f"{name} on a host tensor of shape {tuple(a.shape)}")
        return func(*args, **kwargs)


def padded_batch(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = 0.1 * torch.randn(len(lengths), max(lengths), generator=g)
    for i, n in enumerate(lengths):
        w[i, n:] = 0
    return w, torch.tensor(lengths)


def transformers_forward(self, waveform, lengths):
    """The upstream as transformers runs it: Wav2Vec2Model with a sample-level attention mask (transformers
    builds the frame mask itself: CumSum, index_put of a host scalar, `.all()`)."""
    mask = lengths_to_mask(lengths, waveform.shape[1]).to(torch.long)
    hidden = self.model(waveform, attention_mask=mask).last_hidden_state
    return hidden, self.model._get_feat_extract_output_lengths(lengths).to(torch.long)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("upstream", WAV2VEC2)
def test_padded_batch_gives_transformers_numbers_for_each_row_alone(upstream, attention, monkeypatch):
    """Ours on a padded batch = transformers on each row alone, unpadded (what pretrained weights were trained
    to give). transformers' own padded batch is no reference: wav2vec2-base's group norm takes its statistics
    over the padding too."""
    torch.manual_seed(0)
    model = build_model(upstream).eval()
    model.upstream.model.set_attn_implementation(attention)
    w, lengths = padded_batch([20000, 13001, 300, 7777])  # 300: shorter than one frame
    rows = [(w[i : i + 1, :n], lengths[i : i + 1]) for i, n in enumerate(lengths.tolist())]
    with torch.no_grad():
        ours = model(w, lengths)
        hidden, frames = model.upstream(w, lengths)
        monkeypatch.setattr(Wav2Vec2Upstream, "forward", transformers_forward)
        theirs = torch.cat([model(x, n) for x, n in rows])
        for row, (x, n) in enumerate(rows):
            if n.item() >= RECEPTIVE_FIELD:  # the upstream alone needs a frame's worth (the model pads to it)
                ref_hidden, ref_frames = model.upstream(x, n)
                assert ref_frames.item() == frames[row].item() == ref_hidden.shape[1]
                torch.testing.assert_close(hidden[row, : frames[row]], ref_hidden[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("groups", [8, 2])
def test_masked_group_norm_is_group_norm_over_each_rows_valid_steps(groups):
    """A row with no padding gets torch's GroupNorm (transformers' first conv layer in wav2vec2-base), so
    pretrained base checkpoints keep their meaning; a padded row gets GroupNorm of its valid steps alone."""
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(groups, 8)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    lengths = torch.tensor([50, 31, 2])
    x = 3.0 + 2.0 * torch.randn(3, 8, 50)
    x[1, :, 31:], x[2, :, 2:] = 100.0, -7.0  # garbage, not zeros, in the padding
    with torch.no_grad():
        got = masked_group_norm(x, lengths, norm)
        for row, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(got[row, :, :n], norm(x[row : row + 1, :, :n])[0], rtol=1e-5, atol=1e-5)
        half = masked_group_norm(x.half(), lengths, norm)  # half input: FP32 statistics, half out (torch's kernel)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), got, rtol=1e-2, atol=1e-2)


def test_group_norm_layer_is_checkpointed_like_the_others():
    """--grad-checkpointing recomputes the masked first layer too, with the same gradients."""
    w, lengths = padded_batch([16000, 9000])
    grads, calls = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = build_model("tiny-base").train()
        model.upstream.model.config.mask_time_prob = 0.0  # SpecAugment on the CPU draws from numpy's generator
        first = model.upstream.model.feature_extractor.conv_layers[0]
        if checkpointing:
            hf = model.upstream.model  # as train's --grad-checkpointing turns it on (renamed in transformers 5.x)
            (getattr(hf, "activation_checkpointing_enable", None) or hf.gradient_checkpointing_enable)({"use_reentrant": False})
            run = first._gradient_checkpointing_func
            first._gradient_checkpointing_func = lambda *a, **k: calls.append(1) or run(*a, **k)
        torch.manual_seed(1)  # the same dropout and LayerDrop draws in both runs
        model(w, lengths).sum().backward()
        grads.append(first.conv.weight.grad)
    assert calls == [1]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", HEAD_NAMES)
@pytest.mark.parametrize("upstream", WAV2VEC2)
def test_eval_forward_never_reads_back_to_the_host(upstream, head):
    torch.manual_seed(0)
    model = build_model(upstream, head=head).eval().to("meta")
    w, lengths = (t.to("meta") for t in padded_batch([16000, 9000, 300]))
    with torch.no_grad(), HostWatch() as watch:
        logits = model(w, lengths)
    assert logits.shape == (3, 4) and logits.device.type == "meta"
    assert watch.found == []


def test_host_watch_catches_transformers_mask(monkeypatch):
    """The check above can fail: transformers' own frame-mask path is caught reading back to the host."""
    monkeypatch.setattr(Wav2Vec2Upstream, "forward", transformers_forward)
    model = build_model("tiny").eval().to("meta")
    w, lengths = (t.to("meta") for t in padded_batch([16000, 9000]))
    with torch.no_grad(), HostWatch() as watch:
        with pytest.raises(RuntimeError, match="meta"):  # .item() has no value to give on meta
            model(w, lengths)
    assert any("_local_scalar_dense" in f for f in watch.found)


@pytest.mark.parametrize("upstream", WAV2VEC2)
def test_upstream_compiles_to_one_graph(upstream):
    """torch.compile(fullgraph=True) refuses any graph break (a host sync, data-dependent control flow).
    The "eager" backend checks the capture without compiling kernels."""
    import torch._dynamo

    torch.manual_seed(0)
    model = build_model(upstream).eval()
    w, lengths = padded_batch([16000, 9000])
    torch._dynamo.reset()
    compiled = torch.compile(model.upstream, fullgraph=True, backend="eager")
    with torch.no_grad():
        got, got_frames = compiled(w, lengths)
        want, want_frames = model.upstream(w, lengths)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.equal(got_frames, want_frames)
    torch._dynamo.reset()


def test_training_keeps_layerdrop_and_specaugment():
    """The step-by-step forward keeps transformers' training behaviour: LayerDrop skips whole layers
    (layerdrop 1.0 skips all), SpecAugment masks frames; eval uses neither."""
    torch.manual_seed(0)
    up = build_model("tiny").upstream
    for m in up.modules():  # dropout off: train and eval then differ only by LayerDrop and SpecAugment
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        elif isinstance(getattr(m, "dropout", None), float):  # attention's dropout is a float
            m.dropout = 0.0
    cfg = up.model.config
    w, lengths = padded_batch([16000, 12000])
    with torch.no_grad():
        cfg.layerdrop, cfg.mask_time_prob = 0.0, 0.0
        full = up.eval()(w, lengths)[0]
        torch.testing.assert_close(up.train()(w, lengths)[0], full, rtol=0, atol=1e-6)
        cfg.mask_time_prob = 0.5
        assert not torch.allclose(up.train()(w, lengths)[0], full, atol=1e-3)  # frames masked
        torch.testing.assert_close(up.eval()(w, lengths)[0], full, rtol=0, atol=0)
        cfg.layerdrop, cfg.mask_time_prob = 1.0, 0.0
        skipped = up.train()(w, lengths)[0]
        torch.testing.assert_close(up.eval()(w, lengths)[0], full, rtol=0, atol=0)
        up.model.encoder.layers = torch.nn.ModuleList()
        torch.testing.assert_close(skipped, up.eval()(w, lengths)[0], rtol=0, atol=1e-6)  # every layer skipped
    assert not torch.allclose(skipped, full, atol=1e-3)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("upstream", WAV2VEC2)
def test_eval_forward_makes_no_host_sync_on_cuda(upstream):
    """torch's sync debug mode turns every synchronising CUDA call into an error."""
    torch.manual_seed(0)
    model = build_model(upstream).eval().cuda()
    w, lengths = (t.cuda() for t in padded_batch([16000, 9000, 300]))
    with torch.no_grad():
        model(w, lengths)  # first call: lazy cuDNN/cuBLAS set-up may synchronise once
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            model(w, lengths)
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_whole_model_replays_from_a_cuda_graph_at_two_shapes(dtype):
    """Captured once per (batch, num_samples), with padding; replayed on new audio and new lengths, the
    graph gives eager's logits."""
    torch.manual_seed(0)
    model = build_model("tiny").eval().cuda()
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=dtype == torch.float16, cache_enabled=False)
    for shape_seed, lengths in enumerate(([16000, 9000], [24000, 24000, 5000, 300])):
        static_w, static_n = (t.cuda() for t in padded_batch(lengths, seed=shape_seed))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), autocast, torch.cuda.stream(side):
            for _ in range(3):
                model(static_w, static_n)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), autocast, torch.cuda.graph(graph):
            static_out = model(static_w, static_n)
        for trial in range(2):
            new_lengths = [max(300, n - 1000 * (trial + 1)) for n in lengths]
            w, n = (t.cuda() for t in padded_batch(new_lengths, seed=10 + trial))
            w = torch.nn.functional.pad(w, (0, static_w.shape[1] - w.shape[1]))
            static_w.copy_(w)
            static_n.copy_(n)
            graph.replay()
            with torch.no_grad(), autocast:
                eager = model(w, n)
            torch.testing.assert_close(static_out.float(), eager.float(), rtol=1e-3, atol=1e-3 if dtype == torch.float32 else 1e-2)
