"""Which aarch64 wheels JetPack's Pythons get for sertrt's base install (the runtime: no torch, no compiler).

JetPack 6 is Ubuntu 22.04 (Python 3.10, glibc 2.35), JetPack 7 is Ubuntu 24.04 (Python 3.12, glibc 2.39). For each
Python and each base dependency of pyproject.toml, `pip download --only-binary=:all:` asks the package index for an
aarch64 wheel that glibc accepts (manylinux2014 .. manylinux_2_<glibc>), at the range's lower bound and at the
newest release in the range; then the whole base install is resolved the same way, transitive dependencies
included. Writes benchmarks/results/jetson-wheels.{json,md}; exits 1 when a dependency has no wheel at either end,
so pyproject's ranges follow from the table (tests/test_jetson.py checks the table still matches pyproject).

    python scripts/jetson_wheels.py [--cache DIR]     # needs the package index; downloads about 150 MB once
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# (JetPack, Ubuntu, Python, glibc)
TARGETS = [("JetPack 6", "22.04", "3.10", 35), ("JetPack 7", "24.04", "3.12", 39)]


def base_requirements() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def lower_bound(req: Requirement) -> str | None:
    return next((s.version for s in req.specifier if s.operator in (">=", "==", "~=")), None)


def platforms(glibc: int) -> list[str]:
    return ["manylinux2014_aarch64", *(f"manylinux_2_{minor}_aarch64" for minor in range(17, glibc + 1))]


def download(specs: list[str], python: str, glibc: int, dest: Path, deps: bool) -> tuple[list[str], str]:
    """The wheel files pip picks for `specs` on aarch64 (empty and pip's last error line when it finds none)."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "-d", str(dest), *specs]
    for platform in platforms(glibc):
        cmd += ["--platform", platform]
    if not deps:
        cmd.append("--no-deps")
    with tempfile.TemporaryDirectory() as report_dir:
        report = Path(report_dir) / "report.json"
        # pip download has no --report: ask `pip install --dry-run` (same resolver, same flags) which files it takes.
        probe = [c if c != "download" else "install" for c in cmd if c not in ("-d", str(dest))]
        probe += ["--dry-run", "--ignore-installed", "--target", str(Path(report_dir) / "t"), "--report", str(report)]
        got = subprocess.run(cmd, capture_output=True, text=True)
        if got.returncode != 0:
            return [], (got.stderr.strip().splitlines() or ["pip failed"])[-1]
        subprocess.run(probe, capture_output=True, text=True, check=True)
        files = [item["download_info"]["url"].rsplit("/", 1)[1] for item in json.loads(report.read_text())["install"]]
    return sorted(files), ""


def wheel_row(filename: str) -> dict:
    name, version, _, tags = parse_wheel_filename(filename)
    return {"name": str(name), "version": str(version), "file": filename,
            "platform": sorted({t.platform for t in tags})[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sertrt" / "jetson" / "wheel-table")
    args = parser.parse_args()
    requirements = base_requirements()
    rows, failures = [], []
    for jetpack, ubuntu, python, glibc in TARGETS:
        dest = args.cache / f"cp{python.replace('.', '')}"
        for text in requirements:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate({"python_version": python}):
                continue
            low = lower_bound(req)
            row = {"python": python, "requirement": text, "lower_bound": low}
            for end, spec in (("lowest", f"{req.name}=={low}" if low else None), ("newest", f"{req.name}{req.specifier}")):
                files, error = download([spec], python, glibc, dest, deps=False) if spec else ([], "no lower bound")
                row[end] = wheel_row(files[0]) if files else {"error": error}
                if not files:
                    failures.append(f"{req.name} ({end}, Python {python}): {error}")
            rows.append(row)
        # markers evaluated here: pip evaluates them against the interpreter it runs on, not --python-version
        wanted = [f"{r.name}{r.specifier}" for r in map(Requirement, requirements)
                  if not r.marker or r.marker.evaluate({"python_version": python})]
        files, error = download(wanted, python, glibc, dest, deps=True)
        if not files:
            failures.append(f"base install on Python {python}: {error}")
        rows.append({"python": python, "requirement": "(base install, resolved)", "jetpack": jetpack,
                     "resolved": [wheel_row(f) for f in files], "error": error})
    result = {"targets": [dict(zip(("jetpack", "ubuntu", "python", "glibc"), t)) for t in TARGETS],
              "requirements": requirements, "rows": rows, "failures": failures,
              "command": "python scripts/jetson_wheels.py"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write(RESULTS / "jetson-wheels.json", json.dumps(result, indent=1) + "\n")
    write(RESULTS / "jetson-wheels.md", markdown(result))
    print(markdown(result))
    for failure in failures:
        print(f"no aarch64 wheel: {failure}", file=sys.stderr)
    return 1 if failures else 0


def markdown(result: dict) -> str:
    lines = ["# aarch64 wheels for the base install (JetPack's Pythons)", "",
             "`python scripts/jetson_wheels.py`: `pip download --only-binary=:all: --platform manylinux2014_aarch64 "
             "... manylinux_2_<glibc>_aarch64 --python-version X`, per base dependency of pyproject.toml at its lower "
             "bound and newest in range, then the whole base install resolved (transitive dependencies included). "
             "Index checked, not installed on a Jetson.", "",
             "| Python (JetPack, glibc) | requirement | lower bound: wheel | newest: wheel |", "|---|---|---|---|"]
    target = {t["python"]: t for t in result["targets"]}
    for row in result["rows"]:
        t = target[row["python"]]
        where = f"{row['python']} ({t['jetpack']}, 2.{t['glibc']})"
        if "resolved" in row:
            names = ", ".join(f"{w['name']} {w['version']}" for w in row["resolved"]) or row["error"]
            lines.append(f"| {where} | base install, resolved | {names} | |")
            continue
        cell = [f"{row[end]['version']} `{row[end]['platform']}`" if "version" in row[end] else f"**none**: "
                f"{row[end]['error']}" for end in ("lowest", "newest")]
        lines.append(f"| {where} | `{row['requirement']}` | {cell[0]} | {cell[1]} |")
    lines += ["", f"Failures: {len(result['failures'])}" + "".join(f"\n- {f}" for f in result["failures"])]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
