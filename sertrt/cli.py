"""The `sertrt` command line: thin typer wrappers, one options dataclass and one library call each.

Heavy imports (torch, transformers) happen inside the commands, so `sertrt --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from . import __version__
from .core.choices import (BACKENDS, CALIBRATION_METHODS, DEVICES, GROUPINGS, HEAD_NAMES, ORT_PROVIDERS, PCM_FORMATS,
                           PROTOCOLS, SCHEDULES, SMOOTHINGS, STRATEGIES, TABLES, TORCH_PRECISIONS, TRITON_KINDS)
from .core.errors import CheckFailed, SertrtError
from .core.precisions import CPU_TARGETS, PRECISIONS

EXIT_CODES = "Exit codes: 0 ok, 1 bad input (a file, an option), 2 usage, 3 a check failed (parity, export validation)."
app = typer.Typer(
    help="Speech emotion recognition from corpus to edge device: train an XLSR/wav2vec2 + HGFM model, export it to "
         "ONNX (fp32, fp16, int8) and TensorRT, and label audio with a torch-free runtime (predict, stream).",
    epilog=EXIT_CODES, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None,
)
data_app = typer.Typer(help="Make and split manifests.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")
# Plain text (help too: rich_markup_mode=None): our messages hold paths and user input, which rich's markup
# ("sertrt[vad]") and :emoji: codes would eat.
PLAIN = {"soft_wrap": True, "markup": False, "emoji": False, "highlight": False}
console = Console(**PLAIN)
err = Console(stderr=True, **PLAIN)  # progress and log lines
errors = Console(stderr=True, **PLAIN)  # never --quiet


class Choice(str, Enum):
    """An option's valid values, listed by `--help`; a member is its value wherever a string goes."""

    def __str__(self) -> str:
        return self.value

    def __reduce_ex__(self, protocol: object) -> tuple:  # pickled as its plain value: no class to look up
        return str, (self.value,)


def choice(name: str, *values: str) -> type[Choice]:
    return Choice(name, [(v, v) for v in values])  # type: ignore[return-value]


def _with_progress(what: str, run: Callable[..., Any], opts: object, messages: bool = False) -> Any:
    """`run(opts, progress=...)` under a transient progress bar on stderr, fed (done, total) counts or messages."""
    from rich.progress import Progress

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(what, total=None)
        if messages:
            return run(opts, progress=lambda msg: progress.update(task, description=str(msg)[:70]))
        return run(opts, progress=lambda done, total: progress.update(task, completed=done, total=total))


def _set_quiet(quiet: bool) -> bool:
    err.quiet = quiet  # errors are printed all the same (`errors`)
    return quiet


def _show_version(value: bool) -> None:
    if value:
        console.print(f"sertrt {__version__}")
        raise typer.Exit()


@app.callback()
def _app(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print sertrt's version and exit.")) -> None:
    pass

# Options several commands share, declared once (mostly RunnerOptions' fields: how a bundle is run).
Backend = Annotated[choice("Backend", *BACKENDS), typer.Option(help="ONNX Runtime, or the bundle's TensorRT engine.")]
TorchDevice = Annotated[str, typer.Option(help="PyTorch side: cpu, cuda or cuda:N.")]
AutoDevice = Annotated[str, typer.Option(help="PyTorch device: auto (cuda when PyTorch sees a GPU, else cpu), cpu, "
                                              "cuda or cuda:N.")]
TorchPrecision = Annotated[choice("TorchPrecision", *TORCH_PRECISIONS), typer.Option(
    help="PyTorch side: fp32, or fp16/bf16 (the half model: weights cast once, norms and head FP32).")]
CudaGraphs = Annotated[bool, typer.Option("--cuda-graphs", help="PyTorch side (and stream --backend trt): replay one "
                                                                "CUDA graph per (batch, samples) shape (CUDA only).")]
Provider = Annotated[choice("Provider", *ORT_PROVIDERS), typer.Option(help="ort: the execution provider.")]
Threads = Annotated[Optional[int], typer.Option(help="ort: intra-op threads (default: ONNX Runtime's).")]
Spinning = Annotated[bool, typer.Option("--spinning/--no-spinning",
                                        help="ort: intra-op threads spin while a call runs (default off: docs/runtime.md).")]
Trust = Annotated[Optional[Path], typer.Option(help="ed25519 public key (PEM): refuse a bundle it did not sign.")]
AllowLocalEngine = Annotated[bool, typer.Option("--allow-local-engine", help="With --trust: load TensorRT engines built on "
                                                "this device (unsigned; this folder's permissions protect them).")]
WindowSeconds = Annotated[Optional[float], typer.Option(help="Streaming window (default: the bundle's, 2.0).")]
HopSeconds = Annotated[Optional[float], typer.Option(help="Streaming hop (default: the bundle's, 0.5).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", callback=_set_quiet, help="No progress or log lines on stderr: "
                                                                                "results and errors only.")]
Device = Annotated[choice("Device", *DEVICES), typer.Option(
    help="cpu and cuda: ONNX Runtime's CPU or CUDA provider; tensorrt: the bundle's TensorRT engine (`sertrt "
         "build-engine`), or ONNX Runtime's TensorRT provider when the bundle has none.")]
# The stream's gate (`parity` checks windows through the same one)
SilenceDbfs = Annotated[Optional[float], typer.Option(help="Windows quieter than this skip inference.")]
Vad = Annotated[bool, typer.Option("--vad", help="Score only windows with at least --min-speech of speech, by a "
                                                 "trained voice-activity detector (--vad-model).")]
VadModel = Annotated[Optional[str], typer.Option(
    help="The --vad detector (implies --vad; default silero): silero[:MODEL.onnx], webrtc[:0-3] (sertrt[vad]) "
         "or energy[:DBFS].")]
MinSpeech = Annotated[float, typer.Option(help="--vad: share of a window's frames that must be speech.")]


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Folder for the synthetic corpus (corpus-like layouts + manifest.jsonl)."),
    seed: int = typer.Option(0, help="Same seed, same bytes."),
    scale: float = typer.Option(1.0, help="Share of the full corpus to speak, in (0, 1] (1.0: 1,216 utterances + 120 transfer)."),
    languages: str = typer.Option("en,de,it,fr", help="Comma-separated: en (TESS- and SAVEE-like), de (EmoDB-like), it (EMOVO-like), fr (eNTERFACE-like held-out transfer set)."),
    noise_snr_db: Optional[float] = typer.Option(30.0, help="Additive noise SNR in dB."),
    no_noise: bool = typer.Option(False, "--no-noise", help="Clean audio."),
    workers: int = typer.Option(2, help="espeak-ng processes in parallel."),
    quiet: Quiet = False,
) -> None:
    """Speak emotional sentences with espeak-ng in corpus layouts (EmoDB, EMOVO, TESS)."""
    from .data.synth import SynthOptions, synthesize

    opts = SynthOptions(out=out, seed=seed, scale=scale, languages=_csv(languages),
                        noise_snr_db=None if no_noise else noise_snr_db, workers=workers)
    manifest = _with_progress("synthesizing", synthesize, opts)
    console.print(f"wrote {manifest}")


@data_app.command("prepare")
def data_prepare(
    corpus: list[str] = typer.Option(..., help="NAME=ROOT, repeatable; names: iemocap, emodb, tess, savee, ema, emovo, enterface."),
    out: Path = typer.Option(..., help="Folder for the 16 kHz audio cache, manifests and prepare_report.{json,md}."),
    workers: int = typer.Option(2, help="Files converted in parallel."),
    ema_pattern: Optional[str] = typer.Option(None, help="EMA: regex with named groups speaker and emotion, matched against paths relative to its root."),
    ema_label: list[str] = typer.Option([], help="EMA: CODE=LABEL, repeatable; replaces the default code map."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Prepare a partial corpus (missing sessions or speakers) with a warning."),
    quiet: Quiet = False,
) -> None:
    """Read corpora as distributed, resample to 16 kHz into a cache, write manifests and a report."""
    from .data.prepare import PrepareOptions, prepare

    def pairs(values: list[str], what: str) -> dict[str, str]:
        parsed = {}
        for value in values:
            name, _, rest = value.partition("=")
            if not name or not rest:
                raise SertrtError(f"{what} {value!r}: expected NAME=VALUE")
            parsed[name.strip()] = rest
        return parsed

    corpora = {name: Path(root) for name, root in pairs(corpus, "--corpus").items()}
    opts = PrepareOptions(corpora=corpora, out=out, workers=workers, ema_pattern=ema_pattern,
                          ema_labels=pairs(ema_label, "--ema-label") or None, allow_partial=allow_partial)
    report = _with_progress("preparing", prepare, opts)
    console.print(report.markdown())


@data_app.command("split")
def data_split(
    manifest: Path = typer.Argument(..., help="Manifest to split."),
    test_fraction: float = typer.Option(0.2, help="Share held out for testing (the paper's 4:1)."),
    seed: int = typer.Option(0),
    group_by: choice("GroupBy", *GROUPINGS) = typer.Option(
        "auto", help="speaker: whole speakers per language held out (speaker-independent); none: the paper's "
                     "random split, stratified by corpus and label; auto: speaker where every row names one."),
    out_dir: Optional[Path] = typer.Option(None, help="Default: beside the manifest."),
    quiet: Quiet = False,
) -> None:
    """Write train_manifest.jsonl and test_manifest.jsonl."""
    from .data.split import SplitOptions, split_manifest

    train, test, kind = split_manifest(SplitOptions(manifest=manifest, test_fraction=test_fraction, seed=seed,
                                                    group_by=group_by, out_dir=out_dir))
    console.print(f"wrote {train} and {test} ({kind})")


@data_app.command("protocol")
def data_protocol(
    manifest: Path = typer.Argument(..., help="Mixed manifest to split into folds."),
    out: Path = typer.Option(..., help="Protocol folder: protocol.json + fold<k>/{train,valid,test}_manifest.jsonl."),
    protocol: choice("Protocol", *PROTOCOLS) = typer.Option(
        "random", help="random: the paper's (stratified 4:1 + 5 folds); speaker: speaker-independent; session: IEMOCAP "
                       "leave-one-session-out."),
    folds: int = typer.Option(5, help="Folds on the train part (session: one per session)."),
    test_fraction: float = typer.Option(0.2),
    seed: int = typer.Option(0),
    quiet: Quiet = False,
) -> None:
    """Save a reproducible evaluation protocol (test part and cross-validation folds)."""
    from .data.protocol import ProtocolOptions, write_protocol

    path = write_protocol(ProtocolOptions(manifest=manifest, out=out, protocol=protocol, folds=folds,
                                          test_fraction=test_fraction, seed=seed))
    sizes = json.loads(path.read_text())["fold_sizes"]
    console.print(f"wrote {path}: " + ", ".join(f"fold{k} {s['train']}/{s['valid']}/{s['test']}" for k, s in enumerate(sizes)))


@app.command()
def experiment(
    table: choice("Table", *TABLES) = typer.Argument(
        ..., help="The paper's Tables I (upstreams, heads), II (finetune), III (transfer); layers: accuracy vs kept "
                  "transformer layers."),
    protocol: Path = typer.Option(..., help="Protocol folder from `sertrt data protocol`."),
    out: Path = typer.Option(..., help="Experiment folder; OUT/TABLE gets results.md/json, curves and confusion PNGs."),
    xlsr: str = typer.Option("xlsr-53", help="XLSR upstream: named config or pretrained directory / hub id."),
    wav2vec2: str = typer.Option("wav2vec2-base", help="wav2vec2 upstream: named config or pretrained directory / hub id."),
    tiny: bool = typer.Option(False, "--tiny", help="CPU stand-ins: xlsr=tiny, wav2vec2=tiny-base."),
    transfer_manifest: Optional[Path] = typer.Option(None, help="Held-out corpus for `transfer` (eNTERFACE)."),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(2e-4),
    max_seconds: float = typer.Option(6.0),
    max_folds: Optional[int] = typer.Option(None, help="Run only the first N folds."),
    config: list[str] = typer.Option([], help="Run only this configuration (repeatable), e.g. 'xlsr+hgfm'."),
    layers: str = typer.Option("", help="layers table: comma-separated K to keep, e.g. 12,6 (default: all, 3/4, 1/2, 1/3, 1/4 of the layers)."),
    seed: int = typer.Option(0),
    device: AutoDevice = "auto",
    quiet: Quiet = False,
) -> None:
    """Reproduce one of the paper's tables on the corpora of a protocol."""
    from .training.experiment import ExperimentOptions, run_experiment

    if tiny:
        xlsr, wav2vec2 = "tiny", "tiny-base"
    opts = ExperimentOptions(table=table, protocol=protocol, out=out, xlsr=xlsr, wav2vec2=wav2vec2,
                             transfer_manifest=transfer_manifest, epochs=epochs, batch_size=batch_size, lr=lr,
                             max_seconds=max_seconds, max_folds=max_folds, seed=seed, device=device, configs=config,
                             layers=list(_csv(layers, int)))
    run_experiment(opts, log=err.print)
    console.print((out / table / "results.md").read_text())


@app.command()
def train(
    ctx: typer.Context,
    train_manifest: Path = typer.Option(..., help="Training manifest (JSON Lines)."),
    out: Path = typer.Option(..., help="Run directory."),
    test_manifest: Optional[Path] = typer.Option(None, help="Scored once, after training, with the best epoch's weights "
                                                               "(recorded as test_metrics in best.json); never chooses anything."),
    valid_manifest: Optional[Path] = typer.Option(None, help="Chooses the best epoch (its UA). Default: --valid-fraction of "
                                                                 "the training manifest, whole speakers where a corpus has 4 or more."),
    valid_fraction: float = typer.Option(0.1, help="Share of the training manifest held out for validation when no "
                                                   "--valid-manifest is given."),
    upstream: str = typer.Option("tiny", help="xlsr-53, xls-r-300m, wav2vec2-base, tiny, fbank, mfcc, cnn-lstm, stats-lr (the classical floor: "
                                           "utterance MFCC/energy statistics + logistic regression), or a pretrained directory / hub id."),
    pretrained: Optional[str] = typer.Option(None, help="Weights for the named wav2vec2 --upstream: a Hugging Face model "
                                                        "folder (config.json + model.safetensors or pytorch_model.bin) or "
                                                        "hub id; refused unless its config is that upstream's architecture."),
    upstream_layers: Optional[int] = typer.Option(None, help="Keep only the first K transformer layers of a wav2vec2 upstream (0 to its layer count; default all): a smaller, faster model."),
    head: choice("Head", *HEAD_NAMES) = typer.Option("hgfm", help="Classifier head (lr: --upstream stats-lr's)."),
    strategy: choice("Strategy", *STRATEGIES) = typer.Option(
        "full", help="What of the upstream trains: frozen (none), semi (all but its CNN encoder) or full."),
    freeze_feature_encoder: Optional[bool] = typer.Option(
        None, "--freeze-feature-encoder/--no-freeze-feature-encoder",
        help="Keep the CNN feature encoder fixed under --strategy full (default: on for pretrained weights, off for random init)."),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(2e-4, help="The upstream's peak learning rate."),
    head_lr: Optional[float] = typer.Option(None, help="The head's peak learning rate (default: --lr); pretrained XLSR: see README."),
    warmup: float = typer.Option(0.0, help="Linear warm-up: optimizer steps if >= 1, else this share of all steps."),
    schedule: choice("Schedule", *SCHEDULES) = typer.Option(
        "constant", help="Learning rate after warm-up: constant, or decaying to 0 at the last step."),
    weight_decay: float = typer.Option(0.01),
    grad_clip: float = typer.Option(5.0),
    max_seconds: float = typer.Option(6.0, help="Training crops longer utterances to this."),
    proj_size: Optional[int] = typer.Option(None, help="HGFM L (default 64 for small upstreams, else 256)."),
    hidden_size: Optional[int] = typer.Option(None, help="HGFM h1 (default 64 for small upstreams, else 128)."),
    dropout: float = typer.Option(0.1),
    augment: str = typer.Option("none", help="Waveform augmentation, comma-separated: speed (0.9/1.0/1.1), noise "
                                             "(5-30 dB SNR), gain, reverb; or none."),
    layer_weights: bool = typer.Option(False, help="A learnable weighted sum over every upstream layer (wav2vec2), "
                                                    "stored in the checkpoint and exported."),
    balanced: bool = typer.Option(False, help="Class-balanced sampling."),
    label_smoothing: float = typer.Option(0.0),
    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without a better validation UA."),
    seed: int = typer.Option(0),
    devices: int = typer.Option(1, help="Processes (GPUs, or CPU gloo processes); >1 starts torch.distributed.run."),
    device: AutoDevice = "auto",
    amp: bool = typer.Option(True, help="Mixed precision on CUDA."),
    max_batch_seconds: Optional[float] = typer.Option(None, help="Length-bucketed micro-batches of at most this many "
                                                                 "seconds of padded audio, accumulated into steps of >= "
                                                                 "--batch-size utterances (default: fixed batches)."),
    log_every: int = typer.Option(50, help="Optimizer steps between reads of the training loss (progress, tensorboard)."),
    workers: Optional[int] = typer.Option(None, help="DataLoader worker processes per rank that decode, augment and crop "
                                          "(0: in the training process). Default: min(4, CPU cores - 2). Results do not depend on it."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the upstream's transformer layers (wav2vec2)."),
    grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing", help="Recompute the upstream's layers in the "
                                                                                "backward pass: less memory for long crops (wav2vec2)."),
    resume: bool = typer.Option(False, help="Continue the run in --out after its last finished epoch."),
    quiet: Quiet = False,
) -> None:
    """Train an SER model: the best epoch on validation is kept, the test manifest is scored once at the end."""
    from .training.augment import parse_augment
    from .training.distributed import launch_torchrun, under_torchrun
    from .training.train import TrainOptions, preflight
    from .training.train import train as run_train

    values = {k: v for k, v in locals().items() if k in TrainOptions.__dataclass_fields__ and k != "given"}
    values["augment"] = parse_augment(augment)
    # Which options were typed rather than defaulted: --resume compares those with the run's own.
    given = frozenset(k for k in values if ctx.get_parameter_source(k).name != "DEFAULT")
    opts = TrainOptions(**values, given=given)
    if devices > 1 and not under_torchrun():
        preflight(opts)  # a bad option or manifest: one line here, not one per rank
        launch_torchrun(devices, _ARGV)  # each rank runs this same command line
        return
    summary = run_train(opts)
    if summary.get("last"):
        test = f"; test UA {summary['test']['ua']:.1%} ({summary['test']['split']}, scored once)" if summary.get("test") else ""
        console.print(f"best valid UA {summary['best_ua']:.1%}{test} -> {out / 'best.safetensors'}")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory (uses best.safetensors) or a checkpoint file."),
    manifest: Path = typer.Option(..., help="Manifest to score."),
    out: Optional[Path] = typer.Option(None, help="Folder for metrics JSON and confusion PNG (default RUN/eval)."),
    batch_size: int = typer.Option(8),
    device: AutoDevice = "auto",
    json_output: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    quiet: Quiet = False,
) -> None:
    """WA, UA and macro-F1 of a checkpoint on a manifest."""
    from .training.distributed import resolve_device
    from .training.evaluate import EvaluateOptions
    from .training.evaluate import evaluate as run_evaluate

    opts = EvaluateOptions(run=run, manifest=manifest, out=out, batch_size=batch_size, device=resolve_device(device))
    report = _with_progress("scoring", run_evaluate, opts)
    if json_output:
        console.print_json(json.dumps(report))
    else:
        console.print(f"{manifest}: WA {report['wa']:.1%}  UA {report['ua']:.1%}  macro-F1 {report['macro_f1']:.1%}  "
                      f"({report['count']} utterances) -> {report['out_dir']}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run directory (uses best.safetensors) or a checkpoint file."),
    out: Path = typer.Option(..., help="Bundle directory to write (appears complete or not at all); with several "
                             "--precision, the folder of one bundle per precision (OUT/fp32, OUT/int8-dynamic, ...)."),
    precision: list[choice("Precision", *PRECISIONS)] = typer.Option(
        ["fp32"], help="fp16: FP16 ONNX with FP32 islands; int8: static QDQ (TensorRT's); int8-dynamic: dynamic "
                       "INT8 (ONNX Runtime CPU's). Repeat for several: one FP32 export and one PyTorch "
                       "reference for all of them."),
    calib_manifest: Optional[Path] = typer.Option(None, help="int8: utterances to calibrate on (INT8 without "
                                                  "--test-manifest: gated on the ones not calibrated on)."),
    calib_utterances: int = typer.Option(64, help="int8: how many calibration utterances to use."),
    calibration: Optional[choice("Calibration", *CALIBRATION_METHODS)] = typer.Option(
        None, help="int8: how activation ranges are calibrated (default percentile)."),
    cpu_target: Optional[choice("CpuTarget", *CPU_TARGETS)] = typer.Option(
        None, help="int8-dynamic: the CPU it runs on (default vnni: x86 with AVX-512 VNNI, AVX-VNNI or AMX)."),
    test_manifest: Optional[Path] = typer.Option(None, help="Report WA/UA of the bundle vs PyTorch FP32 on this manifest "
                                                 "(int8, int8-dynamic: refused outside their parity limits there)."),
    min_batch: int = typer.Option(1, help="TensorRT profile: smallest batch."),
    opt_batch: int = typer.Option(1),
    max_batch: int = typer.Option(8),
    min_samples: int = typer.Option(400, help="TensorRT profile: shortest input in samples (one frame)."),
    opt_samples: int = typer.Option(32000, help="TensorRT profile: the shape kernels are tuned for (2 s window)."),
    max_samples: int = typer.Option(128000, help="TensorRT profile: longest input (wider profiles make slower engines)."),
    engine: bool = typer.Option(False, "--engine", help="Also build a TensorRT engine (needs TensorRT and an NVIDIA GPU)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle (only a bundle) once the new one is complete."),
    sign: Optional[Path] = typer.Option(None, help="ed25519 private key (PEM) to sign the bundle with; devices check it with --trust."),
    triton: Optional[Path] = typer.Option(None, help="Also write the bundle into this Triton model repository (as `sertrt triton`)."),
    triton_name: str = typer.Option("sertrt", help="--triton: the model's name (its folder) in the repository."),
    quiet: Quiet = False,
) -> None:
    """Export a checkpoint to a validated ONNX bundle (and optionally a TensorRT engine)."""
    from .export.exporter import ExportOptions, bundle_paths, export_bundles
    from .export.spec import Profile
    from .verify.compare import manifest_scorer  # handed to the export, which never imports verify

    profile = Profile(min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, min_samples=min_samples,
                      opt_samples=opt_samples, max_samples=max_samples)
    opts = ExportOptions(run=run, out=out, precision=",".join(precision), calib_manifest=calib_manifest,
                         calib_utterances=calib_utterances, calibration=calibration, cpu_target=cpu_target,
                         test_manifest=test_manifest, profile=profile, engine=engine, overwrite=overwrite, sign=sign)
    if triton is not None:  # the Triton entry is checked before minutes of export, not after
        from .export.triton import TritonOptions, check_triton_options, write_triton_repository

        if len(precision) > 1:
            raise SertrtError("--triton: one --precision (add the others with `sertrt triton OUT/<precision> ...`)")
        triton_opts = TritonOptions(bundle=out, repo=triton, name=triton_name)
        check_triton_options(triton_opts)
    cards = export_bundles(opts, log=err.print, score=manifest_scorer(run))
    for path, card in zip(bundle_paths(opts).values(), cards.values()):
        console.print(f"wrote {path} ({card.precision}, validation passed, {len(card.files)} files)")
    if triton is not None:
        try:
            console.print(f"wrote {write_triton_repository(triton_opts)}")
        except (SertrtError, OSError) as e:
            why = e if isinstance(e, SertrtError) else f"{e.filename}: {e.strerror}"
            raise SertrtError(f"{why} (the bundle {out} was written: add it with `sertrt triton {out} {triton} "
                              f"--name {triton_name}`)") from None


@app.command("triton")
def triton_cmd(
    bundle: Path = typer.Argument(..., help="Bundle from `sertrt export`."),
    repo: Path = typer.Argument(..., help="Triton model repository (created if missing); the model goes in REPO/NAME."),
    name: str = typer.Option("sertrt", help="The model's name in the repository."),
    kind: choice("InstanceKind", *TRITON_KINDS) = typer.Option("auto", help="auto: GPU for a TensorRT plan, else CPU."),
    instances: int = typer.Option(1, help="Model instances (instance_group count)."),
    queue_delay_us: int = typer.Option(100, help="Dynamic batching: how long a request may wait for others."),
    engine: bool = typer.Option(True, help="Serve the bundle's TensorRT plan when it has one (--no-engine: the ONNX)."),
    quiet: Quiet = False,
) -> None:
    """Write a bundle as a Triton Inference Server model (config.pbtxt, labels, the ONNX or TensorRT plan)."""
    from .export.triton import TritonOptions, write_triton_repository

    target = write_triton_repository(TritonOptions(bundle=bundle, repo=repo, name=name, kind=kind, instances=instances,
                                                   queue_delay_us=queue_delay_us, engine=engine))
    console.print(f"wrote {target}")


@app.command("build-engine")
def build_engine_cmd(
    bundle: Path = typer.Argument(..., help="Bundle from `sertrt export`."),
    workspace_mb: int = typer.Option(2048),
    timing_cache: Optional[Path] = typer.Option(None, help="Timing cache file, read and written back."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the Polygraphy and trtexec lines to build, compare and "
                                                           "time the engine on the device, and build nothing."),
    quiet: Quiet = False,
) -> None:
    """Build a TensorRT engine from a bundle's ONNX, on the device that will run it."""
    from .core.bundle import ENGINE_FILE, add_file, load_bundle
    from .core.engine import record_path
    from .export.spec import Profile
    from .export.tensorrt_engine import EngineOptions, build_engine, device_commands

    card = load_bundle(bundle)
    if dry_run:
        audit = card.tensorrt_audit
        console.print(f"# {bundle}: {card.precision}; TensorRT audit at export: "
                      + ("clean" if audit and audit["clean"] else "NOT clean, see manifest.json" if audit else "none")
                      + ". Not run here: run these on the device, in the bundle folder.")
        for what, line in device_commands(bundle, card.precision, Profile(**card.profile), card.sample_rate, card.window_seconds):
            console.print(f"# {what}\n{line}")
        return
    engine = bundle / ENGINE_FILE
    record = build_engine(EngineOptions(onnx=bundle / card.model, out=engine, precision=card.precision,
                                        profile=Profile(**card.profile), workspace_mb=workspace_mb, timing_cache=timing_cache))
    add_file(bundle, engine, record_path(engine))  # hashed before any later load
    console.print(f"wrote {engine} (TensorRT {record.get('tensorrt_version')}, {record.get('gpu_name')})")


@app.command()
def predict(
    bundle: Path = typer.Argument(..., help="Bundle from `sertrt export`."),
    files: list[Path] = typer.Argument(..., help="Audio files (any soundfile format and rate, mono or not)."),
    device: Device = "cpu",
    threads: Threads = None,
    batch_size: int = typer.Option(8, help="Files scored together."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per file and line: path, label and "
                                                           "probabilities, or path and error."),
    trust: Trust = None,
    allow_local_engine: AllowLocalEngine = False,
    quiet: Quiet = False,
) -> None:
    """Label audio files: one line per file, its label and probabilities (sertrt.load(BUNDLE).files(FILES)).

    Each file is scored whole, up to the export profile's longest input (8 s by default); a longer one in windows
    of that length, its probabilities averaged. A file that cannot be read gets an error line and the others are
    still labelled; the exit code is then 1."""
    from .runtime.api import load

    failed = 0
    with load(bundle, str(device), threads=threads, trust=trust, allow_local_engine=allow_local_engine,
              batch_size=batch_size) as rec:
        for path, result in rec.files(files):
            failed += isinstance(result, SertrtError)
            if json_output:
                row = {"error": str(result)} if isinstance(result, SertrtError) else result.as_dict()
                console.print(json.dumps({"path": path, **row}))
            elif isinstance(result, SertrtError):
                errors.print(f"error: {result}")
            else:
                probs = " ".join(f"{k} {v:.3f}" for k, v in result.probabilities.items())
                console.print(f"{path}: {result.label} ({probs})")
    if failed:
        raise SertrtError(f"{failed} of {len(files)} files could not be labelled")


@app.command()
def stream(
    bundle: Path = typer.Argument(..., help="Bundle from `sertrt export`."),
    source: str = typer.Argument("-", help="Audio file (read incrementally), or - for raw PCM on stdin."),
    rate: Optional[int] = typer.Option(None, help="stdin/--mic: sample rate of the PCM."),
    format: choice("PcmFormat", *PCM_FORMATS) = typer.Option("s16le", help="stdin: the PCM's sample format."),
    channels: int = typer.Option(1, help="stdin/--mic: channels (downmixed)."),
    mic: bool = typer.Option(False, "--mic", help="Read the default microphone (needs sounddevice)."),
    backend: choice("StreamBackend", *BACKENDS, "torch") = typer.Option(
        "ort", help="ort (ONNX Runtime), trt (TensorRT engine in the bundle) or torch (the PyTorch model of --run, "
                    "behind the bundle's labels, window and hop)."),
    run: Optional[Path] = typer.Option(None, help="--backend torch: the run (or checkpoint) the bundle came from."),
    torch_device: TorchDevice = "cpu",
    torch_precision: TorchPrecision = "fp32",
    cuda_graphs: CudaGraphs = False,
    provider: Provider = "cpu",
    threads: Threads = None,
    spinning: Spinning = False,
    window_seconds: WindowSeconds = None,
    hop_seconds: HopSeconds = None,
    smoothing: choice("Smoothing", *SMOOTHINGS) = typer.Option("none", help="Label smoothing over windows."),
    silence_dbfs: SilenceDbfs = -50.0,
    vad: Vad = False,
    vad_model: VadModel = None,
    min_speech: MinSpeech = 0.3,
    trust: Trust = None,
    allow_local_engine: AllowLocalEngine = False,
    quiet: Quiet = False,
) -> None:
    """Stream audio windows through a bundle; prints JSON Lines (one per window, then a summary)."""
    from .runtime.runners import RunnerOptions
    from .runtime.sources import StreamOptions, run_stream

    factory = None
    if backend == "torch":
        if run is None:
            raise SertrtError("--backend torch needs --run (the run or checkpoint the bundle was exported from)")
        from .verify.torch_runner import TorchRunner

        factory = lambda: TorchRunner(run, torch_device, torch_precision, cuda_graphs)  # noqa: E731
    elif run is not None:
        raise SertrtError("--run is for --backend torch")
    runner = RunnerOptions(backend=backend, provider=provider, threads=threads, spinning=spinning, trust=trust,
                           allow_local_engine=allow_local_engine, cuda_graphs=cuda_graphs and backend == "trt")
    run_stream(StreamOptions(bundle=bundle, source=source, rate=rate, format=format, channels=channels, mic=mic,
                             runner=runner, window_seconds=window_seconds, hop_seconds=hop_seconds,
                             smoothing=smoothing, silence_dbfs=silence_dbfs, vad=vad_model or ("silero" if vad else None),
                             min_speech=min_speech, runner_factory=factory))


@app.command()
def parity(
    bundle: Path = typer.Argument(..., help="Bundle from `sertrt export`."),
    run: Path = typer.Option(..., help="The run (or checkpoint) the bundle was exported from."),
    manifest: Path = typer.Option(..., help="Utterances to compare on."),
    backend: Backend = "ort",
    provider: Provider = "cpu",
    threads: Threads = None,
    spinning: Spinning = False,
    window_seconds: WindowSeconds = None,
    hop_seconds: HopSeconds = None,
    silence_dbfs: SilenceDbfs = -50.0,
    vad: Vad = False,
    vad_model: VadModel = None,
    min_speech: MinSpeech = 0.3,
    torch_device: AutoDevice = "auto",
    torch_precision: TorchPrecision = "fp32",
    cuda_graphs: CudaGraphs = False,
    min_agreement: Optional[float] = typer.Option(None, help="Default per precision: fp32 0.999, fp16 0.995, int8 and int8-dynamic 0.98."),
    max_delta_ua: Optional[float] = typer.Option(None, help="Largest |UA difference| in points (default 1.0)."),
    json_output: bool = typer.Option(False, "--json"),
    trust: Trust = None,
    allow_local_engine: AllowLocalEngine = False,
    quiet: Quiet = False,
) -> None:
    """PyTorch vs the bundle's engine on whole utterances and streaming windows; exit 3 beyond thresholds."""
    from .runtime.runners import RunnerOptions
    from .training.distributed import resolve_device
    from .verify.parity import ParityOptions, check, format_parity, run_parity

    runner = RunnerOptions(backend=backend, provider=provider, threads=threads, spinning=spinning, trust=trust,
                           allow_local_engine=allow_local_engine)
    results = run_parity(ParityOptions(bundle=bundle, run=run, manifest=manifest, runner=runner,
                                       window_seconds=window_seconds, hop_seconds=hop_seconds,
                                       silence_dbfs=silence_dbfs, vad=vad_model or ("silero" if vad else None),
                                       min_speech=min_speech, min_agreement=min_agreement, max_delta_ua=max_delta_ua,
                                       torch_device=resolve_device(torch_device, "--torch-device"),
                                       torch_precision=torch_precision, cuda_graphs=cuda_graphs))
    console.print_json(json.dumps(results)) if json_output else console.print(format_parity(results))
    check(results)


def _csv(value: str, cast=str) -> tuple:
    try:
        return tuple(cast(x.strip()) for x in value.split(",") if x.strip())
    except ValueError:
        raise SertrtError(f"cannot read {value!r} as a comma-separated list") from None


@app.command()
def bench(
    target: str = typer.Argument(..., help="A bundle directory, or an architecture with random weights: tiny, xlsr-53."),
    out: Path = typer.Option(Path("sertrt-bench"), help="Folder for <name>.json and .md (made if missing; "
                                                         "refused if it holds files sertrt did not write)."),
    backends: str = typer.Option("", help="Comma-separated subset of the backends (default: all)."),
    precisions: str = typer.Option("", help="Comma-separated subset of the precisions (default: all)."),
    windows: str = typer.Option("1,2,4,8", help="Window lengths in seconds."),
    batches: str = typer.Option("1,8", help="Batch sizes."),
    repeats: int = typer.Option(30, help="Most timed calls per variant and cell."),
    warmup: int = typer.Option(1),
    batched_windows: str = typer.Option("", help="Windows measured at batch > 1 (default: all)."),
    cell_seconds: float = typer.Option(6.0, help="Time budget per variant and cell."),
    threads: int = typer.Option(2),
    stream_seconds: float = typer.Option(60.0, help="Audio streamed for the streaming measurement."),
    cache: Optional[Path] = typer.Option(None, help="Keep built checkpoints and bundles here for the next run."),
    name: Optional[str] = typer.Option(None, help="Output file stem (default <target>-cpu; <target>-cpu-quick with --quick)."),
    quick: bool = typer.Option(False, "--quick", help="2 s window at batch 1, few repeats: a smoke run."),
    layers: str = typer.Option("", help="Also time the architecture cut to its first K transformer layers, e.g. 12,6."),
    quiet: Quiet = False,
) -> None:
    """Latency, throughput, real-time factor and memory against PyTorch eager FP32."""
    from .bench import BenchOptions, run_bench
    from .bench.core import BACKENDS, PRECISIONS

    opts = BenchOptions(
        target=target, out=out, backends=_csv(backends) or BACKENDS, precisions=_csv(precisions) or PRECISIONS,
        windows=_csv(windows, float), batches=_csv(batches, int), batched_windows=_csv(batched_windows, float) or None,
        repeats=repeats, warmup=warmup, cell_seconds=cell_seconds, threads=threads, stream_seconds=stream_seconds,
        cache=cache, name=name, quick=quick, layers=_csv(layers, int),
    )
    result = _with_progress("bench", run_bench, opts, messages=True)
    console.print("wrote " + ", ".join(result["files"].values()))


@app.command("bench-gpu")
def bench_gpu(
    target: str = typer.Argument("xlsr-53", help="An architecture with random weights: xlsr-53, tiny, ..."),
    out: Path = typer.Option(Path("sertrt-bench"), help="Folder for <name>.json and .md (as bench's)."),
    device: str = typer.Option("cuda", help="cuda, cuda:N, or cpu (the variants that need no CUDA)."),
    variants: str = typer.Option("", help="Comma-separated subset of eager-fp32, eager-fp16, compile-fp32, compile-fp16, "
                                          "compile-cudagraphs-fp16, cudagraph-fp16, half-fp16, half-bf16, "
                                          "half-fp16-cudagraph, compile-layers-fp16, compile-layers-fp16-cudagraph "
                                          "(default: all)."),
    windows: str = typer.Option("2", help="Window lengths in seconds."),
    batches: str = typer.Option("1,8", help="Batch sizes."),
    repeats: int = typer.Option(30, help="Timed calls per variant and cell."),
    warmup: int = typer.Option(3, help="Untimed calls per variant and cell (the first compiles or captures)."),
    name: Optional[str] = typer.Option(None, help="Output file stem (default <target>-<device name>)."),
    time_box: Optional[float] = typer.Option(None, help="Seconds each variant may take per cell (compile and capture included); "
                                                        "one past it is reported as such and the others still run "
                                                        "(the eager FP32 baseline is never cut: every ratio needs it)."),
    quiet: Quiet = False,
) -> None:
    """PyTorch eager FP32 vs FP16 vs torch.compile vs CUDA graphs on a GPU, in one run."""
    from .bench.gpu import VARIANTS, GpuBenchOptions, run_gpu_bench

    opts = GpuBenchOptions(target=target, out=out, device=device, variants=_csv(variants) or VARIANTS,
                           windows=_csv(windows, float), batches=_csv(batches, int), repeats=repeats, warmup=warmup, name=name,
                           time_box_s=time_box)
    result = _with_progress("bench-gpu", run_gpu_bench, opts, messages=True)
    console.print("wrote " + ", ".join(result["files"].values()))


def _error_line(line: str, code: int = 1) -> None:
    """Print a user error and exit with `code` (EXIT_CODES). A torchrun rank writes it to its error file instead, which
    torchrun reads: `train --devices N` then prints the first failed rank's line once (training.distributed.launch_torchrun)."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        Path(error_file).write_text(json.dumps({"message": line, "timestamp": int(time.time())}), encoding="utf-8")
    else:
        errors.print(line)
    sys.exit(code)


_ARGV: list[str] = []  # the arguments main() runs, for `train --devices N` to relaunch under torchrun


def main(argv: Optional[list[str]] = None) -> None:
    """`sertrt ARGV...` (default: sys.argv[1:]); always ends in SystemExit with its EXIT_CODES code."""
    warnings.formatwarning = lambda message, *_: f"warning: {message}\n"
    _ARGV[:] = sys.argv[1:] if argv is None else argv
    try:
        app(args=_ARGV)
    except CheckFailed as e:
        _error_line(f"error: {e}", 3)
    except SertrtError as e:
        _error_line(f"error: {e}")
    except OSError as e:  # disk full, read-only folder, permission denied: the machine's answer, in one line
        where = f"{e.filename}: " if e.filename else ""
        _error_line(f"error: {where}{e.strerror or e}")
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
