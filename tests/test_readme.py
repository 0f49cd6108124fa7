"""The README's two commands are the product's front door: check them as written."""

import json
import os
import re
import subprocess

import pytest
from conftest import REPO


def test_readme_gives_exactly_two_commands():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow  # the whole demo, twice
def test_main_job_runs_end_to_end_small(tmp_path):
    """scripts/demo.sh at 5% of the corpus and one epoch: synth -> split -> train -> evaluate, then rerun."""
    env = dict(os.environ, SERTRT_DEMO_DIR=str(tmp_path / "demo"), SERTRT_DEMO_SCALE="0.05", SERTRT_DEMO_EPOCHS="1")
    first = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert re.search(r"WA \d+\.\d%\s+UA \d+\.\d%\s+macro-F1 \d+\.\d%", first.stdout), first.stdout
    run = tmp_path / "demo" / "run"
    assert (run / "best.safetensors").is_file() and (run / "eval" / "test_manifest.metrics.json").is_file()
    for precision in ("fp32", "int8", "int8-dynamic"):
        manifest = json.loads((tmp_path / "demo" / f"bundle-{precision}" / "manifest.json").read_text())
        assert manifest["precision"] == precision and manifest["validation"]["passed"]
    assert "streaming" in first.stdout and "int8-dynamic" in first.stdout
    assert '"summary": true' in first.stdout  # the stream's last line
    # the classical floor, trained on the same split, reported beside the model's test UA
    assert re.search(r"test UA \(speaker-independent, scored once\): tiny XLSR \+ HGFM \d+\.\d%, stats-lr floor \d+\.\d%",
                     first.stdout), first.stdout
    # Not a terminal: no line is hard-wrapped at 80 columns (the training header is one line of ~100)
    assert any("strategy=" in line and "device=" in line for line in first.stderr.splitlines()), first.stderr
    # It ends on a summary, not on the stream's JSON: how long, what it wrote, the test UA and the split's kind
    tail = first.stdout.rstrip().splitlines()[-8:]
    assert re.fullmatch(r"summary: done in \d+ min \d+ s \(setup included\); .* holds:", tail[0]), tail
    assert re.fullmatch(r"  \S+/bundle-int8 +\d+ files, \S+", tail[5]) and tail[7].startswith("  test UA (speaker-independent"), tail
    # Checkpoints read like every other file the demo writes (the umask's mode, not mkstemp's 0600)
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "demo").rglob("*") if p.is_file()}
    assert modes == {oct(0o666 & ~_umask())}, modes
    floor = (tmp_path / "demo" / "floor" / "best.safetensors").read_bytes()
    best = (run / "best.safetensors").read_bytes()
    # A second run reuses the corpus and resumes the finished run: nothing is overwritten, and it says what it skipped.
    again = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    skipped = [line.split(" (")[0] for line in again.stdout.splitlines() if line.startswith("skipped: ")]
    assert skipped == ["skipped: synthesis", "skipped: the split", "skipped: training", "skipped: the classical floor",
                       "skipped: the fp32 export", "skipped: the int8 export", "skipped: the int8-dynamic export"], skipped
    assert (run / "best.safetensors").read_bytes() == best
    assert (tmp_path / "demo" / "floor" / "best.safetensors").read_bytes() == floor


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_readme_gives_one_demo_time():
    """The demo's time is stated once in the README, in its Results table, and it is the time docs/benchmarks.md
    gives where it says how it was measured (Main job); not again (differently) above it."""
    intro, results = (REPO / "README.md").read_text().split("## Results", 1)
    row = [line for line in results.splitlines() if line.startswith("| main job: `bash scripts/demo.sh`")]
    docs = (REPO / "docs" / "benchmarks.md").read_text()
    main_job = docs[docs.index("- **Main job**"):].split("\n- ", 1)[0]
    measured = re.findall(r"\*\*(\d+ min \d+ s)\*\*", main_job)
    assert not re.search(r"\d+ min \d+ s", intro) and len(row) == 1 and len(measured) == 1
    assert re.findall(r"\d+ min \d+ s", row[0]) == measured


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short_and_every_link_in_it_and_docs_resolves():
    """README is the five-minute page (at most 250 lines); every relative link in it and in docs/ names a file
    that exists and, with #anchor, a heading of that file."""
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= 250
    broken = []
    for page in [readme, *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
                broken += [] if anchor in {_slug(h) for h in headings} else [f"{page.name}: {target}"]
    assert not broken, broken


def test_pipeline_picture_is_what_its_script_draws():
    import runpy

    svg = runpy.run_path(str(REPO / "scripts" / "pipeline_figure.py"))["svg"]()
    assert (REPO / "docs" / "pipeline.svg").read_text() == svg
    assert all(stage in svg for stage in (">corpus<", ">train<", ">export<", ">engine<", ">stream<"))
