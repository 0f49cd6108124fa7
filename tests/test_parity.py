"""`sertrt parity`'s window mode runs the stream users run: the same blocks, resampler and gate as `sertrt stream`."""

import numpy as np
from conftest import tone

from sertrt.core.audio import write_wav
from sertrt.core.manifest import Utterance, read_manifest, write_manifest
from sertrt.runtime.runners import RunnerOptions
from sertrt.runtime.sources import StreamOptions, run_stream
from sertrt.verify.parity import ParityOptions, format_parity, run_parity


def test_window_mode_compares_the_windows_the_stream_prints(decisive_bundle, tmp_path):
    """A 44.1 kHz file with 2.5 s of silence in it: the stream resamples block by block and its gate skips the
    silent windows; parity scores exactly the windows the stream scores, and counts the ones it skips."""
    rng = np.random.default_rng(0)
    rate = 44100
    audio = np.concatenate([tone("happy", 2.2, rate, rng), np.zeros(int(2.5 * rate), np.float32),
                            tone("sad", 1.7, rate, rng)])
    write_wav(tmp_path / "a.wav", audio, rate)
    write_manifest(tmp_path / "m.jsonl", [Utterance(str(tmp_path / "a.wav"), "happy", "t", "xx", "s0",
                                                    len(audio) / rate, rate)])
    printed = []
    run_stream(StreamOptions(decisive_bundle / "bundle", str(tmp_path / "a.wav"), runner=RunnerOptions(threads=1)), printed.append)
    windows = printed[:-1]
    scored = [[str(read_manifest(tmp_path / "m.jsonl")[0].path), w["start"], w["end"]] for w in windows if not w["silent"]]
    assert scored and len(scored) < len(windows)

    results = run_parity(ParityOptions(decisive_bundle / "bundle", decisive_bundle / "run", tmp_path / "m.jsonl",
                                       runner=RunnerOptions(threads=1)))
    window = results["modes"]["window"]
    assert [[p, round(a, 4), round(b, 4)] for p, a, b in window["windows"]] == scored
    assert window["count"] == len(scored) and window["skipped_silent"] == len(windows) - len(scored)
    assert results["passed"] and window["agreement"] == 1.0, format_parity(results)


def test_parity_and_export_validation_report_the_one_logit_comparison():
    """`sertrt parity` (verify.compare) and export validation (export.validate.compare) report core.metrics'
    numbers for the same logits."""
    from sertrt.core.metrics import compare_logits
    from sertrt.export.validate import compare as validate_compare
    from sertrt.verify.compare import compare as parity_compare

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((6, 4)).astype(np.float32)
    out = ref + 0.01 * rng.standard_normal((6, 4)).astype(np.float32)
    out[0] = out[0, ::-1]  # one decision changed
    e = compare_logits(ref, out, rtol=1e-3)
    p = parity_compare(ref, out, ref.argmax(1), ("a", "b", "c", "d"))
    assert (p["logits_max_abs"], p["logits_max_rel"], p["agreement"]) == (e["max_abs"], e["max_rel"], e["agreement"])
    v = validate_compare("x", ref, out, atol=e["required_atol"], rtol=1e-3, min_agreement=e["agreement"])
    assert (v.max_abs, v.max_rel, v.required_atol, v.agreement, v.passed) == (
        e["max_abs"], e["max_rel"], e["required_atol"], e["agreement"], True)
    assert not validate_compare("x", ref, out, atol=0.99 * e["required_atol"], rtol=1e-3, min_agreement=0.0).passed
