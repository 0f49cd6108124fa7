"""Training throughput (sertrt/training/train.py, data.py): length-bucketed micro-batches under an audio budget,
gradient accumulation, the loss read once per log interval, MFU from the model's FLOP count, AdamW state on resume."""

import json
import math
import re
import subprocess

import numpy as np
import pytest
import torch
from conftest import sertrt_env
from test_train import history, tone_split, train_args, train_cmd  # noqa: F401  (tone_split: the fixture)

from sertrt.core.audio import SAMPLE_RATE
from sertrt.core.dims import HeadDims
from sertrt.core.errors import SertrtError
from sertrt.core.manifest import read_manifest
from sertrt.data.split import carve_validation
from sertrt.training.data import AudioSet, group_steps
from sertrt.training.distributed import DistInfo
from sertrt.model.flops import datasheet_peak, matmul_peak
from sertrt.training.throughput import micro_batch_loss, throughput, training_flops
from sertrt.training.options import options_record, resumed_options, with_defaults
from sertrt.training.train import TrainOptions, _epoch_steps, make_optimizer, train


def padding_share(lengths, batches) -> float:
    """Padded samples / all samples of the padded (rows, longest row) batches."""
    return 1.0 - sum(int(lengths[b].sum()) for b in batches) / sum(len(b) * int(lengths[b].max()) for b in batches)


def lengths_only(lengths, labels=None) -> AudioSet:
    """An AudioSet of lengths alone (batching never reads the audio)."""
    data = AudioSet.__new__(AudioSet)
    data.lengths = np.asarray(lengths, dtype=np.int64)
    data.labels = np.arange(len(data.lengths)) % 4 if labels is None else np.asarray(labels)
    data.audio = [None] * len(data.lengths)
    return data


def lognormal_set(n=500, seed=0) -> AudioSet:
    seconds = np.clip(np.random.default_rng(seed).lognormal(np.log(3.5), 0.6, n), 1, 12)  # 1-12 s, median 3.5 s
    return lengths_only(seconds * SAMPLE_RATE)


def test_budget_batches_stay_within_budget_cover_the_epoch_and_pad_little():
    data = lognormal_set()
    crop, budget = 6 * SAMPLE_RATE, 32 * SAMPLE_RATE
    effective = np.minimum(data.lengths, crop)  # what training runs: crops at --max-seconds
    epochs = [data.budget_batches(budget, crop, seed=0, epoch=e) for e in (0, 1)]
    for micro in epochs:
        assert sorted(i for b in micro for i in b) == list(range(len(data)))  # every utterance once
        assert all(len(b) * effective[b].max() <= budget for b in micro)
        assert padding_share(effective, micro) < 0.10
        assert 35 <= len(micro) <= 80  # full: ~1,700 s of audio in 32 s micro-batches
    assert data.budget_batches(budget, crop, seed=0, epoch=1) == epochs[1]  # a function of (seed, epoch)
    assert epochs[0] != epochs[1] and data.budget_batches(budget, crop, seed=1, epoch=0) != epochs[0]
    # an utterance longer than the budget still runs, in a micro-batch of its own
    long = lengths_only(np.array([1, 1, 1, 40, 2]) * SAMPLE_RATE)
    micro = long.budget_batches(4 * SAMPLE_RATE, 60 * SAMPLE_RATE)
    assert [3] in micro and sorted(i for b in micro for i in b) == [0, 1, 2, 3, 4]
    # the batch tensor's floor (collate's min_samples) counts against the budget: 0.25 s clips pad to 1 s
    short = lengths_only(np.full(12, SAMPLE_RATE // 4))
    assert max(map(len, short.budget_batches(4 * SAMPLE_RATE, crop, min_samples=SAMPLE_RATE))) == 4


def test_balanced_budget_batches_draw_every_label_about_equally():
    labels = np.array([0] * 300 + [1] * 60 + [2] * 30 + [3] * 10)
    data = lengths_only(np.random.default_rng(1).integers(SAMPLE_RATE, 6 * SAMPLE_RATE, len(labels)), labels)
    drawn = np.concatenate([labels[b] for b in data.budget_batches(16 * SAMPLE_RATE, 6 * SAMPLE_RATE, balanced=True)])
    assert len(drawn) == len(labels) and np.all(np.abs(np.bincount(drawn, minlength=4) / len(drawn) - 0.25) < 0.06)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_steps_accumulate_micro_batches_to_the_batch_size_in_lockstep(world_size):
    micro = lognormal_set().budget_batches(32 * SAMPLE_RATE, 6 * SAMPLE_RATE, seed=0, epoch=0)
    steps = group_steps(micro, 8, world_size)
    assert all(len(step) % world_size == 0 for step in steps)  # each rank runs step[rank::world_size]: equal counts
    for step in steps[:-1]:
        held = [len(b) for b in step]
        assert sum(held) >= 8 * world_size  # >= --batch-size utterances per rank on average
        assert sum(held[:-world_size]) < 8 * world_size or len(step) == world_size  # and no more micro-batches than that
    flat = [b for step in steps for b in step]
    assert flat[: len(micro)] == micro  # in order; under DDP the last step is completed from the epoch's start
    assert flat[len(micro):] == micro[: len(flat) - len(micro)] and len(flat) - len(micro) < world_size


def test_without_a_budget_the_epoch_has_the_fixed_batches_it_always_had():
    """Golden output of AudioSet.batches recorded before budgets existed (commit 55f5acf): runs without
    --max-batch-seconds repeat exactly, each batch one optimizer step, under DDP the same share per rank."""
    data = lengths_only(np.arange(23) * 7919 % 50000 + 8000)
    golden = [[1, 20, 14, 8], [18, 12, 6], [0, 19, 13, 7], [3, 22, 16, 10], [2, 21, 15, 9], [4, 17, 11, 5]]
    assert data.batches(4, True, seed=5, epoch=2) == golden
    assert data.batches(4, True, seed=5, epoch=2, balanced=True) == [
        [11, 11, 11, 11], [16, 10, 4, 11], [5, 5, 12], [21, 15, 9, 22], [2, 2, 2, 2], [13, 1, 20, 8]]
    opts = TrainOptions(train_manifest="t", out="o", batch_size=4, seed=5)
    assert _epoch_steps(data, opts, 2, DistInfo(), 6 * SAMPLE_RATE) == ([[b] for b in golden], [None] * 6)
    rank1, _ = _epoch_steps(data, opts, 2, DistInfo(rank=1, world_size=2), 6 * SAMPLE_RATE)
    assert rank1 == [[golden[1]], [golden[3]], [golden[5]]]


def test_accumulated_micro_batches_give_one_big_batchs_gradient():
    from sertrt.model.ser import build_model

    torch.manual_seed(0)
    model = build_model("tiny", "hgfm").eval()  # no dropout, no SpecAugment: the same function for every split
    waveform, labels = torch.randn(6, 8000), torch.tensor([0, 1, 2, 3, 1, 2])
    lengths = torch.full((6,), 8000)  # equal lengths: no split changes any row's padding

    def gradient(splits, utterances, world_size=1):
        model.zero_grad()
        total = 0.0
        for rows in splits:
            loss, ce_sum = micro_batch_loss(model(waveform[rows], lengths[rows]), labels[rows], 0.1, utterances, world_size)
            loss.backward()  # gradients add up across micro-batches, as in the training loop
            total += float(ce_sum)
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), total

    big, big_ce = gradient([slice(0, 6)], None)  # the fixed-batch path: the batch's mean
    for splits in ([slice(0, 2), slice(2, 6)], [slice(0, 1), slice(1, 3), slice(3, 6)], [slice(0, 6)]):
        accumulated, ce = gradient(splits, 6)
        torch.testing.assert_close(accumulated, big, rtol=1e-4, atol=1e-7)
        assert ce == pytest.approx(big_ce, rel=1e-6)
    # two ranks, each with its micro-batches of the step: DDP's mean of their gradients is the big batch's
    rank0, _ = gradient([slice(0, 1), slice(1, 3)], 6, world_size=2)
    rank1, _ = gradient([slice(3, 6)], 6, world_size=2)
    torch.testing.assert_close((rank0 + rank1) / 2, big, rtol=1e-4, atol=1e-7)


# A wav2vec2 config small enough to count by hand: conv 1->4 (k10 s5), 4->6 (k3 s2); H 8, FFN 16, one layer;
# positional conv k4 in 2 groups; HGFM head L 4, h1 5, attention 3.
HAND_CONFIG = {"conv_dim": [4, 6], "conv_kernel": [10, 3], "conv_stride": [5, 2], "hidden_size": 8,
               "intermediate_size": 16, "num_conv_pos_embeddings": 4, "num_conv_pos_embedding_groups": 2,
               "num_hidden_layers": 1}
HAND_HEAD = HeadDims(kind="hgfm", input_size=8, proj_size=4, hidden_size=5, attention_size=3)


def test_training_flops_and_mfu_match_a_hand_count():
    # 1000 samples -> (1000 - 10) // 5 + 1 = 199 conv steps -> (199 - 3) // 2 + 1 = 99 frames; 2 FLOPs a multiply-add
    conv = 2 * 199 * 4 * 1 * 10 + 2 * 99 * 6 * 4 * 3
    projection = 2 * 99 * 6 * 8
    positional = 2 * 99 * 8 * (8 // 2) * 4
    qkv_out = 4 * 2 * 99 * 8 * 8
    scores = 2 * 2 * 99 * 99 * 8  # QK^T and AV
    ffn = 2 * 2 * 99 * 8 * 16
    head = 2 * 99 * 8 * 4 + 2 * 3 * 2 * 99 * 5 * (4 + 5) + 2 * 2 * 99 * 5 * 3  # FC, BiGRU (3 gates x 2 ways), attention
    upstream = conv + projection + positional + qkv_out + scores + ffn
    batch = 3
    assert training_flops(HAND_CONFIG, HAND_HEAD, "full", 1000, batch) == 3 * batch * (upstream + head)
    assert training_flops(HAND_CONFIG, HAND_HEAD, "semi", 1000, batch) == batch * (conv + 3 * (upstream - conv + head))
    assert training_flops(HAND_CONFIG, HAND_HEAD, "frozen", 1000, batch) == batch * (upstream + 3 * head)
    flops = training_flops(HAND_CONFIG, HAND_HEAD, "full", 1000, batch)
    # 3 rows of 1000 samples, 2,400 of them valid, 0.5 s of training on a device of 1e9 FLOP/s
    rates = throughput(0.5, valid_samples=2400, batch_samples=3000, flops=flops, peak_flops_per_s=1e9)
    assert rates["padding_share"] == pytest.approx(0.2) and rates["audio_seconds_per_s"] == pytest.approx(0.3)
    assert rates["flops_per_s"] == pytest.approx(flops / 0.5) and rates["mfu"] == pytest.approx(flops / 0.5 / 1e9)
    assert "mfu" not in throughput(0.5, 2400, 3000, None, None)  # no FLOP count (not wav2vec2): no MFU
    assert "mfu" not in throughput(0.5, 2400, 3000, flops, None)  # no peak known for the device: no MFU
    # above 100%, the peak is not this device's: left out, never written
    assert not {"mfu", "peak_flops_per_s"} & set(throughput(0.5, 2400, 3000, flops, flops / 0.5 / 1.9))
    assert throughput(0.5, 0, 0, None, None)["padding_share"] is None  # no waveform batches (the stats-lr floor)


@pytest.mark.parametrize("strategy", ["full", "semi", "frozen"])
def test_training_flops_agree_with_torchs_count_of_a_real_step(strategy):
    """torch's FlopCounterMode over a real forward and backward of the tiny model: within 10% of the analytic
    3x / 1x rule (the backward of the first trained layer needs no input gradient, the GRU is counted roughly)."""
    from torch.utils.flop_counter import FlopCounterMode

    from sertrt.model.ser import apply_strategy, build_model

    torch.manual_seed(0)
    model = build_model("tiny", "hgfm")
    apply_strategy(model, strategy)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(4, 32000), torch.full((4,), 32000)).sum().backward()
    ours = training_flops(model.dims.upstream.config, model.dims.head, strategy, 32000, 4)
    assert ours == pytest.approx(counter.get_total_flops(), rel=0.10)


def test_mfu_peaks_are_datasheet_peaks_of_known_gpus_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: names.pop(0))
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA L4", "NVIDIA L40S", "Orin"]
    cuda = torch.device("cuda", 0)
    assert datasheet_peak(cuda, torch.bfloat16) == 989.4e12 and datasheet_peak(cuda, torch.bfloat16) == 756e12
    assert datasheet_peak(cuda, torch.float16) == 121e12
    assert datasheet_peak(cuda, torch.bfloat16) is None and datasheet_peak(cuda, torch.bfloat16) is None  # not listed
    assert datasheet_peak(torch.device("cpu"), torch.float32) is None  # a CPU's rate is its load of the moment


def test_peak_matmul_is_measured_without_touching_the_training_rng():
    state = torch.get_rng_state()
    peak = matmul_peak(torch.device("cpu"), torch.float32, size=128, seconds=0.02, trials=3)
    assert math.isfinite(peak) and peak > 1e7  # any CPU multiplies 128x128 matrices faster than 10 MFLOP/s
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("fused", [True, False])
def test_optimizer_state_resumes_where_it_stopped(fused):
    """A run's optimizer state, saved in a checkpoint by fused AdamW (CUDA) or the default (CPU), resumes in the same
    kind as if the run had never stopped."""
    from sertrt.model.io import flatten_optimizer, unflatten_optimizer

    def params():
        torch.manual_seed(0)
        return [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]

    def steps(optimizer, ps, n):
        for _ in range(n):
            optimizer.zero_grad()
            sum((p**2).sum() for p in ps).backward()
            optimizer.step()

    reference = params()
    steps(make_optimizer(reference, 1e-2, 0.01, fused=fused), reference, 4)
    ps = params()
    first = make_optimizer(ps, 1e-2, 0.01, fused=fused)
    steps(first, ps, 2)
    tensors, rest = flatten_optimizer(first.state_dict())
    rest = json.loads(json.dumps(rest))  # as the checkpoint header stores it
    second = make_optimizer(ps, 1e-2, 0.01, fused=fused, state=unflatten_optimizer(tensors, rest))
    assert [second.state[p]["step"].item() for p in ps] == [2, 2]
    steps(second, ps, 2)
    for a, b in zip(ps, reference):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_budget_run_records_throughput_and_reads_the_loss_once_per_interval(tone_corpus, tmp_path, monkeypatch):
    """In process: --max-batch-seconds, --log-every, --grad-checkpointing and --compile (dynamo's "eager" backend
    here; inductor needs a C++ build of minutes on this CPU)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import sertrt.training.train as train_module

    compiled = []
    real = train_module.compile_encoder_layers
    monkeypatch.setattr(train_module, "compile_encoder_layers", lambda model: compiled.append(real(model, backend="eager")))
    opts = TrainOptions(train_manifest=tone_corpus, out=tmp_path / "run", epochs=2, batch_size=4, max_batch_seconds=3.0,
                        log_every=2, compile=True, grad_checkpointing=True, seed=1, quiet=True)
    try:
        train(opts)
    finally:
        torch._dynamo.reset()
    assert compiled == [2]  # tiny's two encoder layers
    rows = history(tmp_path / "run")
    # the steps and padding the run must have had: its training set, as the run carved it
    train_utts, _, _ = carve_validation(read_manifest(tone_corpus), opts.valid_fraction, opts.seed)
    data = AudioSet(train_utts)
    logged, offset = [], 0
    for epoch, row in enumerate(rows):
        micro = data.budget_batches(3 * SAMPLE_RATE, 6 * SAMPLE_RATE, seed=1, epoch=epoch, min_samples=SAMPLE_RATE)
        steps = group_steps(micro, 4)
        assert row["optimizer_steps"] == len(steps)
        valid = sum(int(data.lengths[b].sum()) for b in micro)
        padded = sum(len(b) * max(int(data.lengths[b].max()), SAMPLE_RATE) for b in micro)  # collate pads to >= 1 s
        assert row["padding_share"] == pytest.approx(1 - valid / padded, abs=1e-3)
        assert 0 <= row["padding_share"] < 1
        assert row["audio_seconds_per_s"] == pytest.approx(valid / SAMPLE_RATE / row["epoch_seconds"])
        assert row["flops_per_s"] > 0 and not {"mfu", "peak_flops_per_s"} & set(row)  # no known peak on a CPU
        logged += [offset + n for n in range(1, len(steps) + 1) if n % 2 == 0 or n == len(steps)]
        offset += len(steps)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == logged  # the loss is read every 2 steps and at epoch end
    options = json.loads((tmp_path / "run" / "options.json").read_text())
    assert options["max_batch_seconds"] == 3.0 and options["compile"] and options["grad_checkpointing"]


@pytest.mark.slow  # torchrun, two ranks
def test_two_process_ddp_with_a_budget_stays_in_sync(tone_split, tmp_path):
    out = tmp_path / "ddp"
    result = subprocess.run(train_cmd(tone_split, out, "--epochs", "1", "--devices", "2", "--max-batch-seconds", "3",
                                      "--log-every", "2"),
                            env=sertrt_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = history(out)
    assert row["world_size"] == 2 and row["rank_param_spread"] == 0.0
    assert 0 <= row["padding_share"] < 1 and row["flops_per_s"] > 0 and "mfu" not in row  # no known peak on a CPU
    train_utts, _, _ = carve_validation(read_manifest(tone_split[0]), 0.1, 0)
    data = AudioSet(train_utts)
    micro = data.budget_batches(3 * SAMPLE_RATE, 6 * SAMPLE_RATE, seed=0, epoch=0, min_samples=SAMPLE_RATE)
    steps = group_steps(micro, 4, world_size=2)
    assert row["optimizer_steps"] == len(steps)
    assert row["samples_per_s"] * row["epoch_seconds"] == pytest.approx(sum(len(b) for s in steps for b in s))


def test_bad_throughput_options_are_refused_before_anything_is_written(tone_split, tmp_path, cli):
    from test_cli import assert_one_line_error

    assert_one_line_error(cli(*train_args(tone_split, tmp_path / "run", "--max-batch-seconds", "0")),
                          "--max-batch-seconds 0.0: must be > 0")
    base = {"train_manifest": tone_split[0], "out": tmp_path / "run", "quiet": True}
    for changes, message in [({"max_batch_seconds": float("nan")}, "--max-batch-seconds nan: must be > 0"),
                             ({"max_batch_seconds": -2.0}, "--max-batch-seconds -2.0: must be > 0"),
                             ({"log_every": 0}, "--log-every 0: must be >= 1"),
                             ({"upstream": "fbank", "compile": True}, "--compile needs a wav2vec2 upstream, not 'fbank'"),
                             ({"upstream": "mfcc", "grad_checkpointing": True},
                              "--grad-checkpointing needs a wav2vec2 upstream, not 'mfcc'")]:
        with pytest.raises(SertrtError, match=f"^{re.escape(message)}$"):
            train(TrainOptions(**base, **changes))
        assert not (tmp_path / "run").exists()


def test_a_resumed_run_keeps_its_budget(tmp_path):
    with pytest.raises(FileNotFoundError, match="options.json"):  # a run folder without it is not a run to resume
        resumed_options(TrainOptions(train_manifest=tmp_path / "t", out=tmp_path, epochs=3), tmp_path, 1)
    run = TrainOptions(train_manifest=tmp_path / "t", out=tmp_path, max_batch_seconds=4.0)
    (tmp_path / "options.json").write_text(json.dumps(options_record(with_defaults(run))))
    opts = TrainOptions(train_manifest=tmp_path / "t", out=tmp_path, epochs=3, compile=True, given=frozenset({"compile"}))
    kept = resumed_options(opts, tmp_path, 1)
    assert kept.max_batch_seconds == 4.0 and kept.compile  # compile changes no number: it may change on resume
    with pytest.raises(SertrtError, match="--max-batch-seconds 8.0: .* was trained with 4.0"):
        resumed_options(TrainOptions(train_manifest=tmp_path / "t", out=tmp_path, epochs=3, max_batch_seconds=8.0,
                                      given=frozenset({"max_batch_seconds"})), tmp_path, 1)
