"""Prepare corpora: read each one as distributed (only read), cache its audio as 16 kHz mono WAV under
OUT/audio/<corpus>/ (with a cache_index.json of source size+mtime, so reruns skip them), and write
<corpus>_manifest.jsonl, manifest.jsonl (every corpus but the held-out eNTERFACE) and prepare_report.json/.md.
Unreadable files are reported and skipped; a partial corpus is an error unless `allow_partial`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..core import atomic
from ..core.audio import SAMPLE_RATE, load_audio, write_wav
from ..core.errors import SertrtError
from ..core.labels import LABELS
from ..core.manifest import Utterance, write_manifest
from ..core.outputs import claim_output_dir
from .corpora import ADAPTERS, get_adapter
from .corpora.base import Adapter, Item, Scan, is_avi

FFMPEG_HINT = "install it with `apt-get install ffmpeg` (Debian/Ubuntu) or `brew install ffmpeg` (macOS)"
MIXED_MANIFEST = "manifest.jsonl"
REPORT_JSON = "prepare_report.json"
REPORT_MD = "prepare_report.md"
CACHE_INDEX = "cache_index.json"


@dataclass
class PrepareOptions:
    corpora: dict[str, Path]  # adapter name -> root folder as distributed
    out: Path
    workers: int = 2  # files converted in parallel
    ema_pattern: str | None = None  # EMA: regex with named groups speaker and emotion (see corpora/ema.py)
    ema_labels: dict[str, str] | None = None  # EMA: emotion code -> label, replacing the default map
    allow_partial: bool = False  # missing sessions/speakers: a warning instead of an error


@dataclass
class CorpusReport:
    name: str
    title: str
    root: str
    language: str
    in_mix: bool  # in the mixed manifest.jsonl (eNTERFACE is not: held-out transfer set)
    manifest: str | None = None  # file name in OUT; None when nothing was written
    found: int = 0  # recognised utterances, kept + dropped
    kept: dict[str, int] = field(default_factory=dict)  # label -> utterances in the manifest
    dropped: dict[str, int] = field(default_factory=dict)  # original code -> utterances the paper drops
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"}, not in the manifest
    speakers: dict[str, int] = field(default_factory=dict)  # speaker -> utterances in the manifest
    sessions: dict[str, int] = field(default_factory=dict)  # IEMOCAP session -> utterances in the manifest
    duration_s: float = 0.0  # total audio in the manifest
    converted: int = 0  # files converted in this run
    reused: int = 0  # files already in the cache, unchanged source
    unmatched: list[str] = field(default_factory=list)  # audio files not following the corpus's naming
    partial: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class PrepareReport:
    out: str
    sample_rate: int
    corpora: list[CorpusReport]
    manifest: str | None = None  # the mixed manifest's file name; None when no corpus is in the mix
    mixed: list[str] = field(default_factory=list)  # the corpora in it
    error: str | None = None  # why the run stopped, if it did

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def markdown(self) -> str:
        lines = ["# Corpus preparation report", ""]
        if self.error:
            lines += [f"**Stopped:** {self.error}", ""]
        lines.append(f"Audio cached as {self.sample_rate} Hz mono 16-bit WAV under `audio/<corpus>/` in {self.out}.")
        if self.manifest:
            total = sum(sum(c.kept.values()) for c in self.corpora if c.name in self.mixed)
            lines.append(f"Mixed manifest `{self.manifest}`: {', '.join(self.mixed)} ({total} utterances).")
        held_out = [c for c in self.corpora if not c.in_mix]
        if held_out:
            lines.append(f"Held out of the mix (transfer sets): {', '.join(c.name for c in held_out)}.")
        for c in self.corpora:
            unreadable = [f"{u['path']}: {u['error']}" for u in c.unreadable]
            lines += ["", f"## {c.title} (`{c.name}`, {c.language})", "", f"- root: {c.root}"]
            lines.append(f"- manifest: {f'`{c.manifest}`' if c.manifest else 'not written'}")
            lines.append(f"- found {c.found} utterances; kept {sum(c.kept.values())} ({c.duration_s / 3600:.2f} h)")
            lines.append(f"- cache: {c.converted} converted, {c.reused} reused")
            dropped = {f"`{code}`": n for code, n in c.dropped.items()}
            for head, counts in (("label", c.kept), ("dropped code", dropped)):
                if counts:
                    lines += ["", f"| {head} | utterances |", "|---|---|"]
                    lines += [f"| {k} | {n} |" for k, n in counts.items()]
            if c.speakers:
                speakers = ", ".join(f"{s} ({n})" for s, n in c.speakers.items())
                lines += ["", f"Speakers ({len(c.speakers)}): {speakers}"]
            if c.sessions:
                lines += ["", "Sessions: " + ", ".join(f"{s} ({n})" for s, n in c.sessions.items())]
            for title, items in (
                ("Partial corpus", c.partial),
                ("Warnings", c.warnings),
                (f"Unreadable files ({len(unreadable)}, not in the manifest)", unreadable),
                (f"Files not following the naming ({len(c.unmatched)}, ignored)", c.unmatched),
            ):
                if items:
                    lines += ["", f"{title}:", ""] + [f"- {x}" for x in items]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Job:
    corpus: str
    item: Item
    cache: Path  # OUT/audio/<corpus>/<rel>.wav
    cache_key: str  # the cache path below OUT/audio/<corpus>, the index's key


@dataclass(frozen=True)
class _Done:
    job: _Job
    error: str | None = None
    entry: dict | None = None  # the cache index entry (with the duration in seconds); None when unreadable
    reused: bool = False


def prepare(opts: PrepareOptions, progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Prepare every corpus in `opts.corpora` into `opts.out`; returns the report (also written there).
    `progress(done, total)` is called from this thread as files are converted or found cached."""
    if not opts.corpora:
        raise SertrtError(f"no corpus given: name one or more as NAME=ROOT (valid names: {', '.join(ADAPTERS)})")
    if opts.workers < 1:
        raise SertrtError(f"workers must be at least 1, got {opts.workers}")
    # Every name is checked before any corpus is scanned: a typo should not cost a long scan first.
    adapters = {name: get_adapter(name, opts.ema_pattern, opts.ema_labels) for name in opts.corpora}
    names = sorted(adapters, key=list(ADAPTERS).index)
    out = claim_output_dir(Path(opts.out).expanduser().resolve(), "prepared", create=False)  # refuse early
    scans = {name: adapters[name].scan(opts.corpora[name]) for name in names}
    claim_output_dir(out, "prepared")  # the corpora are there: from here on the folder is written
    reports = {name: _start_report(adapters[name], Path(opts.corpora[name]), scans[name]) for name in names}
    report = PrepareReport(out=str(out), sample_rate=SAMPLE_RATE, corpora=[reports[n] for n in names])

    partial = [f"{name}: partial corpus: {msg}" for name in names for msg in scans[name].partial]
    if partial and not opts.allow_partial:
        report.error = "; ".join(partial) + " (use --allow-partial to prepare it anyway)"
        _write_report(out, report)
        raise SertrtError(report.error)
    for message in partial + [f"{name}: {msg}" for name in names for msg in scans[name].warnings]:
        warnings.warn(message, stacklevel=2)

    jobs = _jobs(out, names, scans)
    indexes = {name: _read_index(out / "audio" / name / CACHE_INDEX) for name in names}
    done = _convert(jobs, indexes, opts.workers, progress)

    mixed: list[Utterance] = []
    for name in names:
        utterances = _finish_corpus(out, adapters[name], reports[name], [d for d in done if d.job.corpus == name])
        if adapters[name].in_mix:
            mixed += utterances
    if mixed:
        write_manifest(out / MIXED_MANIFEST, mixed)
        report.manifest = MIXED_MANIFEST
        report.mixed = [n for n in names if adapters[n].in_mix and reports[n].manifest]
    empty = [n for n in names if reports[n].manifest is None]
    if empty:
        report.error = f"no readable utterances left in {', '.join(empty)}: see {out / REPORT_MD}"
    _write_report(out, report)

    unreadable = {n: len(reports[n].unreadable) for n in names if reports[n].unreadable}
    if unreadable:
        counts = ", ".join(f"{n} {k}" for n, k in unreadable.items())
        warnings.warn(f"{sum(unreadable.values())} unreadable file(s) skipped ({counts}): listed in {out / REPORT_MD}",
                      stacklevel=2)
    if report.error:
        raise SertrtError(report.error)
    return report


def _start_report(adapter: Adapter, root: Path, scan: Scan) -> CorpusReport:
    return CorpusReport(adapter.name, adapter.title, str(root.expanduser().resolve()), adapter.language,
                        adapter.in_mix, found=scan.found, dropped=dict(scan.dropped), unmatched=list(scan.unmatched),
                        partial=list(scan.partial), warnings=list(scan.warnings))


def _jobs(out: Path, names: list[str], scans: dict[str, Scan]) -> list[_Job]:
    jobs, seen = [], {}
    for name in names:
        for item in scans[name].kept:
            # `x.avi` and eNTERFACE's dotless `x_3avi` both become `x.wav` / `x_3avi.wav`.
            key = str(PurePosixPath(item.rel).with_suffix(".wav"))
            if (name, key) in seen:
                raise SertrtError(f"{name}: {item.rel} and {seen[name, key]} would share the cached file {key}")
            seen[name, key] = item.rel
            jobs.append(_Job(name, item, out / "audio" / name / key, key))
    return jobs


def _read_index(path: Path) -> dict[str, dict]:
    """The cache index, or {} when there is none (or it is damaged: then everything is redone)."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(index, dict) or index.get("sample_rate") != SAMPLE_RATE:
        return {}
    files = index.get("files")
    return files if isinstance(files, dict) else {}


def _cached(job: _Job, entry: dict | None, stat: os.stat_result) -> bool:
    """Is the cached file there and made from this very source (path, size and mtime)?"""
    if not isinstance(entry, dict) or not isinstance(entry.get("duration"), (int, float)):
        return False
    same_source = (
        entry.get("source") == str(job.item.source)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
    )
    # The cache's own size catches a file cut short by a crash or a full disk.
    return same_source and job.cache.is_file() and job.cache.stat().st_size == entry.get("cache_size")


def _convert(
    jobs: list[_Job], indexes: dict[str, dict], workers: int, progress: Callable[[int, int], None] | None
) -> list[_Done]:
    """Reuse what is cached, convert the rest in a thread pool (soxr and libsndfile release the GIL)."""
    results: list[_Done] = []
    todo: list[tuple[_Job, os.stat_result]] = []
    for job in jobs:
        try:
            stat = job.item.source.stat()
        except OSError as e:
            results.append(_Done(job, error=f"{job.item.source}: cannot read ({e.strerror})"))
            continue
        entry = indexes[job.corpus].get(job.cache_key)
        if _cached(job, entry, stat):
            results.append(_Done(job, entry=entry, reused=True))
        else:
            todo.append((job, stat))
    if progress is not None:
        progress(len(results), len(jobs))

    videos = [job for job, _ in todo if is_avi(job.item.source)]
    ffmpeg = shutil.which("ffmpeg")
    if videos and ffmpeg is None:
        corpus = videos[0].corpus
        raise SertrtError(f"{corpus}: {len(videos)} AVI file(s) need ffmpeg to extract their audio: {FFMPEG_HINT}")

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(_convert_one, job, stat, ffmpeg) for job, stat in todo]
        for future in as_completed(futures):
            results.append(future.result())
            if progress is not None:
                progress(len(results), len(jobs))
    finally:
        # A bug in one conversion should stop the run, not wait for every queued file first.
        pool.shutdown(cancel_futures=True)
    return results


def _convert_one(job: _Job, stat: os.stat_result, ffmpeg: str | None) -> _Done:
    import soundfile as sf

    source = job.item.source
    try:
        audio = _extract_audio(source, ffmpeg) if is_avi(source) else load_audio(source)
    except SertrtError as e:
        return _Done(job, error=str(e))
    try:  # atomic (write_wav); a failure is OUT's problem (full disk, no permission): stop, do not blame the source
        job.cache.parent.mkdir(parents=True, exist_ok=True)
        write_wav(job.cache, audio, SAMPLE_RATE)
    except (OSError, sf.LibsndfileError) as e:
        raise SertrtError(f"{job.cache}: cannot write the cached audio ({e})") from None
    entry = {"source": str(source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
             "cache_size": job.cache.stat().st_size, "duration": round(audio.shape[0] / SAMPLE_RATE, 4)}
    return _Done(job, entry=entry)


def _extract_audio(path: Path, ffmpeg: str | None) -> np.ndarray:
    """The first audio track of a video as `(num_samples,)` float32 at SAMPLE_RATE. ffmpeg only decodes;
    load_audio downmixes and resamples, as for a WAV. `ffmpeg` was checked before the pool started."""
    with tempfile.TemporaryDirectory(prefix="sertrt-ffmpeg-") as tmp:
        wav = Path(tmp) / "audio.wav"
        cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(path), "-map", "0:a:0", "-vn", "-c:a", "pcm_s16le"]
        proc = subprocess.run([*cmd, str(wav)], capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wav.is_file():
            lines = proc.stderr.strip().splitlines()
            raise SertrtError(f"{path}: ffmpeg cannot extract its audio ({lines[-1] if lines else proc.returncode})")
        try:
            return load_audio(wav)
        except SertrtError as e:
            raise SertrtError(f"{path}: extracted audio unusable ({str(e).removeprefix(f'{wav}: ')})") from None


def _finish_corpus(out: Path, adapter: Adapter, report: CorpusReport, done: list[_Done]) -> list[Utterance]:
    """Fill the report from the conversions, write the manifest and cache index; returns the utterances."""
    done = sorted(done, key=lambda d: d.job.item.rel)
    ok = [d for d in done if d.error is None]
    utterances = [Utterance(str(d.job.cache), d.job.item.label, adapter.name, adapter.language, d.job.item.speaker,
                            d.entry["duration"], SAMPLE_RATE, original_path=str(d.job.item.source),
                            session=d.job.item.session)
                  for d in ok]
    labels = Counter(u.label for u in utterances)
    report.kept = {label: labels[label] for label in LABELS}
    report.speakers = dict(sorted(Counter(u.speaker for u in utterances).items()))
    report.sessions = dict(sorted(Counter(u.session for u in utterances if u.session).items()))
    report.unreadable = [{"path": str(d.job.item.source), "error": d.error} for d in done if d.error is not None]
    report.duration_s = round(sum(u.duration for u in utterances), 2)
    report.converted = sum(not d.reused for d in ok)
    report.reused = sum(d.reused for d in ok)
    index = {"sample_rate": SAMPLE_RATE, "files": {d.job.cache_key: d.entry for d in ok}}
    atomic.write_text(out / "audio" / adapter.name / CACHE_INDEX, json.dumps(index, indent=1, sort_keys=True) + "\n")
    if utterances:
        report.manifest = f"{adapter.name}_manifest.jsonl"
        write_manifest(out / report.manifest, utterances)
    return utterances


def _write_report(out: Path, report: PrepareReport) -> None:
    atomic.write_text(out / REPORT_JSON, json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
    atomic.write_text(out / REPORT_MD, report.markdown())
