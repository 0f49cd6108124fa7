"""Export: ONNX contract, validation at untraced shapes, bundles, and a bare onnxruntime client."""

import json
import subprocess
import sys
from collections import Counter

import onnxruntime as ort
import pytest
import torch
from conftest import REPO, decisive_run, make_tone_corpus
from packaging.version import Version
from test_precision import forbidden_ops

from sertrt.core.bundle import load_bundle
from sertrt.core.errors import CheckFailed, SertrtError
from sertrt.export.exporter import ExportOptions, export_bundle
from sertrt.verify.compare import manifest_scorer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    decisive_run(root)
    manifest = make_tone_corpus(root / "tones", per_label=5, seed=11)
    return root, manifest


def test_fp32_bundle_contract_and_validation(checkpoint):
    root, manifest = checkpoint
    out = root / "b32"
    said = []
    m = export_bundle(ExportOptions(root / "run", out, "fp32", test_manifest=manifest), log=said.append,
                      score=manifest_scorer(root / "run"))
    assert m.precision == "fp32" and m.validation["passed"]
    assert forbidden_ops(out / "model.onnx") == {}
    assert m.labels == ("neutral", "happy", "angry", "sad") and m.sample_rate == 16000 and m.opset >= 17
    names = [c["name"] for c in m.validation["checks"]]
    assert names == ["batch 1 (8 s) vs torch", "one at a time (0.5/1.7/1.3 s) vs torch", "batch 3 vs torch",
                     "batch 3 vs one at a time"]
    # every stage timed, in the card and one line each in the output
    stages = ["load checkpoint", "torch.onnx.export", "onnxslim", "torch reference", "validate", "tensorrt audit", "score"]
    assert list(m.timings) == stages and all(v >= 0 for v in m.timings.values())
    counted = [line.split(":")[0].strip() for line in said if line.startswith("  [")]
    assert counted == [f"[{k}/8] {name}" for k, name in enumerate([*stages, "hash and write"], 1)]
    assert m.accuracy["agreement"] == 1.0
    assert set(m.files) == {"model.onnx"}
    assert (m.source_checkpoint["upstream_layers"], m.source_checkpoint["upstream_source_layers"]) == (2, 2)
    import onnx

    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["waveform", "lengths"] and [o.name for o in graph.output] == ["logits"]
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "num_samples"]
    assert load_bundle(out).files["model.onnx"] == m.files["model.onnx"]


def test_bare_onnxruntime_client_matches_sertrt_evaluate(checkpoint, tmp_path, cli):
    """A client with only onnxruntime, soundfile, numpy and the bundle's manifest gets evaluate's predictions."""
    root, manifest = checkpoint
    out = root / "b32"
    if not out.exists():
        export_bundle(ExportOptions(root / "run", out, "fp32"), log=lambda s: None)
    assert cli("evaluate", root / "run", "--manifest", manifest, "--out", tmp_path).returncode == 0
    expected = [json.loads(x) for x in (tmp_path / "manifest.predictions.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    client = REPO / "examples" / "bundle_client.py"  # refuses to import sertrt or torch
    result = subprocess.run([sys.executable, client, out, *(str(manifest.parent / r["path"]) for r in rows)],
                            capture_output=True, text=True, check=True)
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == [e["predicted"] for e in expected]


def test_existing_bundle_is_kept_when_export_fails_or_is_not_allowed(checkpoint, monkeypatch):
    root, _ = checkpoint
    out = root / "keep"
    export_bundle(ExportOptions(root / "run", out, "fp32"), log=lambda s: None)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(SertrtError, match="--overwrite"):
        export_bundle(ExportOptions(root / "run", out, "fp32"), log=lambda s: None)

    def failing(*a, **k):
        return {"passed": False, "checks": [], "table": "check ... FAIL"}

    monkeypatch.setattr("sertrt.export.exporter.validate_onnx", failing)
    with pytest.raises(CheckFailed, match="does not match PyTorch"):  # a failed check: exit 3
        export_bundle(ExportOptions(root / "run", out, "fp32", overwrite=True), log=lambda s: None)
    assert (out / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".keep")) == []  # no staging left


def test_tampered_bundle_is_refused(checkpoint, tmp_path):
    root, _ = checkpoint
    out = tmp_path / "b"
    export_bundle(ExportOptions(root / "run", out, "fp32"), log=lambda s: None)
    with open(out / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(SertrtError, match="does not match its sha256"):
        load_bundle(out)
    with pytest.raises(SertrtError, match="not a sertrt bundle"):
        load_bundle(tmp_path)


def test_bad_export_options(checkpoint, tmp_path):
    root, _ = checkpoint
    with pytest.raises(SertrtError, match="valid: fp32, fp16, int8"):
        export_bundle(ExportOptions(root / "run", tmp_path / "x", "bf16"), log=lambda s: None)
    with pytest.raises(SertrtError, match="needs --calib-manifest"):
        export_bundle(ExportOptions(root / "run", tmp_path / "x", "int8"), log=lambda s: None)
    with pytest.raises(SertrtError, match=r"TensorRT takes the `int8` \(QDQ\) bundle"):
        export_bundle(ExportOptions(root / "run", tmp_path / "x", "int8-dynamic", engine=True), log=lambda s: None)
    assert not (tmp_path / "x").exists()
    from sertrt.export.spec import Profile

    with pytest.raises(SertrtError, match="profile num_samples"):
        export_bundle(ExportOptions(root / "run", tmp_path / "x", "fp32", profile=Profile(max_samples=100)), log=lambda s: None)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_bundles_validate(checkpoint, precision):
    root, manifest = checkpoint
    out = root / f"b-{precision}"
    m = export_bundle(ExportOptions(root / "run", out, precision, calib_manifest=manifest, calib_utterances=16,
                                    test_manifest=manifest), log=lambda s: None, score=manifest_scorer(root / "run"))
    assert m.validation["passed"] and m.precision == precision
    assert forbidden_ops(out / "model.onnx") == {}
    assert m.accuracy["agreement"] >= 0.9
    if precision == "int8":
        assert m.precision_report["max_abs_zero_point"] == 0


def test_int8_dynamic_bundle_for_onnx_runtime_cpu(checkpoint):
    """No calibration manifest; validated against PyTorch like every precision; integer MatMuls, float head."""
    import onnx

    from sertrt.core.precisions import LIMITS

    root, manifest = checkpoint
    out = root / "b-int8-dynamic"
    m = export_bundle(ExportOptions(root / "run", out, "int8-dynamic", test_manifest=manifest), log=lambda s: None,
                      score=manifest_scorer(root / "run"))
    assert m.precision == "int8-dynamic" and load_bundle(out).precision == "int8-dynamic"
    assert m.validation["passed"] and m.validation["precision"] == "int8-dynamic"
    assert m.validation["tolerances"] == LIMITS["int8-dynamic"].validation()
    assert any("(8 s)" in c["name"] for c in m.validation["checks"])
    assert min(c["agreement"] for c in m.validation["checks"]) == 1.0  # decisive logits: no top-1 flips
    assert m.accuracy["agreement"] == 1.0 and abs(m.accuracy["delta_points"]["ua"]) <= 1.0
    report = m.precision_report
    assert report["format"] == "dynamic" and report["target"].startswith("ONNX Runtime CPU")
    assert set(m.files) == {"model.onnx"}

    graph = onnx.load(str(out / "model.onnx")).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["MatMulInteger"] > 0 and ops["DynamicQuantizeLinear"] > 0
    assert forbidden_ops(out / "model.onnx") == {}
    assert report["quantised_ops"] == {"DynamicQuantizeLinear": ops["DynamicQuantizeLinear"], "MatMulInteger": ops["MatMulInteger"]}
    assert ops["QuantizeLinear"] == ops["ConvInteger"] == 0  # Conv weights stay float
    head = [n for n in graph.node if n.name.startswith("/head/")]
    assert {"GRU", "MatMul"} <= {n.op_type for n in head} and not {"MatMulInteger", "DynamicQuantizeLinear"} & {n.op_type for n in head}
    assert [i.name for i in graph.input] == ["waveform", "lengths"] and [o.name for o in graph.output] == ["logits"]


class _Branchy(torch.nn.Module):
    """A model whose python branch / int() freezes a value at trace time: the graph would ignore the input."""

    upstream = None

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, waveform, lengths):
        if self.kind == "branch":
            scale = 2.0 if waveform.shape[1] > 5 else 1.0
        else:
            scale = float(int(waveform.abs().sum()))
        return waveform[:, :4] * scale


@pytest.mark.parametrize("kind", ["branch", "int"])
def test_tracer_warning_fails_the_export(tmp_path, kind):
    from sertrt.export.onnx_export import export_onnx
    from sertrt.export.spec import ExportSpec

    spec = ExportSpec(labels=("neutral", "happy", "angry", "sad"), sample_rate=16000)
    with pytest.raises(SertrtError, match=r"test_export\.py:\d+: TracerWarning Converting a tensor to a Python") as e:
        export_onnx(_Branchy(kind), tmp_path / "m.onnx", spec)
    assert "\n" not in str(e.value)


def test_export_shows_no_deprecation_notice(checkpoint, tmp_path):
    import warnings

    root, _ = checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_bundle(ExportOptions(root / "run", tmp_path / "b", "fp32"), log=lambda s: None)
    assert [str(w.message)[:80] for w in caught if "onnx" in w.filename or "TracerWarning" in w.category.__name__] == []


def test_a_full_disk_names_the_file_torch_could_not_write(checkpoint, tmp_path, monkeypatch):
    import errno

    def disk_full(*args, **kwargs):  # torch writes the ONNX bytes itself: its OSError names no file
        raise OSError(errno.ENOSPC, "No space left on device")

    root, _ = checkpoint
    monkeypatch.setattr(torch.onnx, "export", disk_full)
    with pytest.raises(OSError) as e:
        export_bundle(ExportOptions(root / "run", tmp_path / "b", "fp32"), log=lambda s: None)
    assert e.value.filename.endswith("model.fp32.onnx") and str(tmp_path / ".b.staging.") in e.value.filename
    assert list(tmp_path.iterdir()) == []


def test_a_bad_signing_key_is_refused_before_exporting(checkpoint, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("exported before the key was checked")

    root, _ = checkpoint
    key = tmp_path / "key.pem"
    key.write_text("not a key\n")
    monkeypatch.setattr("sertrt.export.exporter.export_onnx", never)
    with pytest.raises(SertrtError, match=r"key\.pem: not an unencrypted PEM private key"):
        export_bundle(ExportOptions(root / "run", tmp_path / "b", "fp32", sign=key), log=lambda s: None)


def test_checkpoints_read_like_every_other_file(checkpoint):
    import os

    root, _ = checkpoint
    mask = os.umask(0)
    os.umask(mask)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (root / "run").iterdir()} == {
        "best.safetensors": oct(0o666 & ~mask), "best.json": oct(0o666 & ~mask)}


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """wav2vec2-base's layout (group-norm feature encoder, post-LN) at tiny's size."""
    root = tmp_path_factory.mktemp("export-base")
    decisive_run(root, "tiny-base")
    # 100 utterances: one answer the int8 graph flips moves UA by at most 1 point, inside the export's gate
    return root, make_tone_corpus(root / "tones", per_label=25, seed=11)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_group_norm_upstream_exports_and_validates(base_checkpoint, precision):
    """A group-norm upstream is batch-invariant like the others: every batch matches one at a time (top-1 100%),
    at every precision, and the graph is clean for TensorRT."""
    root, manifest = base_checkpoint
    out = root / f"b-{precision}"
    m = export_bundle(ExportOptions(root / "run", out, precision, calib_manifest=manifest, calib_utterances=16,
                                    test_manifest=manifest), log=lambda s: None, score=manifest_scorer(root / "run"))
    assert m.validation["passed"] and m.source_checkpoint["upstream"] == "tiny-base"
    alone = [c for c in m.validation["checks"] if c["name"].endswith("vs one at a time")]
    assert len(alone) == 1 and all(c["passed"] and c["agreement"] == 1.0 for c in alone)
    assert forbidden_ops(out / "model.onnx") == {}
    findings = [f["rule"] for f in m.tensorrt_audit["findings"]]
    # onnxruntime 1.20's symbolic_shape_infer (the audit's shape check) cannot read the int8 graph and says so; 1.30's can
    old_ort = Version(ort.__version__) < Version("1.30") and precision == "int8"
    assert m.tensorrt_audit["clean"] or (old_ort and findings == ["shapes"])
    assert m.accuracy["agreement"] >= 0.98


def test_one_run_exports_several_precisions_from_one_trace(checkpoint, tmp_path, monkeypatch):
    """fp32 and int8-dynamic in one run: torch.onnx.export and the PyTorch references run once, and each bundle
    equals the one its own single-precision export writes (timings aside)."""
    from sertrt.export import exporter
    from sertrt.export.exporter import export_bundles

    root, manifest = checkpoint
    calls = Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(torch.onnx, "export", counted("trace", torch.onnx.export))
    monkeypatch.setattr(exporter, "torch_references", counted("references", exporter.torch_references))
    score = manifest_scorer(root / "run")
    cards = export_bundles(ExportOptions(root / "run", tmp_path / "both", "int8-dynamic,fp32", test_manifest=manifest),
                           log=lambda s: None, score=score)
    assert calls == {"trace": 1, "references": 1} and list(cards) == ["fp32", "int8-dynamic"]
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["fp32", "int8-dynamic"]  # nothing else left
    for precision, card in cards.items():
        alone = export_bundle(ExportOptions(root / "run", tmp_path / precision, precision, test_manifest=manifest),
                              log=lambda s: None, score=score)
        assert {**card.to_dict(), "timings": None} == {**alone.to_dict(), "timings": None}
        assert load_bundle(tmp_path / "both" / precision).files == card.files
    with pytest.raises(SertrtError, match="a bundle; several precisions go into a folder of bundles"):
        export_bundles(ExportOptions(root / "run", tmp_path / "fp32", "fp32,int8-dynamic", test_manifest=manifest,
                                     overwrite=True), log=lambda s: None, score=score)
    with pytest.raises(SertrtError, match="given twice"):
        export_bundles(ExportOptions(root / "run", tmp_path / "x", "fp32,fp32"), log=lambda s: None)
    with pytest.raises(SertrtError, match="one precision here"):
        export_bundle(ExportOptions(root / "run", tmp_path / "x", "fp32,int8-dynamic"), log=lambda s: None)


class _Pooled(torch.nn.Module):
    """Logits from masked statistics of the waveform, with one of the faults validation is there to catch:
    `padding` averages over padded zeros too; `frozen` reads only the traced 2 s once exported."""

    upstream = None

    def __init__(self, fault=None):
        super().__init__()
        self.fault = fault
        self.proj = torch.nn.Linear(3, 4)
        torch.nn.init.normal_(self.proj.weight, std=3.0)

    def forward(self, waveform, lengths):
        keep = (torch.arange(waveform.shape[1])[None] < lengths[:, None]).float()
        if self.fault == "frozen" and torch.jit.is_tracing():
            keep = keep * (torch.arange(waveform.shape[1]) < 32000).float()[None]
        count = (torch.full_like(lengths, waveform.shape[1]) if self.fault == "padding" else keep.sum(1)).float()
        x = waveform * keep
        stats = torch.stack([x.sum(1), x.abs().sum(1), (x * x).sum(1)], 1) / count[:, None]
        return self.proj(100 * stats)


@pytest.mark.parametrize("fault, failing", [
    (None, set()),
    ("padding", {"batch 3 vs torch", "batch 3 vs one at a time"}),
    ("frozen", {"batch 1 (8 s) vs torch"}),
])
def test_each_validation_check_catches_its_fault(tmp_path, fault, failing):
    """The fewer checks still catch what the old ones did: padding in a batch (vs torch and vs the same runtime
    one at a time) and a value frozen at trace time (the profile's longest input, alone)."""
    from sertrt.export.onnx_export import export_onnx
    from sertrt.export.spec import ExportSpec
    from sertrt.export.validate import torch_references, validate_onnx, validation_batches

    torch.manual_seed(0)
    model = _Pooled(fault).eval()
    path = export_onnx(model, tmp_path / "m.onnx", ExportSpec(labels=("neutral", "happy", "angry", "sad")))
    report = validate_onnx(path, "fp32", torch_references(model, validation_batches(16000), 16000))
    assert {c["name"] for c in report["checks"] if not c["passed"]} == failing
    assert report["passed"] == (fault is None)


def test_onnxslim_without_the_weights_makes_the_same_graph(tmp_path):
    """simplify_onnx hands onnxslim's optimizer the graph without its weight matrices, once: the result is the
    graph onnxslim.slim() makes of the whole model, op for op, weight for weight and output for output (of equal
    twins, a tensor may keep another one's name)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import onnxslim
    from onnx import numpy_helper

    from sertrt.core.checkpoint import resolve_checkpoint
    from sertrt.export.onnx_export import export_onnx, simplify_onnx
    from sertrt.export.spec import ExportSpec
    from sertrt.model.io import load_model

    model, header = load_model(resolve_checkpoint(decisive_run(tmp_path, "tiny-base")))
    path = export_onnx(model, tmp_path / "m.onnx", ExportSpec(labels=tuple(header.dims.labels)))
    whole = onnxslim.slim(onnx.load(str(path)))
    simplify_onnx(path, {"precision": "fp32"})
    light = onnx.load(str(path))
    assert [n.op_type for n in light.graph.node] == [n.op_type for n in whole.graph.node]
    def weights(m):
        return sorted((t.data_type, list(t.dims), numpy_helper.to_array(t).tobytes()) for t in m.graph.initializer)

    assert weights(light) == weights(whole)
    feed = {"waveform": np.random.default_rng(0).standard_normal((2, 9000), np.float32),
            "lengths": np.array([9000, 5000], np.int64)}
    runs = [ort.InferenceSession(m.SerializeToString()).run(None, feed) for m in (light, whole)]
    assert all(np.array_equal(x, y) for x, y in zip(*runs))
    assert [i.name for i in light.graph.input] == [i.name for i in whole.graph.input] == ["waveform", "lengths"]
    assert {p.key: p.value for p in light.metadata_props} == {"precision": "fp32"}


def test_cli_exports_each_repeated_precision_into_its_folder(checkpoint, tmp_path, cli):
    root, manifest = checkpoint
    argv = ["export", root / "run", "--out", tmp_path / "b", "--precision", "fp32", "--precision", "int8-dynamic",
            "--test-manifest", manifest]
    done = cli(*argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"wrote {tmp_path / 'b' / p} ({p}, validation passed, 1 files)"
                                        for p in ("fp32", "int8-dynamic")]
    assert [load_bundle(tmp_path / "b" / p).precision for p in ("fp32", "int8-dynamic")] == ["fp32", "int8-dynamic"]
    refused = cli(*argv[:-2], "--triton", tmp_path / "t")
    assert refused.returncode == 1 and "--triton: one --precision" in refused.stderr and not (tmp_path / "t").exists()


def test_bench_artifacts_export_every_precision_from_one_trace(tmp_path, monkeypatch):
    from sertrt.bench.artifacts import prepare_artifacts

    traced = []
    export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: traced.append(1) or export(*a, **k))
    art = prepare_artifacts("tiny", ("int8-dynamic", "fp32"), tmp_path)
    assert len(traced) == 1 and list(art.export_seconds) == ["fp32,int8-dynamic"]
    assert {p: load_bundle(b).precision for p, b in art.bundles.items()} == {"fp32": "fp32", "int8-dynamic": "int8-dynamic"}
    again = prepare_artifacts("tiny", ("fp32", "int8-dynamic"), tmp_path)  # cached: nothing exported
    assert len(traced) == 1 and again.export_seconds == {"fp32": 0.0, "int8-dynamic": 0.0} and again.bundles == art.bundles
    from sertrt.export import exporter

    made_by = exporter.export_versions()
    monkeypatch.setattr(exporter, "export_versions", lambda: {**made_by, "onnxruntime": "9.9.9"})  # an upgrade
    upgraded = prepare_artifacts("tiny", ("fp32",), tmp_path)
    assert len(traced) == 2 and upgraded.export_seconds["fp32"] > 0
    assert load_bundle(upgraded.bundles["fp32"]).versions["onnxruntime"] == "9.9.9"
