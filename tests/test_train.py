"""Training end to end on generated tones: learning, resume after SIGKILL, 2-process DDP."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import make_tone_corpus, sertrt_env
from safetensors.torch import load_file

from sertrt.core.manifest import read_manifest, write_manifest
from sertrt.data.split import split_utterances


@pytest.fixture(scope="module")
def tone_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("tone-split")
    utts = read_manifest(make_tone_corpus(root, per_label=12, seed=3))
    train, test = split_utterances(utts, 0.25, seed=0, group_by="none")  # mechanics, not generalisation
    write_manifest(root / "train.jsonl", train)
    write_manifest(root / "test.jsonl", test)
    return root / "train.jsonl", root / "test.jsonl"


def train_args(split, out, *extra):
    return ["train", "--train-manifest", split[0], "--test-manifest", split[1], "--out", out, "--batch-size", "4",
            "--quiet", *extra]


def train_cmd(split, out, *extra):
    """train_args as a process of its own (kill, torchrun, a lock held by this process)."""
    return [sys.executable, "-m", "sertrt", *map(str, train_args(split, out, *extra))]


def history(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_learns_beats_chance_and_refuses_to_overwrite(tone_split, tmp_path, cli):
    out = tmp_path / "run"
    assert cli(*train_args(tone_split, out, "--epochs", "4", "--lr", "1e-3")).returncode == 0
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert max(r["ua"] for r in rows) >= 0.5  # chance is 0.25
    best = json.loads((out / "best.json").read_text())
    assert best["metrics"]["ua"] == max(r["ua"] for r in rows)  # the best epoch, by validation UA
    # chosen on a share of the training manifest; the 12 test utterances are scored once, afterwards
    assert best["metrics"]["count"] == 4 and best["test_metrics"]["count"] == 12
    assert best["dims"]["labels"] == ["neutral", "happy", "angry", "sad"]
    before = (out / "best.safetensors").read_bytes()
    again = cli(*train_args(tone_split, out, "--epochs", "1"))
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error:") and "--resume" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert (out / "best.safetensors").read_bytes() == before


@pytest.mark.slow  # a training process killed mid-run
def test_resume_after_sigkill_matches_an_uninterrupted_run(tone_split, tmp_path):
    args = ("--epochs", "4", "--upstream", "tiny", "--seed", "7")
    reference = tmp_path / "reference"
    subprocess.run(train_cmd(tone_split, reference, *args), env=sertrt_env(), check=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(tone_split, out, *args), env=sertrt_env())
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "metrics.jsonl").exists() and len(history(out)) >= 1):
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before_kill = len(history(out))
    assert 1 <= done_before_kill < 4, "the kill must land before training finished"
    load_file(str(out / "last.safetensors"))  # the checkpoint on disk is whole

    subprocess.run(train_cmd(tone_split, out, *args, "--resume"), env=sertrt_env(), check=True)
    assert [r["epoch"] for r in history(out)] == [1, 2, 3, 4]
    ours, theirs = load_file(str(out / "last.safetensors")), load_file(str(reference / "last.safetensors"))
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-6, msg=name)


def test_resume_applies_or_refuses_options_and_records_only_what_it_does(tone_split, tmp_path, cli):
    from test_cli import assert_one_line_error

    out = tmp_path / "run"
    assert cli(*train_args(tone_split, out, "--epochs", "2", "--lr", "1e-3")).returncode == 0
    recorded = (out / "options.json").read_bytes()
    refusals = [
        (("--epochs", "3", "--lr", "5e-4"), "--lr 0.0005: ", "was trained with 0.001"),
        (("--epochs", "3", "--batch-size", "8"), "--batch-size 8: ", "was trained with 4"),
        (("--epochs", "2"), "--epochs 2: ", "has finished 2 epochs already"),
    ]
    for extra, *fragments in refusals:
        assert_one_line_error(cli(*train_args(tone_split, out, "--resume", *extra)), *fragments)
        assert (out / "options.json").read_bytes() == recorded and len(history(out)) == 2  # nothing done, nothing recorded
    # --lr not given: the run's own (1e-3) is used and recorded, with the new --epochs
    assert cli(*train_args(tone_split, out, "--resume", "--epochs", "3")).returncode == 0
    options = json.loads((out / "options.json").read_text())
    assert (options["lr"], options["epochs"], options["batch_size"]) == (1e-3, 3, 4) and len(history(out)) == 3


@pytest.mark.parametrize("option, value, valid", [("--max-seconds", "0", "must be >= 0.025"), ("--lr", "-1", "must be > 0"),
                                                  ("--dropout", "1.5", "must be in [0, 1)"), ("--batch-size", "0", "must be >= 1"),
                                                  ("--lr", "nan", "must be > 0")])
def test_options_out_of_range_are_one_line_errors(tone_split, tmp_path, option, value, valid, cli):
    from test_cli import assert_one_line_error

    assert_one_line_error(cli(*train_args(tone_split, tmp_path / "run", option, value)), f"{option} ", valid)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # torchrun, two ranks
def test_two_process_ddp_trains_in_sync_and_only_rank0_writes(tone_split, tmp_path):
    out = tmp_path / "ddp"
    result = subprocess.run(train_cmd(tone_split, out, "--epochs", "2", "--devices", "2"), env=sertrt_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2]  # one writer: no duplicated lines
    assert all(r["world_size"] == 2 and r["rank_param_spread"] == 0.0 for r in rows)
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert json.loads((out / "best.json").read_text())["world_size"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grad_worker(rank: int, world: int, port: int, result_path: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist

    from sertrt.model.ser import build_model
    from sertrt.training.distributed import compute_cleanup, compute_init

    info = compute_init("cpu")
    torch.manual_seed(0)
    model = build_model("fbank").eval()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    torch.manual_seed(100 + rank)  # each rank its own batch
    w = torch.randn(2, 8000)
    loss = ddp(w, torch.tensor([8000, 6000])).logsumexp(1).mean()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    local = torch.autograd.grad(model(w, torch.tensor([8000, 6000])).logsumexp(1).mean(), list(model.parameters()))
    local = torch.cat([g.flatten() for g in local])
    gathered = [torch.zeros_like(grads) for _ in range(world)]
    dist.all_gather(gathered, grads)
    locals_ = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(locals_, local)
    if info.is_main:
        torch.save({"synced": gathered, "local": locals_}, result_path)
    compute_cleanup(info)


@pytest.mark.slow  # two spawned gloo ranks
def test_ddp_averages_gradients_across_ranks(tmp_path):
    import torch.multiprocessing as mp

    result = tmp_path / "grads.pt"
    mp.spawn(_grad_worker, args=(2, _free_port(), str(result)), nprocs=2, join=True)
    data = torch.load(result, weights_only=True)
    synced, local = data["synced"], data["local"]
    torch.testing.assert_close(synced[0], synced[1])  # every rank holds the same gradient
    torch.testing.assert_close(synced[0], (local[0] + local[1]) / 2, rtol=1e-4, atol=1e-6)  # = the mean
    assert not torch.allclose(local[0], local[1])  # and the ranks' own gradients did differ


def _test_share_worker(rank: int, world: int, port: int, split: tuple, out: str, record: str) -> None:
    """Trains one epoch as rank `rank`, keeping what the last gather_rows (the test set's) got and gave back."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import numpy as np

    from sertrt.training import evaluate
    from sertrt.training.train import TrainOptions, train

    gather, calls = evaluate.gather_rows, []
    evaluate.gather_rows = lambda rows, info: calls.append((rows.copy(), gather(rows, info))) or calls[-1][1]
    train(TrainOptions(train_manifest=split[0], test_manifest=split[1], out=out, epochs=1, batch_size=4,
                       device="cpu", workers=0, quiet=True))
    np.savez(f"{record}.{rank}.npz", mine=calls[-1][0], gathered=calls[-1][1], threads=torch.get_num_threads())


@pytest.mark.slow  # two spawned gloo ranks
def test_ddp_ranks_score_their_share_of_the_test_set_as_one_process_would(tone_split, tmp_path):
    import numpy as np
    import torch.multiprocessing as mp

    from sertrt.core.metrics import classification_report
    from sertrt.model.io import load_model
    from sertrt.training.data import AudioSet
    from sertrt.training.evaluate import predict_logits

    out, record = tmp_path / "ddp", str(tmp_path / "test-rows")
    mp.spawn(_test_share_worker, args=(2, _free_port(), tone_split, str(out), record), nprocs=2, join=True)
    ranks = [np.load(f"{record}.{r}.npz") for r in range(2)]
    mine = [r["mine"].any(1) for r in ranks]  # the rows each rank scored itself
    assert mine[0].any() and mine[1].any() and not (mine[0] & mine[1]).any() and (mine[0] | mine[1]).all()
    test_set = AudioSet(read_manifest(tone_split[1]))
    model, _ = load_model(out / "best.safetensors")
    # one process, on the ranks' thread count: a sum split over threads rounds by their number, and this
    # process's count is whatever an earlier test in it left
    threads = torch.get_num_threads()
    torch.set_num_threads(int(ranks[0]["threads"]))
    try:
        logits = predict_logits(model, test_set, 4)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(ranks[0]["gathered"], logits)
    recorded = json.loads((out / "best.json").read_text())["test_metrics"]
    assert recorded == {**classification_report(test_set.labels, logits.argmax(1), model.dims.labels),
                        "manifest": str(tone_split[1]), "split": recorded["split"]}


@pytest.mark.slow  # torchrun, two ranks
def test_stats_lr_trains_in_sync_under_ddp_and_a_rank_error_is_one_line(tone_split, tmp_path):
    """The classical floor steps its head alone: through the DDP wrapper, so the ranks' gradients are averaged.
    An error a rank finds (here: --resume with no epoch left) ends in one line, not one per rank and torchrun's."""
    from test_cli import assert_one_line_error

    out = tmp_path / "ddp"
    args = ("--upstream", "stats-lr", "--epochs", "2", "--devices", "2")
    result = subprocess.run(train_cmd(tone_split, out, *args), env=sertrt_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(r["world_size"] == 2 and r["rank_param_spread"] == 0.0 for r in history(out))
    again = subprocess.run(train_cmd(tone_split, out, *args, "--resume"), env=sertrt_env(), capture_output=True,
                           text=True, timeout=300)
    assert_one_line_error(again, "--epochs 2: ", "has finished 2 epochs already")


def test_a_rank_that_does_not_write_checks_the_run_without_probing_the_writers_lock(tone_split, tmp_path):
    """Under DDP the writing rank holds the run folder's lock while the others check their options: their probe
    of that lock failed the run whenever it came second (and could fail the writer's, coming first)."""
    from sertrt.core.atomic import folder_lock
    from sertrt.core.errors import SertrtError
    from sertrt.training.options import TrainOptions, preflight

    opts = TrainOptions(train_manifest=tone_split[0], out=tmp_path / "run")
    with folder_lock(opts.out, "run"):  # the writing rank
        preflight(opts, probe_lock=False)
        with pytest.raises(SertrtError, match="another process is writing this run now"):
            preflight(opts)


def test_devices_with_a_bad_manifest_is_one_line_before_any_rank_starts(tone_split, tmp_path):
    from test_cli import assert_one_line_error

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "nowhere.wav"}\n')
    cmd = [sys.executable, "-m", "sertrt", "train", "--train-manifest", str(bad), "--out", str(tmp_path / "run"),
           "--devices", "2", "--quiet"]
    result = subprocess.run(cmd, env=sertrt_env(), capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, str(bad))
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_a_second_writer_of_a_run_folder_is_refused(tone_split, tmp_path):
    """A run folder is locked while a process writes it: a second `train --out` there ends in one line and
    leaves the folder as it was (the lock is the OS's: it goes with the process that holds it)."""
    from test_cli import assert_one_line_error

    from sertrt.core.atomic import folder_lock

    out = tmp_path / "run"
    out.mkdir()
    with folder_lock(out, "run"):
        result = subprocess.run(train_cmd(tone_split, out, "--epochs", "1", "--seed", "1"), env=sertrt_env(),
                                capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, str(out), "another process is writing")
    assert list(out.iterdir()) == []


def test_a_full_disk_while_training_names_the_file_and_keeps_the_last_checkpoint(tone_corpus, tmp_path, monkeypatch, cli):
    import safetensors.torch
    from safetensors import SafetensorError

    from sertrt.model.io import read_checkpoint

    out = tmp_path / "run"
    args = ["train", "--train-manifest", str(tone_corpus), "--out", str(out), "--upstream", "fbank", "--batch-size", "4", "--quiet"]
    assert cli(*args, "--epochs", "1").returncode == 0
    before = (out / "last.safetensors").read_bytes()

    def full(*a, **kw):  # what safetensors raises on a full disk
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    result = cli(*args, "--epochs", "2", "--resume")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert re.fullmatch(rf"error: {re.escape(str(out))}/(best|last)\.safetensors: No space left on device", lines[0])
    assert (out / "last.safetensors").read_bytes() == before
    assert read_checkpoint(out / "last.safetensors")[0].train_state["epoch"] == 0  # still resumes from epoch 1
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_auto_is_one_device_in_every_command(tone_corpus, tmp_path, monkeypatch):
    """`auto` resolves the same way everywhere: cuda where PyTorch sees a GPU (pretended here; nothing runs on it)."""
    from typer.testing import CliRunner

    import sertrt.training.evaluate
    import sertrt.training.train
    import sertrt.verify.parity
    from sertrt.cli import app
    from sertrt.training.distributed import compute_init

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    seen = {}

    def stand_in(name):
        def record(opts, *a, **kw):
            seen[name] = opts
            raise KeyboardInterrupt  # stop here: nothing runs on the pretended GPU

        return record

    monkeypatch.setattr(sertrt.training.evaluate, "evaluate", stand_in("evaluate"))
    monkeypatch.setattr(sertrt.verify.parity, "run_parity", stand_in("parity"))
    monkeypatch.setattr(sertrt.training.train, "train", stand_in("train"))
    m, run = str(tone_corpus), str(tmp_path / "run")
    for argv in (["evaluate", run, "--manifest", m], ["parity", run, "--run", run, "--manifest", m],
                 ["train", "--train-manifest", m, "--out", run]):
        CliRunner().invoke(app, argv)
    assert seen["evaluate"].device == "cuda" and seen["parity"].torch_device == "cuda"
    assert compute_init(seen["train"].device).device == torch.device("cuda", 0)
