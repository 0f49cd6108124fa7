import pytest
import torch

from sertrt.core.errors import SertrtError
from sertrt.core.choices import HEAD_NAMES
from sertrt.model.heads import HeadDims, build_head
from sertrt.model.ser import apply_strategy, build_model, normalize_waveform
from sertrt.model.upstream import MANUAL_UPSTREAMS, UPSTREAM_NAMES, WAV2VEC2_CONFIGS


def padded(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in seqs])
    out = torch.zeros(len(seqs), int(lengths.max()), *seqs[0].shape[1:])
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lengths


@pytest.mark.parametrize("kind", HEAD_NAMES)
def test_head_padded_batch_equals_each_alone(kind):
    torch.manual_seed(0)
    head = build_head(HeadDims(kind=kind, input_size=24, proj_size=16, hidden_size=12, attention_size=8, num_heads=2)).eval()
    seqs = [torch.randn(t, 24) for t in (37, 5, 1, 20)]
    # Garbage (not zeros) in the padding: masking, not luck, must keep it out.
    x, lengths = padded(seqs)
    for i, s in enumerate(seqs):
        x[i, s.shape[0]:] = 100.0
    with torch.no_grad():
        batch = head(x, lengths)
        alone = torch.cat([head(s[None], torch.tensor([s.shape[0]])) for s in seqs])
    assert batch.shape == (4, 4)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


def test_hgfm_composite_vector_size():
    dims = HeadDims(kind="hgfm", input_size=32, proj_size=20, hidden_size=8)
    head = build_head(dims)
    assert head.out.in_features == 4 * 8 + 20  # [w_l, w_r, att_l, att_r, F]


@pytest.mark.parametrize("upstream", UPSTREAM_NAMES)
def test_model_padded_batch_equals_each_alone(upstream):
    """Every upstream, layer-norm (XLSR) and group-norm (wav2vec2-base) layouts alike; the published sizes keep
    one transformer layer (the layout, not the depth, decides what padding can reach)."""
    torch.manual_seed(0)
    model = build_model(upstream, upstream_layers=1 if upstream in WAV2VEC2_CONFIGS else None).eval()
    lengths = [16000, 4321, 250]  # 250 samples: shorter than one frame, padded to one
    seqs = [0.1 * torch.randn(n) for n in lengths]
    w, lens = padded(seqs)
    with torch.no_grad():
        batch = model(w, lens)
        alone = torch.cat([model(s[None], torch.tensor([len(s)])) for s in seqs])
    assert torch.isfinite(batch).all()
    torch.testing.assert_close(batch, alone, atol=1e-4, rtol=1e-4)


def test_normalisation_ignores_padding_and_gain():
    x = torch.randn(1, 1000)
    padded_x = torch.cat([x, torch.full((1, 500), 7.0)], 1)
    a = normalize_waveform(x, torch.tensor([1000]))
    b = normalize_waveform(3.0 * padded_x, torch.tensor([1000]))
    torch.testing.assert_close(a, b[:, :1000], atol=1e-5, rtol=1e-5)
    assert (b[:, 1000:] == 0).all()


def test_eval_is_deterministic_and_train_is_not():
    torch.manual_seed(0)
    model = build_model("tiny")
    w, lens = torch.randn(2, 16000), torch.tensor([16000, 16000])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(w, lens), model(w, lens))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(w, lens), model(w, lens))  # dropout, SpecAugment


@pytest.mark.slow  # builds the 300M-parameter model
def test_xlsr_53_is_the_published_architecture():
    cfg = WAV2VEC2_CONFIGS["xlsr-53"]
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]) == (1024, 24, 16, 4096)
    assert cfg["conv_kernel"] == [10, 3, 3, 3, 3, 2, 2] and cfg["conv_stride"] == [5, 2, 2, 2, 2, 2, 2]
    assert cfg["conv_dim"] == [512] * 7
    assert cfg["feat_extract_norm"] == "layer" and cfg["do_stable_layer_norm"] is True
    model = build_model("xlsr-53")
    n_upstream = sum(p.numel() for p in model.upstream.parameters())
    assert 315e6 < n_upstream < 318e6  # the published ~317M (300M class) encoder
    assert model.upstream.downsample_rate == 320 and model.upstream.hidden_size == 1024
    assert model.head.proj.in_features == 1024


def test_strategies_freeze_the_right_parts():
    model = build_model("tiny")
    apply_strategy(model, "frozen")
    assert not any(p.requires_grad for p in model.upstream.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model = build_model("tiny")
    apply_strategy(model, "semi")
    fe = model.upstream.model.feature_extractor
    assert not any(p.requires_grad for p in fe.parameters())
    assert all(p.requires_grad for p in model.upstream.model.encoder.parameters())
    model = build_model("tiny")
    apply_strategy(model, "full")
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(SertrtError, match="semi"):
        apply_strategy(build_model("fbank"), "semi")
    with pytest.raises(SertrtError, match="valid: frozen, semi, full"):
        apply_strategy(model, "half")


def test_frozen_training_builds_no_upstream_graph():
    model = build_model("tiny")
    apply_strategy(model, "frozen")
    model.train()
    logits = model(torch.randn(2, 8000), torch.tensor([8000, 6000]))
    logits.sum().backward()
    assert all(p.grad is None for p in model.upstream.parameters())
    assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)


def test_loads_a_saved_pretrained_directory(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(1)
    reference = Wav2Vec2Model(Wav2Vec2Config(**WAV2VEC2_CONFIGS["tiny"])).eval()
    reference.save_pretrained(tmp_path / "my-xlsr")
    model = build_model(str(tmp_path / "my-xlsr")).eval()
    assert model.dims.upstream.name == str(tmp_path / "my-xlsr")
    assert model.dims.upstream.config["hidden_size"] == 64
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.upstream.model.state_dict()[name], tensor, rtol=0, atol=0)
    w = torch.randn(1, 8000)
    with torch.no_grad():
        ours, _ = model.upstream(w, torch.tensor([8000]))
        theirs = reference(w).last_hidden_state
    torch.testing.assert_close(ours, theirs)


def test_bad_upstream_is_one_line_error(tmp_path):
    with pytest.raises(SertrtError, match="cannot load a pretrained wav2vec2 model") as e:
        build_model(str(tmp_path / "not-a-model"))
    assert "\n" not in str(e.value)
    with pytest.raises(SertrtError, match="unknown head"):
        build_model("tiny", head="svm")


def test_mistyped_upstream_fails_at_once_with_the_valid_names(monkeypatch):
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("a typo must not reach the hub")

    monkeypatch.setattr(transformers.Wav2Vec2Model, "from_pretrained", no_hub)
    monkeypatch.setattr(transformers.Wav2Vec2Config, "from_pretrained", no_hub)
    for call in (lambda: build_model("xlsr53"), lambda: build_model("xlsr53", upstream_layers=2)):
        with pytest.raises(SertrtError, match=r"unknown upstream 'xlsr53' \(valid: xlsr-53, xls-r-300m, .*hub id"):
            call()


@pytest.mark.parametrize("layers", [1, 0])  # 0: conv features + positional conv + LayerNorm only
def test_cut_upstream_keeps_the_first_layers_and_masks_padding(layers):
    torch.manual_seed(0)
    model = build_model("tiny", upstream_layers=layers).eval()
    assert len(model.upstream.model.encoder.layers) == layers
    assert model.dims.upstream.config["num_hidden_layers"] == layers and model.dims.upstream.source_layers == 2
    seqs = [0.1 * torch.randn(n) for n in (16000, 4321, 250)]
    w, lens = padded(seqs)
    with torch.no_grad():
        batch = model(w, lens)
        alone = torch.cat([model(s[None], torch.tensor([len(s)])) for s in seqs])
    assert batch.shape == (3, 4) and torch.isfinite(batch).all()
    torch.testing.assert_close(batch, alone, atol=1e-4, rtol=1e-4)
    assert build_model("tiny").dims.upstream.source_layers is None  # uncut: nothing recorded


def test_cut_pretrained_directory_loads_only_the_first_layers(tmp_path, capfd):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(1)
    reference = Wav2Vec2Model(Wav2Vec2Config(**{**WAV2VEC2_CONFIGS["tiny"], "num_hidden_layers": 4})).eval()
    reference.save_pretrained(tmp_path / "four")
    capfd.readouterr()
    with pytest.warns(UserWarning) as caught:
        model = build_model(str(tmp_path / "four"), upstream_layers=2).eval()
    messages = [str(w.message) for w in caught]
    assert messages == [f"{tmp_path / 'four'}: keeping the first 2 of its 4 transformer layers"]
    assert "LOAD REPORT" not in capfd.readouterr().err  # transformers' per-tensor table is held back
    assert model.dims.upstream.config["num_hidden_layers"] == 2 and model.dims.upstream.source_layers == 4
    ours, theirs = model.upstream.model.state_dict(), reference.state_dict()
    assert set(theirs) - set(ours) == {k for k in theirs if k.startswith(("encoder.layers.2.", "encoder.layers.3."))}
    for name, tensor in ours.items():
        torch.testing.assert_close(tensor, theirs[name], rtol=0, atol=0)
    # The cut model computes what the full one computes after 2 layers, through the final LayerNorm.
    w = torch.randn(1, 8000)
    with torch.no_grad():
        cut, _ = model.upstream(w, torch.tensor([8000]))
        after_two = reference.encoder.layer_norm(reference(w, output_hidden_states=True).hidden_states[2])
    torch.testing.assert_close(cut, after_two)
    with pytest.raises(SertrtError, match=r"has 4 transformer layers \(valid: 0 to 4\)"):
        build_model(str(tmp_path / "four"), upstream_layers=5)


@pytest.mark.parametrize("upstream, layers, message", [
    ("tiny", 3, r"--upstream-layers 3: tiny has 2 transformer layers \(valid: 0 to 2\)"),
    ("tiny", -1, r"valid: 0 to 2"),
    ("fbank", 1, r"needs a wav2vec2 upstream, not 'fbank' \(valid: xlsr-53, .*tiny-base or a pretrained"),
    ("cnn-lstm", 0, r"needs a wav2vec2 upstream"),
])
def test_bad_upstream_layers_are_one_line_errors(upstream, layers, message):
    with pytest.raises(SertrtError, match=message) as e:
        build_model(upstream, upstream_layers=layers)
    assert "\n" not in str(e.value)


def test_stats_lr_is_logistic_regression_on_utterance_statistics():
    """The classical floor: 13 MFCCs + log energy per frame; their mean, std, delta std and range over valid frames,
    the active share and log duration (58 numbers), standardised, one linear layer; `--upstream stats-lr` brings
    its own head."""
    torch.manual_seed(0)
    model = build_model("stats-lr")
    assert model.dims.head.kind == "lr" and model.upstream.hidden_size == 58
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 58 * 4 + 4
    wav = 0.1 * torch.randn(2, 16000)
    wav[1, 3000:5000] *= 0.001  # a pause: fewer active frames
    hidden, frames = model.upstream(wav, torch.tensor([16000, 8000]))
    assert hidden.shape == (2, 1, 58) and frames.tolist() == [1, 1]
    alone, _ = model.upstream(wav[1:, :8000], torch.tensor([8000]))
    assert torch.allclose(hidden[1], alone[0], atol=1e-4)  # padding changes none of the statistics
    active, duration = hidden[:, 0, -2], hidden[:, 0, -1]
    assert active[1] < active[0] <= 1.0 and torch.allclose(duration, torch.log(torch.tensor([1.0, 0.5])))
    model.train()
    loss = torch.nn.functional.cross_entropy(model(wav[:1], torch.tensor([16000])), torch.tensor([2]))
    loss.backward()  # one utterance in a training batch: the running statistics stand in for the batch's
    assert model.head.out.weight.grad is not None
