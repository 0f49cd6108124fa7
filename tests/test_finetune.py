"""Fine-tuning options: frozen feature encoder, upstream / head learning rates, warm-up and decay, and
pretrained weights from a Hugging Face model folder (sertrt/training/options.py, train.py, model/upstream.py)."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from sertrt.core.errors import SertrtError
from sertrt.model.io import read_checkpoint
from sertrt.model.ser import apply_strategy, build_model
from sertrt.model.upstream import WAV2VEC2_CONFIGS
from sertrt.training.options import TrainOptions, with_defaults
from sertrt.training.train import make_optimizer, make_scheduler, param_groups, train


def _conv(model):
    return list(model.upstream.model.feature_extractor.parameters())


def test_random_init_defaults_are_one_constant_lr_and_a_trained_encoder():
    """The demo's recipe (tiny, defaults): what train built before these options, group for group."""
    opts = with_defaults(TrainOptions(train_manifest="t", out="o", upstream="tiny"))
    assert (opts.freeze_feature_encoder, opts.head_lr, opts.schedule, opts.warmup) == (False, opts.lr, "constant", 0)
    model = build_model("tiny", "hgfm")
    apply_strategy(model, "full", opts.freeze_feature_encoder)
    assert all(p.requires_grad for p in _conv(model))
    ours = make_optimizer(param_groups(model, opts.lr, opts.head_lr), opts.lr, opts.weight_decay, fused=False)
    before = make_optimizer([p for p in model.parameters() if p.requires_grad], opts.lr, opts.weight_decay, fused=False)
    assert [{k: v for k, v in g.items() if k != "params"} for g in ours.param_groups] == \
        [{k: v for k, v in g.items() if k != "params"} for g in before.param_groups]
    assert [[id(p) for p in g["params"]] for g in ours.param_groups] == [[id(p) for p in g["params"]] for g in before.param_groups]
    assert make_scheduler(ours, opts.schedule, opts.warmup, lambda: pytest.fail("no steps needed")) is None


@pytest.mark.parametrize("given, frozen", [({"upstream": "org/model"}, True), ({"upstream": "tiny", "pretrained": "d"}, True),
                                           ({"upstream": "tiny"}, False),
                                           ({"upstream": "org/model", "freeze_feature_encoder": False}, False)])
def test_feature_encoder_is_frozen_by_default_for_pretrained_weights(given, frozen):
    assert with_defaults(TrainOptions(train_manifest="t", out="o", **given)).freeze_feature_encoder is frozen


def test_freezing_the_encoder_keeps_only_the_cnn_fixed_and_needs_wav2vec2():
    model = build_model("tiny", "hgfm")
    apply_strategy(model, "full", freeze_feature_encoder=True)
    conv = {id(p) for p in _conv(model)}
    assert all(not p.requires_grad for p in _conv(model))
    assert all(p.requires_grad for p in model.parameters() if id(p) not in conv)
    with pytest.raises(SertrtError, match="--freeze-feature-encoder needs a wav2vec2 upstream"):
        apply_strategy(build_model("fbank"), "full", freeze_feature_encoder=True)


def test_head_lr_gives_two_groups_and_the_schedule_warms_up_then_decays():
    model = build_model("tiny", "hgfm", layer_weights=True)
    apply_strategy(model, "full", True)
    optimizer = make_optimizer(param_groups(model, 5e-5, 1e-3), 5e-5, 0.01, fused=False)
    upstream, head = optimizer.param_groups
    named = {id(p): n for n, p in model.named_parameters()}
    assert {named[id(p)].split(".")[0] for p in upstream["params"]} == {"upstream"}
    assert "upstream.layer_weights" in {named[id(p)] for p in head["params"]}  # SUPERB's featurizer trains with the head
    assert len(upstream["params"]) + len(head["params"]) == sum(p.requires_grad for p in model.parameters())
    scheduler = make_scheduler(optimizer, "linear", 0.25, lambda: 8)  # 2 warm-up steps of 8
    seen = []
    for step in range(8):
        seen.append([g["lr"] for g in optimizer.param_groups])
        if step == 4:  # a resumed run (optimizer and scheduler from last.safetensors) steps at the same lr
            again = make_optimizer(param_groups(model, 5e-5, 1e-3), 5e-5, 0.01, fused=False, state=optimizer.state_dict())
            make_scheduler(again, "linear", 0.25, lambda: 8, scheduler.state_dict())
            assert [g["lr"] for g in again.param_groups] == seen[-1]
        optimizer.step()
        scheduler.step()
    factors = [0, 0.5, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]
    assert sum(seen, []) == pytest.approx([lr * f for f in factors for lr in (5e-5, 1e-3)])
    optimizer = make_optimizer(param_groups(model, 1.0, 1.0), 1.0, 0.0, fused=False)
    cosine = make_scheduler(optimizer, "cosine", 2, lambda: 10)
    for _ in range(6):
        optimizer.step()
        cosine.step()
    assert cosine.get_last_lr() == pytest.approx([0.5 * (1 + math.cos(math.pi * 4 / 8))])


def test_schedule_options_out_of_range_are_refused(tmp_path):
    from sertrt.training.options import check_options

    for bad, message in [({"warmup": 2.5}, "--warmup 2.5: must be 0, a share"), ({"schedule": "step"}, "--schedule step: must be one of"),
                         ({"head_lr": 0.0}, "--head-lr 0.0: must be > 0"), ({"warmup": float("nan")}, "--warmup nan")]:
        with pytest.raises(SertrtError, match=message):
            check_options(TrainOptions(train_manifest="t", out="o", **bad))


def test_resumed_run_continues_the_same_lr_curve_and_keeps_its_options(tone_corpus, tmp_path, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    base = dict(train_manifest=tone_corpus, epochs=3, batch_size=4, lr=2e-3, head_lr=5e-3, warmup=0.3, schedule="linear",
                freeze_feature_encoder=True, max_seconds=1.0, quiet=True, device="cpu")
    train(TrainOptions(out=tmp_path / "whole", **base))

    flush = SummaryWriter.flush

    def interrupted(self):  # after epoch 1's checkpoint: as if the process were killed there
        monkeypatch.setattr(SummaryWriter, "flush", flush)
        raise KeyboardInterrupt

    monkeypatch.setattr(SummaryWriter, "flush", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TrainOptions(out=tmp_path / "cut", **base))
    assert read_checkpoint(tmp_path / "cut" / "last.safetensors")[0].train_state["epoch"] == 0
    with pytest.raises(SertrtError, match="--schedule cosine: .* was trained with linear"):
        train(TrainOptions(out=tmp_path / "cut", resume=True, given=frozenset({"schedule"}), **{**base, "schedule": "cosine"}))
    # only the data and --epochs given: lr, head lr, warm-up, schedule and the frozen encoder come from the run
    train(TrainOptions(train_manifest=tone_corpus, out=tmp_path / "cut", epochs=3, batch_size=4, max_seconds=1.0, quiet=True,
                       device="cpu", resume=True, given=frozenset({"train_manifest", "epochs", "batch_size", "max_seconds"})))
    whole, cut = (read_checkpoint(tmp_path / run / "last.safetensors")[0].train_state["scheduler"] for run in ("whole", "cut"))
    # the resumed scheduler took up the cut run's step count: it ends where the whole run's does, lr decayed to 0
    assert cut == whole and whole["last_epoch"] > 0 and whole["_last_lr"] == pytest.approx([0, 0])
    options = json.loads((tmp_path / "cut" / "options.json").read_text())
    assert {k: options[k] for k in ("lr", "head_lr", "warmup", "schedule", "freeze_feature_encoder")} == \
        {"lr": 2e-3, "head_lr": 5e-3, "warmup": 0.3, "schedule": "linear", "freeze_feature_encoder": True}


def _hf_folder(path, weights: str):
    """A Hugging Face model folder as save_pretrained writes it: config.json + model.safetensors, or
    pytorch_model.bin (the layout facebook/wav2vec2-large-xlsr-53 ships)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(1)
    model = Wav2Vec2Model(Wav2Vec2Config(**WAV2VEC2_CONFIGS["tiny"]))
    model.save_pretrained(path)
    if weights == "pytorch_model.bin":
        torch.save(load_file(str(path / "model.safetensors")), path / "pytorch_model.bin")
        (path / "model.safetensors").unlink()
    assert sorted(p.name for p in path.iterdir()) == ["config.json", weights]
    return model.state_dict()


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_pretrained_folder_loads_with_either_weight_file(tmp_path, weights):
    saved = _hf_folder(tmp_path, weights)
    for model in (build_model("tiny", pretrained=str(tmp_path)), build_model(str(tmp_path))):
        loaded = model.upstream.model.state_dict()
        assert loaded.keys() == saved.keys()
        for name, tensor in saved.items():
            assert torch.equal(loaded[name], tensor), name
    assert build_model("tiny", pretrained=str(tmp_path)).dims.upstream.name == "tiny"


def test_pretrained_folder_of_another_architecture_or_model_type_is_refused(tone_corpus, tmp_path, cli):
    from test_cli import assert_one_line_error
    from transformers import HubertConfig

    _hf_folder(tmp_path / "tiny", "model.safetensors")
    result = cli("train", "--train-manifest", tone_corpus, "--out", tmp_path / "run", "--upstream", "xlsr-53",
                 "--pretrained", tmp_path / "tiny")
    assert_one_line_error(result, f"--pretrained {tmp_path / 'tiny'}: its config is not xlsr-53's architecture",
                          "hidden_size 64, not 1024")
    with pytest.raises(SertrtError, match="names the weights of a wav2vec2 --upstream"):
        build_model("fbank", pretrained=str(tmp_path / "tiny"))
    HubertConfig(hidden_size=64).save_pretrained(tmp_path / "hubert")
    for make in (lambda: build_model(str(tmp_path / "hubert")), lambda: build_model("tiny", pretrained=str(tmp_path / "hubert"))):
        with pytest.raises(SertrtError, match="model_type 'hubert', not a wav2vec2 model"):
            make()
