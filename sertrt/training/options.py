"""What `sertrt train` is asked to do: its options, their checks (`preflight`), and what a resumed run keeps."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import atomic
from ..core.audio import RECEPTIVE_FIELD, SAMPLE_RATE
from ..core.choices import SCHEDULES
from ..core.errors import SertrtError
from ..core.manifest import read_manifest
from ..core.outputs import claim_output_dir
from ..model.upstream import UPSTREAM_NAMES
from .distributed import resolve_device


@dataclass
class TrainOptions:
    train_manifest: Path
    out: Path
    test_manifest: Path | None = None  # scored once, at the end, with the best epoch's weights
    # the best epoch is chosen on this manifest, or on `valid_fraction` of the training manifest held out
    valid_manifest: Path | None = None
    valid_fraction: float = 0.1
    upstream: str = "tiny"  # named config, or a pretrained directory / hub id
    pretrained: str | None = None  # weights for the named wav2vec2 upstream: a model folder or hub id
    upstream_layers: int | None = None  # keep the first K transformer layers (wav2vec2 upstreams); None: all
    head: str = "hgfm"
    strategy: str = "full"
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-4  # the upstream's peak learning rate
    head_lr: float | None = None  # the head's (and --layer-weights'); None: --lr, one parameter group
    warmup: float = 0.0  # linear warm-up: optimizer steps if >= 1, else this share of all steps
    schedule: str = "constant"  # of SCHEDULES: after warm-up, lr stays, or decays to 0 at the last step
    # keep the CNN feature encoder fixed under strategy full; None: on for pretrained weights, off for random init
    freeze_feature_encoder: bool | None = None
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    max_seconds: float = 6.0  # training crops longer utterances (evaluation never crops)
    proj_size: int | None = None
    hidden_size: int | None = None
    dropout: float = 0.1
    augment: tuple[str, ...] = ()  # of AUGMENTATIONS: speed, noise, gain, reverb
    layer_weights: bool = False  # a learnable softmax-weighted sum over every upstream layer (wav2vec2), as SUPERB
    balanced: bool = False  # class-balanced sampling: every label equally likely in each batch
    label_smoothing: float = 0.0
    patience: int | None = None  # stop after this many epochs without a better validation UA
    seed: int = 0
    devices: int = 1
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA; ignored on CPU
    # seconds of padded audio per micro-batch, accumulated into steps of >= batch_size; None: fixed batches
    max_batch_seconds: float | None = None
    log_every: int = 50  # optimizer steps between reads of the loss (the only host sync of the loop)
    # DataLoader processes per rank (0: in the training process); None: default_workers(). Results do not depend on it.
    workers: int | None = None
    compile: bool = False  # torch.compile the upstream's encoder layers (wav2vec2)
    grad_checkpointing: bool = False  # recompute the upstream's layers in the backward pass (wav2vec2)
    resume: bool = False
    quiet: bool = False
    # the options the user set (None: all); on --resume an unset option is the run's, a set one must equal it
    given: frozenset[str] | None = None


# What a run is: a resumed run keeps these, so setting one to another value is refused, never ignored.
RESUME_KEEPS = ("upstream", "pretrained", "upstream_layers", "head", "strategy", "batch_size", "lr", "head_lr", "warmup",
                "schedule", "freeze_feature_encoder", "weight_decay", "grad_clip",
                "max_seconds", "proj_size", "hidden_size", "dropout", "seed", "amp", "valid_manifest", "valid_fraction",
                "augment", "layer_weights", "balanced", "label_smoothing", "patience", "max_batch_seconds")


def options_record(opts: TrainOptions) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(opts).items() if k != "given"}


def check_options(opts: TrainOptions) -> None:
    """Range checks, one line each: a value that cannot train is refused before anything is loaded."""
    checks = [("epochs", opts.epochs >= 1, ">= 1"), ("batch_size", opts.batch_size >= 1, ">= 1"),
              ("lr", opts.lr > 0, "> 0"), ("head_lr", opts.head_lr is None or opts.head_lr > 0, "> 0"),
              ("warmup", opts.warmup == 0 or 0 < opts.warmup < 1 or (opts.warmup >= 1 and float(opts.warmup).is_integer()),
               "0, a share in (0, 1), or a whole number of steps"),
              ("schedule", opts.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"), ("weight_decay", opts.weight_decay >= 0, ">= 0"),
              ("grad_clip", opts.grad_clip > 0, "> 0"),
              ("max_seconds", opts.max_seconds >= RECEPTIVE_FIELD / SAMPLE_RATE, f">= {RECEPTIVE_FIELD / SAMPLE_RATE:g} (one frame)"),
              ("dropout", 0 <= opts.dropout < 1, "in [0, 1)"), ("devices", opts.devices >= 1, ">= 1"),
              ("proj_size", opts.proj_size is None or opts.proj_size >= 1, ">= 1"),
              ("hidden_size", opts.hidden_size is None or opts.hidden_size >= 1, ">= 1"),
              ("upstream_layers", opts.upstream_layers is None or opts.upstream_layers >= 0, ">= 0"),
              ("valid_fraction", 0 < opts.valid_fraction < 1, "in (0, 1)"),
              ("label_smoothing", 0 <= opts.label_smoothing < 1, "in [0, 1)"),
              ("patience", opts.patience is None or opts.patience >= 1, ">= 1"),
              ("max_batch_seconds", opts.max_batch_seconds is None or opts.max_batch_seconds > 0, "> 0"),
              ("log_every", opts.log_every >= 1, ">= 1"),
              ("workers", opts.workers is None or opts.workers >= 0, ">= 0")]
    for name, ok, valid in checks:
        if not ok:  # NaN fails every comparison, so it lands here too
            raise SertrtError(f"--{name.replace('_', '-')} {getattr(opts, name)}: must be {valid}")


def with_defaults(opts: TrainOptions) -> TrainOptions:
    """The options with their derived defaults filled in (what options.json records): the feature encoder
    frozen for pretrained weights, the head at the upstream's lr."""
    pretrained = opts.pretrained is not None or opts.upstream not in UPSTREAM_NAMES
    return dataclasses.replace(
        opts, head_lr=opts.lr if opts.head_lr is None else opts.head_lr,
        freeze_feature_encoder=pretrained if opts.freeze_feature_encoder is None else opts.freeze_feature_encoder)


def resumed_options(opts: TrainOptions, out: Path, finished_epochs: int) -> TrainOptions:
    """The options a resume really runs with: the run's own for everything in RESUME_KEEPS that was not
    set; a set one that differs is refused; --epochs must go beyond what is finished."""
    stored = json.loads((out / "options.json").read_text(encoding="utf-8"))
    given = set(opts.__dataclass_fields__) if opts.given is None else opts.given
    current = options_record(with_defaults(opts))  # a default derived from other options is compared as derived
    kept: dict[str, Any] = {}
    for name in RESUME_KEEPS:
        if current[name] == stored[name]:
            continue
        if name in given:
            raise SertrtError(f"--{name.replace('_', '-')} {current[name]}: {out} was trained with {stored[name]}, and a "
                              "resumed run keeps it (drop the option, or train a new run in another --out)")
        kept[name] = tuple(stored[name]) if name == "augment" else stored[name]  # JSON holds a list
    if opts.epochs <= finished_epochs:
        raise SertrtError(f"--epochs {opts.epochs}: {out} has finished {finished_epochs} epochs already; "
                          f"give more to continue it (nothing was changed)")
    return dataclasses.replace(opts, **kept)


def preflight(opts: TrainOptions, probe_lock: bool = True) -> None:
    """What a run refuses before it loads anything (busy or foreign run folder, options out of range, unreadable
    manifests); `--devices N` runs it before starting the ranks, so an error is one line, not one per rank.
    `probe_lock=False` on the ranks that do not write: the writing rank may hold the folder's lock already."""
    out = Path(opts.out)
    if probe_lock and out.is_dir():
        with atomic.folder_lock(out, "run"):
            pass
    if opts.resume and not (out / "last.safetensors").is_file():
        raise SertrtError(f"{out}: nothing to resume (no last.safetensors)")
    if not opts.resume and ((out / "last.safetensors").exists() or (out / "best.safetensors").exists()):
        raise SertrtError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
    check_options(opts)
    resolve_device(opts.device)
    claim_output_dir(out, "run", create=False)  # never write a run into a folder that holds something else
    for manifest in (opts.train_manifest, opts.valid_manifest, opts.test_manifest):
        if manifest is not None:
            read_manifest(manifest)
