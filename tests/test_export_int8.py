"""INT8 exports are gated on real utterances (export --test-manifest, else the calibration manifest's
held-out part): outside the parity limits there, no bundle is written."""


import pytest
from conftest import decisive_run, make_tone_corpus

from sertrt.core.errors import CheckFailed, SertrtError
from sertrt.core.precisions import LIMITS
from sertrt.export.exporter import ExportOptions, export_bundle
from sertrt.export.precision import split_calibration
from sertrt.verify.compare import manifest_scorer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8-gate")
    return decisive_run(root), make_tone_corpus(root / "tones", per_label=10, seed=3)


def test_int8_outside_parity_limits_on_real_utterances_writes_no_bundle(run, tmp_path):
    ckpt, manifest = run
    real = manifest_scorer(ckpt)

    def flipping(onnx, labels, precision, data):  # the real comparison, as if a quarter of the answers flipped
        return {**real(onnx, labels, precision, data), "agreement": 0.75}

    out = tmp_path / "b"
    with pytest.raises(CheckFailed, match=r"int8-dynamic ONNX vs PyTorch on .*top-1 agreement 75\.00% < 98\.00%; no bundle written"):
        export_bundle(ExportOptions(ckpt, out, "int8-dynamic", test_manifest=manifest), log=lambda s: None, score=flipping)
    assert not out.exists()


def test_int8_without_test_manifest_is_gated_on_the_utterances_not_calibrated_on(run, tmp_path):
    ckpt, manifest = run
    m = export_bundle(ExportOptions(ckpt, tmp_path / "b", "int8", calib_manifest=manifest, calib_utterances=16,
                                    calibration="minmax"), log=lambda s: None, score=manifest_scorer(ckpt))
    calibrated, held_out = split_calibration(manifest, num=16)
    assert len(calibrated) == 16 and not {u.path for u in calibrated} & {u.path for u in held_out}
    assert m.accuracy["count"] == len(held_out) == 24 and m.accuracy["manifest"].endswith("(24 utterances not calibrated on)")
    assert m.accuracy["agreement"] >= LIMITS["int8"].parity_agreement
    assert m.precision_report["calibration_method"] == "minmax"  # not the default


def test_int8_options_refused_before_any_export(run, tmp_path):
    ckpt, manifest = run
    small = make_tone_corpus(tmp_path / "small", per_label=5)  # 20: 16 calibrate, 4 left
    cases = [
        (dict(precision="int8-dynamic"), "gated on real utterances: pass --test-manifest"),
        (dict(precision="int8-dynamic", calib_manifest=manifest, calibration="entropy"), "only --precision int8 is calibrated"),
        (dict(precision="int8", calib_manifest=manifest, calibration="kl"), r"valid: minmax, percentile, entropy"),
        (dict(precision="int8", calib_manifest=small, calib_utterances=16), "4 utterance\\(s\\) left after the 16 calibrated on"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SertrtError, match=message):
            export_bundle(ExportOptions(ckpt, tmp_path / "x", **kwargs), log=lambda s: None, score=manifest_scorer(ckpt))
        assert not (tmp_path / "x").exists()


def test_export_cli_takes_the_calibration_method(run, tmp_path, cli):
    ckpt, manifest = run
    result = cli("export", ckpt, "--out", tmp_path / "b", "--precision", "int8-dynamic", "--test-manifest", manifest,
                 "--calibration", "entropy")
    assert result.returncode == 1, result.stderr
    assert "--calibration: only --precision int8 is calibrated" in result.stderr


def test_int8_dynamic_card_records_its_cpu_target_and_a_host_that_differs_is_warned(run, tmp_path, monkeypatch):
    from sertrt.core.bundle import BundleCard, load_bundle
    from sertrt.runtime.runners import OrtRunner

    ckpt, manifest = run
    out = tmp_path / "b"
    export_bundle(ExportOptions(ckpt, out, "int8-dynamic", test_manifest=manifest, cpu_target="avx2"), log=lambda s: None,
                  score=manifest_scorer(ckpt))
    card = load_bundle(out)
    assert card.cpu_target == "avx2" and card.precision_report["weights"] == "QInt8 per channel (7-bit: reduce_range)"
    older = {k: v for k, v in card.to_dict().items() if k != "cpu_target"}  # a card from before the field: any CPU
    assert BundleCard.from_dict(older, "old").cpu_target is None
    with pytest.raises(SertrtError, match="field 'cpu_target' must be one of vnni, avx2, arm64"):
        BundleCard.from_dict({**older, "cpu_target": "sse4"}, "bad")
    monkeypatch.setattr("sertrt.core.precisions.host_cpu_target", lambda: "vnni")
    with pytest.warns(RuntimeWarning, match="exported for --cpu-target avx2, this host is vnni"):
        OrtRunner(out / card.model, card=card).__enter__()
    with pytest.raises(SertrtError, match="--cpu-target: only --precision int8-dynamic"):
        export_bundle(ExportOptions(ckpt, tmp_path / "x", "fp32", cpu_target="vnni"), log=lambda s: None)
