"""The paper's tables as commands, on generated tones with tiny models (1 epoch: wiring, not accuracy)."""

import json

import pytest
from conftest import make_tone_corpus

from sertrt.core.errors import SertrtError
from sertrt.core.manifest import read_manifest, write_manifest
from sertrt.data.protocol import ProtocolOptions, write_protocol
from sertrt.training.experiment import (
    ExperimentOptions,
    default_layers,
    run_experiment,
    table_configs,
)


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    manifest = make_tone_corpus(root / "tones", per_label=5, seed=5)
    write_protocol(ProtocolOptions(manifest, root / "protocol", folds=2))
    transfer = [u for u in read_manifest(manifest) if u.label != "neutral"][:6]
    write_manifest(root / "transfer.jsonl", transfer)
    return root


def opts(protocol, table, **kw):
    base = dict(table=table, protocol=protocol / "protocol", out=protocol / "out", xlsr="tiny", wav2vec2="tiny-base",
                epochs=1, batch_size=4, lr=1e-3, max_seconds=1.0)
    return ExperimentOptions(**{**base, **kw})


def test_heads_table_over_two_folds(protocol):
    results = run_experiment(opts(protocol, "heads"), log=lambda m: None)
    names = [c["name"] for c in results["configs"]]
    assert names == ["xlsr+fcn", "xlsr+cnn-sa-dnn", "xlsr+hgfm", "stats-lr floor"]  # the floor is in every table
    for c in results["configs"]:
        assert c["folds"] == 2 and len(c["per_fold"]) == 2
        assert c["wa"]["mean"] == pytest.approx(sum(f["wa"] for f in c["per_fold"]) / 2)
        assert sum(map(sum, c["confusion_matrix"])) == 2 * c["per_fold"][0]["count"]
    out = protocol / "out" / "heads"
    md = (out / "results.md").read_text()
    assert "68.8 / 69.7 / 69.2" in md and "| stats-lr floor | `stats-lr` | full |" in md
    floor = next(c["ua"]["mean"] for c in results["configs"] if c["name"] == "stats-lr floor")
    hgfm = next(c["ua"]["mean"] for c in results["configs"] if c["name"] == "xlsr+hgfm")
    # a configuration that does not beat the floor is marked as such, one that does is not
    assert ("| xlsr+hgfm **(not above the floor)** | `tiny` | frozen |" in md) == (hgfm <= floor)
    assert ("| xlsr+hgfm | `tiny` | frozen |" in md) == (hgfm > floor)
    assert f"UA {100 * floor:.1f}. A configuration whose mean UA does not exceed it is marked." in md
    for png in ("curves.png", "confusion_xlsr_hgfm.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    # A finished experiment is not trained again.
    mtime = (out / "xlsr_hgfm" / "fold0" / "best.safetensors").stat().st_mtime
    run_experiment(opts(protocol, "heads", configs=["xlsr+hgfm"]), log=lambda m: None)
    assert (out / "xlsr_hgfm" / "fold0" / "best.safetensors").stat().st_mtime == mtime


@pytest.mark.parametrize("table, expected", [
    ("upstreams", ["fbank+hgfm", "mfcc+hgfm", "cnn-lstm+hgfm", "wav2vec2+hgfm", "xlsr+hgfm", "stats-lr floor"]),
    ("finetune", ["xlsr+hgfm frozen", "xlsr+hgfm semi", "xlsr+hgfm full", "stats-lr floor"]),
])
def test_other_tables_run(protocol, table, expected):
    results = run_experiment(opts(protocol, table, max_folds=1), log=lambda m: None)
    assert [c["name"] for c in results["configs"]] == expected
    assert [c["strategy"] for c in results["configs"]][-1] in ("frozen", "full")


def test_transfer_scores_three_classes(protocol):
    results = run_experiment(opts(protocol, "transfer", max_folds=1, transfer_manifest=protocol / "transfer.jsonl"),
                             log=lambda m: None)
    for c in results["configs"]:
        assert c["per_fold"][0]["labels"] == ["happy", "angry", "sad"]
        assert len(c["confusion_matrix"]) == 3 and c["per_fold"][0]["count"] == 6
    with pytest.raises(SertrtError, match="needs --transfer-manifest"):
        run_experiment(opts(protocol, "transfer"), log=lambda m: None)
    bad = protocol / "with_neutral.jsonl"
    write_manifest(bad, read_manifest(protocol / "tones" / "manifest.jsonl")[:3])
    with pytest.raises(SertrtError, match="expected only happy, angry, sad"):
        run_experiment(opts(protocol, "transfer", transfer_manifest=bad), log=lambda m: None)


def test_layers_table_one_row_per_k(protocol):
    results = run_experiment(opts(protocol, "layers", layers=[2, 1], max_folds=1), log=lambda m: None)
    rows = results["configs"]
    assert [r["name"] for r in rows] == ["xlsr+hgfm 2 layers", "xlsr+hgfm 1 layer"]
    assert [r["cost"]["layers"] for r in rows] == [2, 1] and {r["cost"]["source_layers"] for r in rows} == {2}
    assert {r["strategy"] for r in rows} == {"full"} and all(r["folds"] == 1 for r in rows)
    full, cut = (r["cost"] for r in rows)
    assert full["parameters"] > cut["parameters"] and full["gflops_window"] > cut["gflops_window"] > 0
    assert full["gflops_window"] == full["gflops_window_all_layers"] == cut["gflops_window_all_layers"]
    out = protocol / "out" / "layers"
    assert [r["name"] for r in json.loads((out / "results.json").read_text())["configs"]] == [r["name"] for r in rows]
    table = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| layers kept | WA | UA | macro-F1 | parameters | GFLOP per 2 s window | vs all 2 layers |")
    assert [line.split(" | ")[0] for line in table[1:]] == ["| 2", "| 1"]
    assert table[1].endswith(" | 100% |")
    ckpt = json.loads((out / "xlsr_hgfm-1-layer" / "fold0" / "best.json").read_text())
    assert ckpt["dims"]["upstream"]["config"]["num_hidden_layers"] == 1


def test_layers_table_defaults_and_bad_k(protocol):
    assert default_layers(24) == [24, 18, 12, 8, 6] and default_layers(12) == [12, 9, 6, 4, 3]
    assert [c.upstream_layers for c in table_configs(opts(protocol, "layers"))] == default_layers(2) == [2, 1]
    with pytest.raises(SertrtError, match=r"--upstream-layers 3: tiny has 2 transformer layers \(valid: 0 to 2\)"):
        run_experiment(opts(protocol, "layers", layers=[1, 3], out=protocol / "bad"), log=lambda m: None)
    assert not (protocol / "bad").exists()  # rejected before anything trained
    with pytest.raises(SertrtError, match="needs a wav2vec2 upstream"):
        table_configs(opts(protocol, "layers", xlsr="fbank"))


def test_unknown_table_and_config(protocol):
    with pytest.raises(SertrtError, match="valid: upstreams, heads, finetune, transfer"):
        run_experiment(opts(protocol, "table4"), log=lambda m: None)
    with pytest.raises(SertrtError, match="unknown configuration"):
        run_experiment(opts(protocol, "heads", configs=["xlsr+svm"]), log=lambda m: None)


def test_auto_trains_and_scores_every_fold_on_the_gpu(protocol, monkeypatch):
    """`--device auto` where PyTorch sees a GPU (pretended; nothing runs there): the folds train and are scored on it."""
    import torch

    import sertrt.training.experiment as experiment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    devices = []

    class Scored(Exception):
        pass

    def score(run_dir, test, labels, batch_size, device):
        devices.append(device)
        raise Scored

    monkeypatch.setattr(experiment, "train", lambda o: devices.append(o.device))
    monkeypatch.setattr(experiment, "_score", score)
    with pytest.raises(Scored):
        run_experiment(opts(protocol, "heads", out=protocol / "gpu", device="auto"), log=lambda m: None)
    assert devices == ["cuda", "cuda"]  # the fold's training, then its scoring
