"""The Jetson path's fast checks (the emulated run itself is opt-in: scripts/jetson_check.sh).

The committed wheel table must describe pyproject's base install as it is now, and the comparison the check relies
on must catch what it claims to catch.
"""

import copy
import importlib.util
import json

import pytest
from conftest import REPO
from packaging.requirements import Requirement

RESULTS = REPO / "benchmarks" / "results"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wheel_table_is_current():
    """Edit a base dependency and this fails until `python scripts/jetson_wheels.py` is run again."""
    wheels = load_script("jetson_wheels")
    table = json.loads((RESULTS / "jetson-wheels.json").read_text())
    assert table["requirements"] == wheels.base_requirements(), "rerun: python scripts/jetson_wheels.py"
    assert table["failures"] == []
    assert [t["python"] for t in table["targets"]] == ["3.10", "3.12"]
    for python in ("3.10", "3.12"):
        rows = [r for r in table["rows"] if r["python"] == python and "resolved" not in r]
        expected = [r for r in map(Requirement, table["requirements"])
                    if not r.marker or r.marker.evaluate({"python_version": python})]
        assert [Requirement(r["requirement"]).name for r in rows] == [r.name for r in expected]
        for row in rows:  # an aarch64 (or pure Python) wheel at both ends of the range
            for end in ("lowest", "newest"):
                assert row[end]["platform"].endswith("aarch64") or row[end]["platform"] == "any", row
            assert row["lowest"]["version"] == row["lower_bound"] or row["lowest"]["version"].startswith(row["lower_bound"])
        resolved = next(r for r in table["rows"] if r["python"] == python and "resolved" in r)
        assert "torch" not in {w["name"] for w in resolved["resolved"]}
        assert {"onnxruntime", "numpy", "soundfile", "soxr"} <= {w["name"] for w in resolved["resolved"]}


def test_glibc_bounds_the_platforms_pip_may_take():
    wheels = load_script("jetson_wheels")
    jetpack6 = wheels.platforms(35)
    assert "manylinux_2_35_aarch64" in jetpack6 and "manylinux_2_36_aarch64" not in jetpack6
    assert jetpack6[0] == "manylinux2014_aarch64"


def probe_run(precision="fp32"):
    """One bundle's probe output, small but with every part the comparison reads."""
    window = {"start": 0.0, "end": 2.0, "silent": False, "label": "happy", "raw_label": "happy",
              "probabilities": [0.1, 0.7, 0.1, 0.1]}
    return {"precision": precision,
            "stream": {"windows": [window, {**window, "start": 0.5, "end": 2.5}], "latency_ms": [1.0, 1.0],
                       "summary_label": "happy"},
            "embed_example": ["happy", "happy"],
            "multistream": {"windows": {"a.wav": [window], "b.wav": [window]}, "summary_labels": {"a.wav": "happy"},
                            "latency_ms": [2.0, 3.0]},
            "api": [{"label": "happy", "logits": [0.0, 2.0, 0.0, 0.0]}],
            "client": [{"label": "happy", "logits": [0.0, 2.0, 0.0, 0.0]}]}


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["stream"]["windows"][1].update(start=0.501), "stream: window times differ"),
    (lambda r: r["multistream"]["windows"]["b.wav"][0].update(label="sad"), "multistream b.wav: window 0 label"),
    (lambda r: r["client"][0].update(label="sad"), "client: file 0 label happy vs sad"),
    (lambda r: r["api"][0]["logits"].__setitem__(1, 2.001), "logits differ by 0.001 > 0.0001"),
    (lambda r: r["embed_example"].__setitem__(1, "sad"), "README embedding example printed"),
    (lambda r: r["multistream"]["summary_labels"].update({"a.wav": "sad"}), "multistream: summary labels differ"),
])
def test_the_comparison_catches_each_difference(change, problem):
    probe = load_script("jetson_probe")
    reference, run = probe_run(), probe_run()
    assert probe.compare_bundle(reference, copy.deepcopy(run))["problems"] == []
    change(run)
    problems = probe.compare_bundle(reference, run)["problems"]
    assert any(problem in p for p in problems), problems


def test_tolerance_is_per_precision():
    probe = load_script("jetson_probe")
    reference, run = probe_run("int8"), probe_run("int8")
    run["api"][0]["logits"][1] = 2.03  # an FP16 rounding difference: within int8's tolerance, not fp32's
    assert probe.compare_bundle(reference, run)["problems"] == []
    reference["precision"] = run["precision"] = "fp32"
    assert probe.compare_bundle(reference, run)["problems"]
