"""`sertrt train`: AdamW + cross-entropy over a train manifest; the epoch with the best validation UA is kept.

One process:            sertrt train --train-manifest T --test-manifest V --out RUN
Several GPUs/processes: sertrt train ... --devices 2        (starts torch.distributed.run itself)
              same as:  torchrun --standalone --nproc-per-node 2 -m sertrt train ... --devices 2
Several nodes:          torchrun --nnodes N --node-rank K --rdzv-endpoint HOST:PORT --nproc-per-node G -m sertrt train ...

RUN gets best.safetensors (+ .json; best validation UA), last.safetensors (model, optimizer and epoch for
--resume), metrics.jsonl (one line per epoch), options.json and tensorboard/. Only rank 0 writes, holding RUN
locked. --max-batch-seconds S accumulates length-bucketed micro-batches of at most S seconds of padded audio into
steps of >= --batch-size utterances. The step never waits for the host: the loss is read every --log-every steps.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..core import atomic
from ..core.audio import SAMPLE_RATE
from ..core.errors import SertrtError
from ..core.manifest import read_manifest
from ..core.metrics import classification_report
from ..core.outputs import claim_output_dir
from ..data.split import carve_validation, split_kind
from ..model.compile import compile_encoder_layers
from ..model.flops import datasheet_peak
from ..model.io import flatten_optimizer, load_model, read_checkpoint, save_checkpoint, unflatten_optimizer
from ..model.ser import SERModel, apply_strategy, build_model, count_parameters
from .data import AudioSet, PlannedBatches, default_workers, group_steps, train_loader
from .distributed import DistInfo, compute_cleanup, compute_init
from .evaluate import predict_logits
from .options import TrainOptions, options_record, preflight, resumed_options, with_defaults
from .throughput import micro_batch_loss, throughput, training_flops


def _print0(info: DistInfo, quiet: bool, *args: Any) -> None:
    if info.is_main and not quiet:
        Console(stderr=True, soft_wrap=True).print(*args)  # soft_wrap: no hard wrap at 80 columns in a log


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Every RNG that training touches (dropout, layer drop, SpecAugment) restarts per epoch, so a
    resumed run repeats exactly what an uninterrupted one would have done."""
    s = (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)


def _check_in_sync(model: torch.nn.Module) -> float:
    """Max over ranks minus min over ranks of a parameter checksum: 0 when DDP kept them equal."""
    total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
    extremes = torch.stack([total, -total])
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)  # (max, -min)
    return float(extremes.sum())


def _train_dtype(info: DistInfo, amp: bool) -> torch.dtype:
    """The dtype of the training matmuls (--amp on CUDA: bf16 where supported, else fp16)."""
    if info.device.type == "cuda" and amp:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _speed_options(model: SERModel, opts: TrainOptions) -> None:
    """--grad-checkpointing, then --compile: both act on a wav2vec2 upstream's layers and leave the math as it is."""
    for name in ("grad_checkpointing", "compile"):
        if getattr(opts, name) and model.dims.upstream.kind != "wav2vec2":
            raise SertrtError(f"--{name.replace('_', '-')} needs a wav2vec2 upstream, not {model.dims.upstream.name!r}")
    if opts.grad_checkpointing:
        # transformers' layers checkpoint their own forward, so Wav2Vec2Upstream's loop over them recomputes them too
        hf: Any = model.upstream.model
        enable = getattr(hf, "activation_checkpointing_enable", None) or hf.gradient_checkpointing_enable  # renamed in 5.x
        enable({"use_reentrant": False})
    if opts.compile:
        compile_encoder_layers(model)


def param_groups(model: SERModel, lr: float, head_lr: float) -> list[dict[str, Any]]:
    """The trainable parameters as AdamW groups: one (at the optimizer's lr) when `head_lr` equals `lr`, else the
    upstream's at `lr` and the head's, with the upstream's layer weights (SUPERB's featurizer), at `head_lr`."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if head_lr == lr:
        return [{"params": [p for _, p in trainable]}]
    is_upstream = [n.startswith("upstream.") and n != "upstream.layer_weights" for n, _ in trainable]
    groups = [{"params": [p for (_, p), u in zip(trainable, is_upstream) if u == want], "lr": group_lr}
              for want, group_lr in ((True, lr), (False, head_lr))]
    return [g for g in groups if g["params"]]


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup: float, total_steps: Any,
                   state: dict[str, Any] | None = None) -> Any:
    """transformers.get_scheduler over `total_steps()` optimizer steps: linear warm-up over `warmup` steps (a share
    when < 1), then constant or a decay to 0; None for constant without warm-up. `state` continues a resumed run."""
    if schedule == "constant" and warmup == 0:
        return None
    from transformers import get_scheduler

    total = total_steps()
    scheduler = get_scheduler("constant_with_warmup" if schedule == "constant" else schedule, optimizer,
                              num_warmup_steps=int(warmup) if warmup >= 1 else round(warmup * total),
                              num_training_steps=total)
    if state is not None:
        scheduler.load_state_dict(state)
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr  # construction set step 0's lr; the run was at its saved step
    return scheduler


def make_optimizer(params: list[Any], lr: float, weight_decay: float, fused: bool,
                   state: dict[str, Any] | None = None) -> torch.optim.AdamW:
    """AdamW over `params` (parameters or param_groups), `fused` on CUDA; `state` continues a resumed run."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True if fused else None)
    if state is not None:
        optimizer.load_state_dict(state)
    return optimizer


def _epoch_steps(data: AudioSet, opts: TrainOptions, epoch: int, info: DistInfo,
                 max_samples: int) -> tuple[list[list[list[int]]], list[int | None]]:
    """This rank's optimizer steps for the epoch, each a list of micro-batches, and each step's utterances over
    all ranks, which its loss is the mean over (None: fixed batches, one per step, the loss its own mean)."""
    if opts.max_batch_seconds is None:
        batches = data.batches(opts.batch_size, shuffle=True, seed=opts.seed, epoch=epoch, balanced=opts.balanced)
        per_rank = len(batches) // info.world_size or 1  # equal step counts keep DDP in lockstep
        mine = [batches[(info.rank + i * info.world_size) % len(batches)] for i in range(per_rank)]
        return [[b] for b in mine], [None] * len(mine)
    micro = data.budget_batches(int(opts.max_batch_seconds * SAMPLE_RATE), max_samples, opts.seed, epoch,
                                opts.balanced, min_samples=SAMPLE_RATE)
    steps = group_steps(micro, opts.batch_size, info.world_size)
    return [step[info.rank :: info.world_size] for step in steps], [sum(len(b) for b in step) for step in steps]


def train(opts: TrainOptions) -> dict[str, Any]:
    info = compute_init(opts.device)
    try:
        with contextlib.ExitStack() as held:
            result = _train(opts, info, held)
    except BaseException:
        compute_cleanup(info, wait=False)
        raise
    compute_cleanup(info)
    return result


def _train(opts: TrainOptions, info: DistInfo, held: contextlib.ExitStack) -> dict[str, Any]:
    out = Path(opts.out)
    last_path, best_path = out / "last.safetensors", out / "best.safetensors"
    preflight(opts, probe_lock=info.is_main)
    if info.is_main:  # the one writer holds the run folder until it returns (a second `train --out` is refused)
        held.enter_context(atomic.folder_lock(out, "run"))

    torch.manual_seed(opts.seed)
    start_epoch, best_ua, history = 0, -1.0, []
    optim_state = sched_state = None
    if opts.resume:
        header, tensors = read_checkpoint(last_path)
        state = header.train_state or {}
        if "epoch" not in state or header.optimizer is None:
            raise SertrtError(f"{last_path}: holds no training state to resume from (a best.safetensors copied over it?)")
        opts = resumed_options(opts, out, state["epoch"] + 1)  # refuses another model (RESUME_KEEPS)
        model = SERModel(header.dims)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optim_state = unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optim.")}, header.optimizer)
        start_epoch, best_ua, history = state["epoch"] + 1, state["best_ua"], state["history"]
        sched_state = state.get("scheduler")
        strategy = header.strategy
        _print0(info, opts.quiet, f"resuming {out} after epoch {state['epoch'] + 1}")
    else:
        model = build_model(opts.upstream, opts.head, opts.proj_size, opts.hidden_size, dropout=opts.dropout,
                            upstream_layers=opts.upstream_layers, layer_weights=opts.layer_weights, pretrained=opts.pretrained)
        strategy = opts.strategy
    opts = with_defaults(opts)
    apply_strategy(model, strategy, opts.freeze_feature_encoder)
    flops_strategy = "semi" if opts.freeze_feature_encoder and strategy == "full" else str(strategy)
    model.to(info.device)
    _speed_options(model, opts)

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"), disable=not info.is_main or opts.quiet, transient=True,
    )
    with progress:
        train_utts = read_manifest(opts.train_manifest)
        if opts.valid_manifest is not None:
            valid_utts, valid_split = read_manifest(opts.valid_manifest), {"manifest": str(opts.valid_manifest)}
        else:
            train_utts, valid_utts, how = carve_validation(train_utts, opts.valid_fraction, opts.seed)
            valid_split = {"fraction": opts.valid_fraction, "of": str(opts.train_manifest), "per_language": how}
        test_utts = read_manifest(opts.test_manifest) if opts.test_manifest is not None else []
        # whether the test speakers were heard in training or validation: said wherever the test score is
        test_split = split_kind([*train_utts, *valid_utts], test_utts)
        task = progress.add_task("reading audio headers", total=len(train_utts) + len(valid_utts) + len(test_utts), status="")
        advance = lambda n: progress.advance(task, n)  # noqa: E731
        train_set, valid_set = AudioSet(train_utts, advance), AudioSet(valid_utts, advance)
        test_set = AudioSet(test_utts, advance) if test_utts else None
        progress.remove_task(task)

        optimizer = make_optimizer(param_groups(model, opts.lr, opts.head_lr), opts.lr, opts.weight_decay,
                                   fused=info.device.type == "cuda", state=optim_state)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        amp_dtype = _train_dtype(info, opts.amp)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)  # bf16 needs no loss scaling
        # the classical floor trains its head alone, on fixed features
        net: Any = model.head if model.dims.upstream.kind == "stats-lr" else model
        if info.distributed:
            # Layer drop skips whole transformer layers, leaving their parameters unused in a step.
            layerdrop = model.dims.upstream.config.get("layerdrop", 0.0) if model.dims.upstream.kind == "wav2vec2" else 0.0
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                find_unused_parameters=layerdrop > 0 and strategy != "frozen",
            )
        writer = None
        if info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            claim_output_dir(out, "run")
            # what this run really uses (on --resume: the run's own options, --epochs and the data paths new)
            atomic.write_text(out / "options.json", json.dumps(options_record(opts), indent=1) + "\n")
            writer = held.enter_context(SummaryWriter(str(out / "tensorboard"), purge_step=start_epoch))
        cut = model.dims.upstream.source_layers
        _print0(
            info, opts.quiet,
            f"[bold]{model.dims.upstream.name}+{model.dims.head.kind}[/] strategy={strategy} "
            + (f"upstream_layers={model.dims.upstream.config['num_hidden_layers']}/{cut} " if cut is not None else "")
            + f"params={count_parameters(model) / 1e6:.2f}M trainable={count_parameters(model, True) / 1e6:.2f}M "
            f"train={len(train_set)} valid={len(valid_set)} test={len(test_set) if test_set else 0} "
            f"world={info.world_size} device={info.device}",
        )
        _print0(info, opts.quiet, "validation (chooses the best epoch): " + (
            str(opts.valid_manifest) if opts.valid_manifest is not None else
            f"{opts.valid_fraction:g} of the training manifest, "
            + ", ".join(f"{language} {kind}" for language, kind in valid_split["per_language"].items())))

        # The classical floor's features are fixed statistics of whole utterances: computed once, not every epoch.
        fixed = valid_fixed = None
        if model.dims.upstream.kind == "stats-lr":
            fixed, valid_fixed = (_fixed_features(model, d, opts.batch_size, info.device) for d in (train_set, valid_set))
            if start_epoch == 0:
                model.head.standardise(fixed[:, 0])
            else:  # a resumed floor has its statistics in the checkpoint's running mean and variance
                model.head.fixed_statistics = True
        max_samples = int(opts.max_seconds * SAMPLE_RATE)
        scheduler = make_scheduler(optimizer, opts.schedule, opts.warmup, lambda: sum(
            len(_epoch_steps(train_set, opts, e, info, max_samples)[0]) for e in range(opts.epochs)), sched_state)
        sampler = PlannedBatches()
        loader = train_loader(train_set, sampler, max_samples, SAMPLE_RATE,  # 1 s: more frames than a SpecAugment span
                              opts.augment, opts.seed, info.rank, default_workers() if opts.workers is None else opts.workers,
                              pin_memory=info.device.type == "cuda")
        counts_flops = model.dims.upstream.kind == "wav2vec2"  # what model_flops understands
        peak = datasheet_peak(info.device, amp_dtype) if counts_flops else None
        global_step = sum(int(r["optimizer_steps"]) for r in history)
        for epoch in range(start_epoch, opts.epochs):
            # before each epoch, so a resumed run that had stopped early stays stopped
            if opts.patience is not None and _early_stop(history, opts.patience, info):
                _print0(info, opts.quiet, f"early stop after epoch {epoch}: no better validation UA for {opts.patience} epochs")
                break
            _seed_epoch(opts.seed, epoch, info.rank)
            net.train()
            if strategy == "frozen":
                model.upstream.eval()  # a frozen upstream is a fixed feature extractor: no dropout
            steps, step_utterances = _epoch_steps(train_set, opts, epoch, info, max_samples)
            sampler.plan(epoch, [batch for step in steps for batch in step])
            batches = iter(loader if fixed is None else ())
            task = progress.add_task(f"epoch {epoch + 1}/{opts.epochs}", total=len(steps), status="")
            if info.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(info.device)
            # summed on the device and read once per log interval: the step itself never waits for the host
            loss_sum = torch.zeros((), dtype=torch.float64, device=info.device)
            seen, valid_samples, batch_samples, flops = 0, 0, 0, 0.0
            logged_loss, logged_seen = 0.0, 0
            t0 = time.perf_counter()
            for n, (step, utterances) in enumerate(zip(steps, step_utterances)):
                optimizer.zero_grad(set_to_none=True)
                for m, indices in enumerate(step):
                    # DDP averages gradients once per step, after its last micro-batch
                    sync = m == len(step) - 1 or not info.distributed
                    with contextlib.nullcontext() if sync else net.no_sync():
                        if fixed is not None:
                            labels = torch.from_numpy(train_set.labels[indices]).to(info.device)
                            logits = net(fixed[indices], torch.ones(len(indices), dtype=torch.long, device=info.device))
                        else:
                            waveform, lengths, labels = next(batches)
                            valid_samples += int(lengths.sum())
                            batch_samples += waveform.numel()
                            if counts_flops:
                                flops += training_flops(model.dims.upstream.config, model.dims.head, flops_strategy,
                                                        waveform.shape[1], waveform.shape[0])
                            waveform, lengths, labels = (t.to(info.device, non_blocking=True)  # pinned on CUDA
                                                         for t in (waveform, lengths, labels))
                            with torch.autocast(info.device.type, amp_dtype, enabled=amp_dtype != torch.float32):
                                logits = net(waveform, lengths)
                        loss, ce_sum = micro_batch_loss(logits, labels, opts.label_smoothing, utterances, info.world_size)
                        scaler.scale(loss).backward()
                    loss_sum += ce_sum
                    seen += len(indices)
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                global_step += 1
                progress.advance(task)
                if (n + 1) % opts.log_every == 0 or n == len(steps) - 1:
                    total = loss_sum.item()  # the loop's one host sync, every log_every steps (this rank's)
                    if writer is not None:
                        writer.add_scalar("train/loss", (total - logged_loss) / max(seen - logged_seen, 1), global_step)
                    logged_loss, logged_seen = total, seen
                    progress.update(task, status=f"loss {total / max(seen, 1):.3f}")
            progress.remove_task(task)
            if info.device.type == "cuda":
                torch.cuda.synchronize(info.device)  # the epoch's time includes its last step's kernels
            elapsed = time.perf_counter() - t0
            # this rank's peak over the epoch's training steps (evaluation comes after)
            peak_gib = torch.cuda.max_memory_allocated(info.device) / 2**30 if info.device.type == "cuda" else None
            totals = torch.stack([loss_sum, *(torch.tensor(float(v), dtype=torch.float64, device=info.device)
                                              for v in (seen, valid_samples, batch_samples, flops))])
            drift = _check_in_sync(model) if info.distributed else 0.0
            if info.distributed:
                dist.all_reduce(totals)  # loss and throughput over all ranks, not rank 0's share
            loss_total, seen, valid_samples, batch_samples, flops = totals.tolist()
            if drift > 1e-3:
                raise RuntimeError(f"DDP ranks diverged after epoch {epoch + 1} (parameter checksum spread {drift})")

            if valid_fixed is not None:
                model.eval()
                with torch.no_grad():
                    logits = model.head(valid_fixed, torch.ones(len(valid_set), dtype=torch.long, device=info.device)).cpu().numpy()
            else:  # every rank scores its share: none waits while rank 0 validates alone
                logits = predict_logits(model, valid_set, opts.batch_size, info.device, info=info)
            if info.is_main:
                report = classification_report(valid_set.labels, logits.argmax(1), model.dims.labels)
                row = {
                    "epoch": epoch + 1, "train_loss": loss_total / seen, "wa": report["wa"], "ua": report["ua"],
                    "macro_f1": report["macro_f1"], "confusion_matrix": report["confusion_matrix"],
                    "samples_per_s": seen / elapsed, "epoch_seconds": elapsed,
                    "world_size": info.world_size, "rank_param_spread": drift,
                    "peak_memory_gib": peak_gib, "optimizer_steps": len(steps),
                    **throughput(elapsed, valid_samples, batch_samples, flops if counts_flops else None,
                                 peak * info.world_size if peak is not None else None),
                }
                history.append(row)
                improved = report["ua"] > best_ua
                best_ua = max(best_ua, report["ua"])
                # metrics: the validation scores that chose this epoch (the test set is scored after training)
                meta = {"strategy": strategy, "epoch": epoch, "metrics": report, "valid_split": valid_split,
                        "world_size": info.world_size}
                if improved:
                    save_checkpoint(best_path, model, meta)
                optim_tensors, optim_rest = flatten_optimizer(optimizer.state_dict())
                train_state = {"epoch": epoch, "best_ua": best_ua, "history": history,
                               **({"scheduler": scheduler.state_dict()} if scheduler is not None else {})}
                save_checkpoint(last_path, model, {**meta, "optimizer": optim_rest, "train_state": train_state},
                                extra_tensors=optim_tensors, sidecar=False)
                atomic.write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
                for key in ("train_loss", "wa", "ua", "macro_f1", "samples_per_s", "audio_seconds_per_s", "padding_share", "mfu"):
                    if row.get(key) is not None:
                        writer.add_scalar(f"{'valid' if key in ('wa', 'ua', 'macro_f1') else 'train'}/{key}", row[key], epoch + 1)
                writer.flush()
                _print0(
                    info, opts.quiet,
                    f"epoch {epoch + 1:>3}/{opts.epochs}  loss {row['train_loss']:.3f}  valid WA {row['wa']:.1%}  "
                    f"UA {row['ua']:.1%}  F1 {row['macro_f1']:.1%}  {row['samples_per_s']:.1f} samples/s"
                    + (f"  padding {row['padding_share']:.1%}" if row["padding_share"] is not None else "")
                    + (f"  MFU {row['mfu']:.1%}" if "mfu" in row else "")
                    + ("  [green]best[/]" if improved else ""),
                )
    if info.distributed:
        dist.barrier()  # until rank 0 has written best.safetensors, which every rank then scores its share of the test set with
    test = _score_test(best_path, test_set, test_split, opts, info) if test_set is not None and best_path.is_file() else None
    if not info.is_main:
        return {}
    return {"out": str(out), "best_ua": best_ua, "epochs": len(history), "last": history[-1] if history else None,
            "test": test}


def _early_stop(history: list[dict[str, Any]], patience: int, info: DistInfo) -> bool:
    """`patience` epochs since the best validation UA? Rank 0 keeps the history and decides for every rank."""
    uas = [row["ua"] for row in history]
    stop = info.is_main and bool(uas) and len(uas) - 1 - int(np.argmax(uas)) >= patience
    if info.distributed:
        flag = torch.tensor([float(stop)], device=info.device)
        dist.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


@torch.no_grad()
def _fixed_features(model: SERModel, data: AudioSet, batch_size: int, device: torch.device) -> torch.Tensor:
    """The upstream's output for every whole utterance, (N, 1, D): the stats-lr floor's fixed statistics."""
    out = torch.zeros(len(data), 1, model.upstream.hidden_size, device=device)
    for indices in data.batches(batch_size, shuffle=False):
        waveform, lengths, _ = data.collate(indices)
        out[indices] = model.features(waveform.to(device), lengths.to(device))[0]
    return out


def _score_test(best_path: Path, test_set: AudioSet, split: str, opts: TrainOptions, info: DistInfo) -> dict[str, Any]:
    """The test manifest, scored once with the best epoch's weights (each rank its share), recorded by rank 0 in
    best.safetensors as `test_metrics` beside the validation `metrics`; `split`: whether its speakers were unseen."""
    best, header = load_model(best_path)
    best.to(info.device)
    logits = predict_logits(best, test_set, opts.batch_size, info.device, info=info)
    if not info.is_main:
        return {}
    report = classification_report(test_set.labels, logits.argmax(1), best.dims.labels)
    report.update(manifest=str(opts.test_manifest), split=split)
    meta = {k: v for k, v in header.to_dict().items() if k not in ("format", "format_version", "code", "dims")}
    save_checkpoint(best_path, best, {**meta, "test_metrics": report})
    _print0(info, opts.quiet, f"best epoch {header.epoch + 1} (valid UA {header.metrics['ua']:.1%}); "
                              f"test ({split}), scored once: WA {report['wa']:.1%}  UA {report['ua']:.1%}  F1 {report['macro_f1']:.1%}")
    return report
