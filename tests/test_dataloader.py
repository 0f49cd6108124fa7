"""sertrt.training.data's DataLoader path and sharded validation: the same batches as the planning functions,
the same clips whatever the worker count, and every rank's share of the scores gathered to the one-rank result."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tone_corpus

from sertrt.core.audio import load_audio
from sertrt.core.manifest import read_manifest
from sertrt.model.ser import build_model
from sertrt.training.data import AudioSet, PlannedBatches, default_workers, train_loader
from sertrt.training.distributed import DistInfo, compute_cleanup
from sertrt.training.evaluate import predict_logits
from sertrt.training.train import TrainOptions, _epoch_steps

MAX_SAMPLES = 32000
GOLDEN = Path(__file__).parent / "data" / "dataloader-golden-batches.json"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> AudioSet:
    """16 kHz and 22.05 kHz files (the second resampled, so header lengths must predict soxr's)."""
    root = tmp_path_factory.mktemp("loader")
    utts = read_manifest(make_tone_corpus(root / "a", per_label=4, seconds=(0.6, 3.0)))
    return AudioSet(utts + read_manifest(make_tone_corpus(root / "b", per_label=2, rate=22050, seed=1)))


def loader_batches(data: AudioSet, plan, workers: int, augment=(), epochs=(0,)) -> list[tuple[torch.Tensor, ...]]:
    sampler = PlannedBatches()
    loader = train_loader(data, sampler, MAX_SAMPLES, 16000, augment, seed=5, rank=0, workers=workers, pin_memory=False)
    out = []
    for epoch in epochs:
        sampler.plan(epoch, plan)
        out += list(loader)
    return out


def test_audio_is_decoded_where_it_is_used_not_up_front(data, monkeypatch):
    """Building the set reads headers only; the lengths they give are the decoded (resampled) lengths."""
    import sertrt.training.data as data_module

    decoded = []
    monkeypatch.setattr(data_module, "load_audio", lambda *a: decoded.append(a) or load_audio(*a))
    again = AudioSet(data.utterances)
    assert decoded == []
    assert again.lengths.tolist() == [len(again.audio[i]) for i in range(len(again))]
    assert len(decoded) == len(again) and {u.sample_rate for u in again.utterances} == {16000, 22050}


def test_the_loader_yields_the_batches_of_the_planning_functions(data):
    """The epoch's steps for a seed are the ones recorded from the code before the DataLoader existed, and the
    loader gives exactly those utterances (labels, lengths, audio), micro-batch after micro-batch."""
    golden = json.loads(GOLDEN.read_text())
    for key, per_rank in golden.items():
        seconds, balanced, world, epoch = key.split("-")
        opts = TrainOptions(train_manifest=Path("m"), out=Path("x"), batch_size=3, seed=5, balanced=balanced == "True",
                            max_batch_seconds=None if seconds == "None" else float(seconds))
        for rank, expected in enumerate(per_rank):
            steps, _ = _epoch_steps(data, opts, int(epoch), DistInfo(rank=rank, world_size=int(world)), MAX_SAMPLES)
            assert steps == expected, key
    plan = [b for step in _epoch_steps(data, TrainOptions(train_manifest=Path("m"), out=Path("x"), batch_size=3,
                                                          max_batch_seconds=1.0), 0, DistInfo(), MAX_SAMPLES)[0] for b in step]
    got = loader_batches(data, plan, workers=0)
    assert len(got) == len(plan)
    for indices, (waveform, lengths, labels) in zip(plan, got):
        assert labels.tolist() == data.labels[indices].tolist()
        assert lengths.tolist() == np.minimum(data.lengths[indices], MAX_SAMPLES).tolist()
        assert waveform.shape[1] == max(16000, int(lengths.max()))
        for row, i in enumerate(indices):
            if data.lengths[i] <= MAX_SAMPLES:  # uncropped: the decoded file itself
                assert np.array_equal(waveform[row, : lengths[row]].numpy(), data.audio[i])


def test_worker_count_does_not_change_a_single_sample(data):
    """Augmentation and crops are seeded per (seed, rank, epoch, micro-batch, row), never per worker: 0 and 2
    workers give the same tensors bit for bit, over two epochs of persistent workers, and the epochs differ."""
    steps, _ = _epoch_steps(data, TrainOptions(train_manifest=Path("m"), out=Path("x"), batch_size=4), 0, DistInfo(), MAX_SAMPLES)
    plan = [b for step in steps for b in step]
    augment = ("speed", "noise", "gain", "reverb")
    inline, workers = (loader_batches(data, plan, n, augment, epochs=(0, 1)) for n in (0, 2))
    assert len(inline) == len(workers) == 2 * len(plan)
    for a, b in zip(inline, workers):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(inline[0][0], inline[len(plan)][0])  # same utterances, the next epoch's augmentation


def test_starting_the_workers_leaves_torchs_global_rng_alone(data):
    """A resumed run starts its workers an epoch later than an uninterrupted one: drawing their seed from the
    global RNG would shift every later dropout mask (test_train's resume-after-SIGKILL test caught it)."""
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    loader_batches(data, [[0, 1]], workers=2)
    assert torch.equal(torch.rand(3), expected)


def _score_rank(rank: int, world: int, init: str, manifest: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    info = DistInfo(rank, 0, world)
    try:
        torch.manual_seed(0)
        model = build_model("tiny").eval()
        seen = []
        forward = model.forward
        model.forward = lambda w, n: seen.append(len(w)) or forward(w, n)
        logits = predict_logits(model, AudioSet(read_manifest(manifest)), batch_size=3, info=info)
        np.save(f"{out}.{rank}.npy", logits)
        Path(f"{out}.{rank}.json").write_text(json.dumps(seen))
    finally:
        compute_cleanup(info)  # leave together: a rank that tears down early can be SIGABRTed (see its docstring)


@pytest.mark.slow  # two spawned gloo ranks
def test_two_gloo_ranks_each_score_a_share_and_gather_the_one_rank_logits(tmp_path):
    manifest = make_tone_corpus(tmp_path / "tones", per_label=4, seed=2)  # 16 rows: 6 batches of 3
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    alone = predict_logits(model, AudioSet(read_manifest(manifest)), batch_size=3)
    torch.multiprocessing.spawn(_score_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", str(manifest),
                                                   str(tmp_path / "logits")), nprocs=2)
    for rank in (0, 1):
        assert np.array_equal(np.load(tmp_path / f"logits.{rank}.npy"), alone)  # bit for bit, on every rank
    shares = [json.loads((tmp_path / f"logits.{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(s) for s in shares] == [3, 3] and sum(map(sum, shares)) == 16  # each scored half the batches


def test_workers_option_is_checked_and_recorded(tmp_path, monkeypatch):
    from sertrt.core.errors import SertrtError
    from sertrt.training.options import check_options, options_record

    with pytest.raises(SertrtError, match=r"^--workers -1: must be >= 0$"):
        check_options(TrainOptions(train_manifest=Path("m"), out=tmp_path, workers=-1))
    assert options_record(TrainOptions(train_manifest=Path("m"), out=tmp_path, workers=2))["workers"] == 2
    for cores, workers in ((None, 0), (2, 0), (4, 2), (64, 4)):  # two cores left to the loop; none on a small machine
        monkeypatch.setattr(os, "cpu_count", lambda: cores)
        assert default_workers() == workers
