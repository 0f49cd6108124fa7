"""`sertrt experiment TABLE`: the paper's tables as commands, over the folds of a saved protocol.

    upstreams  Table I (upstreams): fbank, mfcc, cnn-lstm, wav2vec2, xlsr, each with the HGFM head
    heads      Table I (heads): fcn, cnn-sa-dnn, hgfm on xlsr
    finetune   Table II: xlsr + hgfm with the upstream frozen, semi-fine-tuned, fully fine-tuned
    transfer   Table III: wav2vec2 and xlsr + hgfm trained on the mix, tested on a held-out corpus
               (eNTERFACE) over happy, sad and angry only
    layers     not the paper's: xlsr + hgfm fully fine-tuned with only the first K transformer layers,
               one row per K, with parameters and analytic GFLOP per 2 s window (the speed side)

For every configuration and fold: train on the fold's train part, keep the epoch with the best valid UA, score
it on the test part. Every paper table also trains the classical floor (`stats-lr`) and marks a configuration
that does not beat it. OUT/<table>/ gets results.md, results.json, curves.png and a confusion-matrix PNG per
configuration. A finished fold is not trained again, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core import atomic
from ..core.audio import WINDOW_SAMPLES, WINDOW_SECONDS
from ..core.choices import TABLES
from ..core.dims import ModelDims
from ..core.errors import SertrtError
from ..core.labels import LABELS
from ..core.manifest import read_manifest
from ..core.metrics import classification_report
from ..data.protocol import read_protocol
from ..model.flops import model_flops
from ..model.io import load_model
from ..model.ser import SERModel, count_parameters
from ..model.upstream import check_layers, num_layers
from .data import AudioSet
from .distributed import resolve_device
from .evaluate import plot_confusion, predict_logits
from .train import TrainOptions, train

# What each saved protocol (sertrt data protocol) holds out: the paper's random split repeats voices.
SPLIT_KIND = {"random": "speaker-dependent", "speaker": "speaker-independent",
              "session": "speaker-independent (IEMOCAP sessions)"}
TRANSFER_LABELS = ("happy", "angry", "sad")  # eNTERFACE has no neutral (the paper's Table III)

# The paper's numbers on its real corpora with pretrained upstreams, printed beside ours for scale.
PAPER = {
    "fbank+hgfm": (62.3, 63.7, 62.8), "mfcc+hgfm": (59.7, 61.9, 60.1), "cnn-lstm+hgfm": (62.7, 64.3, 63.1),
    "wav2vec2+hgfm": (66.8, 68.8, 67.1), "xlsr+fcn": (59.6, 61.3, 59.9), "xlsr+cnn-sa-dnn": (60.4, 62.5, 60.7),
    "xlsr+hgfm": (68.8, 69.7, 69.2), "xlsr+hgfm frozen": (68.8, 69.7, 69.2), "xlsr+hgfm semi": (69.4, 70.9, 69.7),
    "xlsr+hgfm full": (70.6, 73.4, 70.8), "wav2vec2+hgfm transfer": (50.2, 52.0, 48.5),
    "xlsr+hgfm transfer": (70.7, 70.7, 71.0),
}


@dataclass
class Config:
    name: str
    upstream: str
    head: str = "hgfm"
    strategy: str = "frozen"
    upstream_layers: int | None = None
    lr: float | None = None  # None: the experiment's --lr


# The classical floor: utterance statistics + logistic regression, at a linear model's learning rate.
FLOOR = Config("stats-lr floor", "stats-lr", "lr", strategy="full", lr=1e-2)


@dataclass
class ExperimentOptions:
    table: str
    protocol: Path
    out: Path
    xlsr: str = "xlsr-53"  # a named config or a pretrained directory / hub id
    wav2vec2: str = "wav2vec2-base"
    transfer_manifest: Path | None = None
    epochs: int = 10
    batch_size: int = 8
    lr: float = 2e-4
    max_seconds: float = 6.0
    max_folds: int | None = None  # run only the first N folds
    seed: int = 0
    device: str = "auto"
    configs: list[str] = field(default_factory=list)  # run only these configuration names
    layers: list[int] = field(default_factory=list)  # layers table: the K to try (default: default_layers)


def default_layers(total: int) -> list[int]:
    """All, 3/4, 1/2, 1/3 and 1/4 of the layers, at least 1: 24 -> [24, 18, 12, 8, 6], 2 -> [2, 1]."""
    ks = [max(1, round(total * f)) for f in (1, 3 / 4, 1 / 2, 1 / 3, 1 / 4)]
    return list(dict.fromkeys(ks))


def _layer_configs(opts: ExperimentOptions) -> list[Config]:
    # checked before anything trains: a bad K fails now, not hours in
    total = num_layers(opts.xlsr)
    ks = list(dict.fromkeys(opts.layers)) or default_layers(total)
    for k in ks:
        check_layers(opts.xlsr, k, total)
    # full fine-tuning: the kept layers adapt to being the last ones
    return [Config(f"xlsr+hgfm {k} layer{'' if k == 1 else 's'}", opts.xlsr, strategy="full", upstream_layers=k) for k in ks]


def table_configs(opts: ExperimentOptions) -> list[Config]:
    x, w = opts.xlsr, opts.wav2vec2
    tables = {
        # Table I used frozen upstreams; the manual ones have nothing or a from-scratch CNN-LSTM to train
        "upstreams": [
            Config("fbank+hgfm", "fbank", strategy="full"), Config("mfcc+hgfm", "mfcc", strategy="full"),
            Config("cnn-lstm+hgfm", "cnn-lstm", strategy="full"), Config("wav2vec2+hgfm", w), Config("xlsr+hgfm", x),
        ],
        "heads": [Config("xlsr+fcn", x, "fcn"), Config("xlsr+cnn-sa-dnn", x, "cnn-sa-dnn"), Config("xlsr+hgfm", x)],
        "finetune": [Config(f"xlsr+hgfm {s}", x, strategy=s) for s in ("frozen", "semi", "full")],
        "transfer": [Config("wav2vec2+hgfm transfer", w, strategy="full"), Config("xlsr+hgfm transfer", x, strategy="full")],
        "layers": _layer_configs(opts) if opts.table == "layers" else [],
    }
    if opts.table not in tables:
        raise SertrtError(f"unknown table {opts.table!r} (valid: {', '.join(TABLES)})")
    configs = tables[opts.table]
    if opts.configs:
        unknown = set(opts.configs) - {c.name for c in configs} - {FLOOR.name}
        if unknown:
            raise SertrtError(f"unknown configuration(s) {', '.join(sorted(unknown))} for table {opts.table} "
                              f"(valid: {', '.join(c.name for c in configs)})")
        configs = [c for c in configs if c.name in opts.configs]
    if opts.table != "layers" and FLOOR not in configs:
        configs = [*configs, FLOOR]  # every paper table is read against the classical floor
    return configs


def _score(run_dir: Path, test: AudioSet, labels: tuple[str, ...], batch_size: int,
           device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, cost): best.safetensors scored on `test`, argmax over `labels`' logits only; its size and FLOPs."""
    model, header = load_model(run_dir / "best.safetensors")
    model.to(device)
    logits = predict_logits(model, test, batch_size, device)
    keep = [LABELS.index(name) for name in labels]
    targets = np.array([keep.index(t) for t in test.labels])
    report = classification_report(targets, logits[:, keep].argmax(1), labels)
    report["best_epoch"] = header.epoch + 1
    return report, _cost(model, header.dims)


def _cost(model: SERModel, dims: ModelDims) -> dict[str, Any]:
    """Parameters, and analytic GFLOP of one window (wav2vec2 upstreams only), cut and uncut."""
    up, head = dims.upstream, dims.head
    cost: dict[str, Any] = {"parameters": count_parameters(model), "layers": None, "source_layers": None,
                            "gflops_window": None, "gflops_window_all_layers": None, "window_seconds": WINDOW_SECONDS}
    if up.layers:
        layers, source = up.layers["upstream_layers"], up.layers["upstream_source_layers"]
        uncut = {**up.config, "num_hidden_layers": source}
        cost.update(layers=layers, source_layers=source,
                    gflops_window=model_flops(up.config, head, WINDOW_SAMPLES)["total"] / 1e9,
                    gflops_window_all_layers=model_flops(uncut, head, WINDOW_SAMPLES)["total"] / 1e9)
    return cost


def _plot_curves(curves: dict[str, list[list[float]]], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), dpi=120)
    ax = fig.subplots()
    for name, folds in curves.items():
        n = min(len(f) for f in folds)
        ua = np.array([f[:n] for f in folds])
        epochs = np.arange(1, n + 1)
        ax.plot(epochs, ua.mean(0), label=name)
        if len(folds) > 1:
            ax.fill_between(epochs, ua.min(0), ua.max(0), alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid UA")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _markdown(table: str, record: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    first = rows[0] if rows else {"folds": 0, "upstream": "", "cost": {"source_layers": None}}
    intro = (f"Protocol `{record['protocol']}` from `{record['manifest']}` (seed {record['seed']}); {first['folds']} "
             f"fold(s), {SPLIT_KIND.get(record['protocol'], 'split unknown')}; ")
    scores = {r["name"]: " | ".join(f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}"
                                    for m in ("wa", "ua", "macro_f1")) for r in rows}
    if table == "layers":
        source = first["cost"]["source_layers"]
        intro += (f"`{first['upstream']}` + hgfm fully fine-tuned with only its first K of {source} transformer "
                  "layers; best epoch by valid UA, scored on the test part.")
        header = (f"| layers kept | WA | UA | macro-F1 | parameters | GFLOP per {WINDOW_SECONDS:g} s window | "
                  f"vs all {source} layers |")
        body = []
        for r in rows:
            c = r["cost"]
            body.append(f"| {c['layers']} | {scores[r['name']]} | {c['parameters'] / 1e6:.2f}M | "
                        f"{c['gflops_window']:.2f} | {c['gflops_window'] / c['gflops_window_all_layers']:.0%} |")
        notes = ["GFLOP: analytic count of one forward pass (sertrt/model/flops.py); time the exported bundle on the "
                 "target with `sertrt bench`. A named upstream (`tiny`, `xlsr-53`) starts from random weights, whose "
                 "accuracy says little: judge the trade-off with pretrained weights on real corpora."]
    else:
        intro += "best epoch by valid UA, scored on the test part" + (
            " (transfer set, happy/angry/sad only)." if table == "transfer" else ".")
        header = "| configuration | upstream | strategy | WA | UA | macro-F1 | paper WA / UA / F1 |"
        floor = next((r["ua"]["mean"] for r in rows if r["name"] == FLOOR.name), None)
        body = []
        for r in rows:
            paper = PAPER.get(r["name"])
            below = floor is not None and r["name"] != FLOOR.name and r["ua"]["mean"] <= floor
            body.append(f"| {r['name']}{' **(not above the floor)**' if below else ''} | `{r['upstream']}` | "
                        f"{r['strategy']} | {scores[r['name']]} | "
                        + (" / ".join(f"{v:.1f}" for v in paper) if paper else "–") + " |")
        notes = ["Paper numbers: Zhang et al., real corpora and pretrained upstreams; ours: whatever data and "
                 "upstreams this run was given (see results.json)."]
        if floor is not None:
            notes += ["", "The floor: 13 MFCCs and log energy per frame, their mean, std, delta std and range per "
                          "utterance, the active share and log duration, logistic regression (`--upstream stats-lr`), "
                          f"UA {100 * floor:.1f}. A configuration whose mean UA does not exceed it is marked."]
    lines = [f"# sertrt experiment {table}", "", intro, "", header, "|---|---|---|---|---|---|---|", *body, "", *notes]
    return "\n".join(lines) + "\n"


def run_experiment(opts: ExperimentOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    device = resolve_device(opts.device)  # once: every fold trains and is scored on the same device
    record, folds = read_protocol(opts.protocol)
    if opts.max_folds:
        folds = folds[: opts.max_folds]
    configs = table_configs(opts)
    labels: tuple[str, ...] = LABELS
    test_sets: dict[Path, AudioSet] = {}  # folds share one test part: read it once
    if opts.table == "transfer":
        if opts.transfer_manifest is None:
            raise SertrtError("table 'transfer' needs --transfer-manifest (the held-out corpus, e.g. eNTERFACE)")
        labels = TRANSFER_LABELS
        utts = read_manifest(opts.transfer_manifest)
        extra = sorted({u.label for u in utts} - set(labels))
        if extra:
            raise SertrtError(f"{opts.transfer_manifest}: transfer set has labels {', '.join(extra)}; expected only {', '.join(labels)}")
        test_sets[opts.transfer_manifest] = AudioSet(utts)
    out = Path(opts.out) / opts.table
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}
    rows, curves, results = [], {}, {"table": opts.table, "protocol": record, "options": options, "configs": []}
    for config in configs:
        per_fold, cm_sum, config_curves = [], np.zeros((len(labels), len(labels)), dtype=np.int64), []
        slug = config.name.replace(" ", "-").replace("+", "_")
        for k, fold in enumerate(folds):
            run_dir = out / slug / f"fold{k}"
            metrics_path = run_dir / "metrics.jsonl"
            done = metrics_path.exists() and len(metrics_path.read_text().splitlines()) >= opts.epochs
            if not done:
                log(f"{opts.table}: {config.name} fold {k + 1}/{len(folds)}")
                train(TrainOptions(
                    train_manifest=fold["train"], valid_manifest=fold["valid"], out=run_dir, upstream=config.upstream,
                    upstream_layers=config.upstream_layers, head=config.head, strategy=config.strategy,
                    freeze_feature_encoder=False,  # the paper's strategies as published: full trains the CNN encoder too
                    epochs=opts.epochs, batch_size=opts.batch_size, lr=config.lr or opts.lr, max_seconds=opts.max_seconds, seed=opts.seed + k, device=device,
                    resume=(run_dir / "last.safetensors").exists(), quiet=True,
                ))
            test_path = opts.transfer_manifest if opts.table == "transfer" else fold["test"]
            if test_path not in test_sets:
                test_sets[test_path] = AudioSet(read_manifest(test_path))
            report, cost = _score(run_dir, test_sets[test_path], labels, opts.batch_size, device)
            atomic.write_text(run_dir / "test_metrics.json", json.dumps(report, indent=1) + "\n")
            per_fold.append(report)
            cm_sum += np.array(report["confusion_matrix"])
            config_curves.append([json.loads(line)["ua"] for line in metrics_path.read_text().splitlines()])
        summary = {m: {"mean": float(np.mean([r[m] for r in per_fold])), "std": float(np.std([r[m] for r in per_fold]))}
                   for m in ("wa", "ua", "macro_f1")}
        rows.append({"name": config.name, "upstream": config.upstream, "head": config.head, "strategy": config.strategy,
                     "upstream_layers": config.upstream_layers, "folds": len(per_fold), **summary, "cost": cost,
                     "per_fold": per_fold, "confusion_matrix": cm_sum.tolist()})
        curves[config.name] = config_curves
        plot_confusion(cm_sum, list(labels), out / f"confusion_{slug}.png",
                       f"{config.name}: UA {summary['ua']['mean']:.1%} (sum over {len(per_fold)} folds)")
        log(f"{config.name}: WA {summary['wa']['mean']:.1%}  UA {summary['ua']['mean']:.1%}  F1 {summary['macro_f1']['mean']:.1%}")
    results["configs"] = rows
    atomic.write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic.write_text(out / "results.md", _markdown(opts.table, record, rows))
    _plot_curves(curves, out / "curves.png", f"sertrt experiment {opts.table}: valid UA per epoch (mean, min-max over folds)")
    return results
