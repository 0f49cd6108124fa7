"""Package versions: pyproject declares what versions.py checks, and a stage refuses an unsupported
package at import in one line, before onnx or onnxruntime can fail inside."""

import subprocess
import sys
from importlib import metadata

import pytest
import tomllib
from conftest import REPO, sertrt_env
from test_cli import assert_one_line_error

from sertrt.core import versions
from sertrt.core.errors import SertrtError


def declared() -> dict[str, str]:
    """name -> lower bound as pyproject.toml declares it (base dependencies and every extra)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"], *(s for extra in project["optional-dependencies"].values() for s in extra)]
    out = {}
    for spec in specs:
        name, _, bound = spec.partition(">=")
        out[name.strip()] = ">=" + bound.strip()
    return out


def test_pyproject_declares_the_checked_ranges():
    pyproject = declared()
    for package, supported in versions.SUPPORTED.items():
        assert pyproject[package] == supported, package
    assert pyproject["onnxruntime-gpu"] == versions.SUPPORTED["onnxruntime"]


def test_this_environment_passes_every_stage():
    for stage in versions.STAGES:
        versions.require(stage)


@pytest.mark.parametrize("found, ok", [("1.19.2", False), ("1.20.0", True), ("1.30.0", True), ("2.0.0rc1", True),
                                       ("not-a-version", False)])
def test_range_is_compared_as_versions_not_strings(monkeypatch, found, ok):
    monkeypatch.setattr(versions, "installed_version", lambda p: found if p == "onnxruntime" else metadata.version(p))
    if ok:
        versions.require("runtime")
    else:
        with pytest.raises(SertrtError) as e:
            versions.require("runtime")
        assert str(e.value) == (f"sertrt runtime: onnxruntime {found} is installed, but onnxruntime>=1.20 is supported "
                                "(pip install 'onnxruntime>=1.20')")


def test_missing_package_is_named_and_optional_onnxruntime_is_not_required(monkeypatch):
    monkeypatch.setattr(versions, "installed_version", lambda p: None)
    versions.require("runtime")  # a TensorRT-only runtime needs no onnxruntime
    with pytest.raises(SertrtError, match=r"sertrt export needs onnxruntime>=1.20, which is not installed"):
        versions.require("export")


def fake_distribution(root, name: str, version: str):
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("")
    return root


@pytest.mark.parametrize("argv, package, version, stage", [
    (["export", "{tmp}/run", "--out", "{tmp}/bundle"], "onnxruntime", "1.17.3", "export"),
    (["export", "{tmp}/run", "--out", "{tmp}/bundle"], "onnx", "1.16.2", "export"),
    (["train", "--train-manifest", "{tmp}/m.jsonl", "--test-manifest", "{tmp}/m.jsonl", "--out", "{tmp}/run"],
     "transformers", "4.46.3", "train"),
    (["stream", "{tmp}/bundle", "{tmp}/a.wav"], "onnxruntime", "1.18.1", "runtime"),
])
def test_cli_refuses_an_unsupported_version_in_one_line(tmp_path, argv, package, version, stage):
    fake = fake_distribution(tmp_path / "site", package, version)
    env = sertrt_env()
    env["PYTHONPATH"] = f"{fake}:{env['PYTHONPATH']}"  # found before the real distribution
    result = subprocess.run([sys.executable, "-m", "sertrt", *[a.format(tmp=tmp_path) for a in argv]], env=env,
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert_one_line_error(result, f"sertrt {stage}: {package} {version} is installed", f"{package}{versions.SUPPORTED[package]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # nothing written
