"""Synthetic emotional speech from espeak-ng, laid out like EmoDB, EMOVO, TESS, SAVEE and eNTERFACE'05,
so the whole pipeline runs end to end without licensed corpora.

Emotions are acted through SSML prosody and `<break>` pauses between phrases (STYLES). The `fr` part stands
in for eNTERFACE'05, the held-out corpus of the paper's transfer experiment: French voices at base pitches no
other corpus uses, happy/angry/sad only, each emotion with its own sentences, in eNTERFACE's layout (WAV for
AVI). Its rows go to OUT/transfer_manifest.jsonl, never to OUT/manifest.jsonl, so it cannot leak into training.

Each utterance draws its jitter from a Generator seeded by (seed, its relative path): the output is
byte-identical for a seed whatever the workers or languages. Audio stays at espeak's 22050 Hz, 16-bit mono.
"""

from __future__ import annotations

import errno
import html
import io
import shutil
import subprocess
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.audio import colored_noise, write_wav
from ..core.errors import SertrtError
from ..core.labels import LABELS
from ..core.manifest import Utterance, write_manifest
from ..core.outputs import claim_output_dir

INSTALL_HINT = (
    "espeak-ng not found: install it with `apt-get install espeak-ng` (Debian/Ubuntu) "
    "or `brew install espeak-ng` (macOS)"
)
PEAK = 0.99  # angry takes of the louder variants can reach full scale; clipping would add buzz


@dataclass
class SynthOptions:
    out: Path
    seed: int = 0
    languages: tuple[str, ...] = ("en", "de", "it", "fr")
    scale: float = 1.0  # fraction of each corpus's (speaker, text) pairs, in (0, 1]
    noise_snr_db: float | None = 30.0  # None: clean; else white+pink noise at SNR within +-5 dB
    workers: int = 2  # espeak subprocesses in parallel


@dataclass(frozen=True)
class Style:
    """Mean SSML prosody of one emotion; each utterance jitters around it."""

    pitch: float  # percent change; espeak maps +40% to about +20% f0
    range: float  # percent of the normal pitch range; espeak saturates near 200
    rate: float  # percent of the speaker's words per minute
    volume: float  # percent; kept below 100 so that angry rarely clips
    pause_ms: float  # silence at each phrase boundary


STYLES = {
    "neutral": Style(pitch=0, range=100, rate=100, volume=60, pause_ms=250),
    "happy": Style(pitch=40, range=175, rate=112, volume=74, pause_ms=170),
    "angry": Style(pitch=20, range=200, rate=128, volume=90, pause_ms=80),
    "sad": Style(pitch=-35, range=40, rate=72, volume=38, pause_ms=550),
}


@dataclass(frozen=True)
class Speaker:
    code: str  # the corpus's own speaker code
    voice: str  # espeak voice+variant
    pitch: int  # espeak -p, 0..99: base pitch
    wpm: int  # espeak -s


@dataclass(frozen=True)
class Corpus:
    name: str
    language: str
    speakers: tuple[Speaker, ...]
    # text code -> sentence, or label -> sentence where each emotion has its own; "|" marks a
    # phrase boundary (a pause)
    texts: dict[str, str | dict[str, str]]
    emotions: dict[str, str]  # label -> the corpus's emotion code
    path: Callable[[Speaker, str, str], str]  # (speaker, text code, emotion code) -> relative path
    held_out: bool = False  # listed in transfer_manifest.jsonl, never in manifest.jsonl


EMODB = Corpus(
    name="emodb",
    language="de",
    speakers=(
        Speaker("03", "de+m2", 40, 165), Speaker("08", "de+f1", 50, 170),
        Speaker("09", "de+f2", 45, 178), Speaker("10", "de+m3", 52, 175),
        Speaker("11", "de+m5", 35, 160), Speaker("12", "de+m6", 56, 182),
        Speaker("13", "de+f3", 55, 165), Speaker("14", "de+f4", 62, 180),
        Speaker("15", "de+m1", 45, 170), Speaker("16", "de+f5", 40, 172),
    ),
    texts={
        "a01": "Die Tasse steht | neben dem blauen Teller.",
        "a02": "Am Montag | bringt sie die Bücher zurück.",
        "a04": "Der Bus hält heute | nicht an der Brücke.",
        "a05": "Im Garten liegt noch | ein alter Eimer.",
        "a07": "Er hat den Schlüssel | auf den Tisch gelegt.",
        "b01": "Wir treffen uns morgen früh | vor dem Bahnhof, | gleich nach dem Frühstück.",
        "b02": "Das Fenster im Flur | war die ganze Nacht | einen Spalt offen.",
        "b03": "Seit drei Wochen | steht das Fahrrad im Keller | und niemand fährt damit.",
        "b09": "Die Nachbarin hat angerufen, | weil das Paket | wieder bei ihr gelandet ist.",
        "b10": "Heute Abend | gibt es Kartoffeln, | Bohnen und ein Stück Brot.",
    },
    emotions={"neutral": "N", "happy": "F", "angry": "W", "sad": "T"},
    path=lambda spk, text, emo: f"emodb/wav/{spk.code}{text}{emo}a.wav",
)

EMOVO = Corpus(
    name="emovo",
    language="it",
    speakers=(
        Speaker("f1", "it+f2", 50, 172), Speaker("f2", "it+f3", 44, 165),
        Speaker("f3", "it+f4", 58, 180), Speaker("m1", "it+m3", 45, 170),
        Speaker("m2", "it+m5", 38, 162), Speaker("m3", "it+m6", 55, 178),
    ),
    texts={
        "b1": "Il treno parte | alle nove.",
        "b2": "La porta è rimasta | aperta.",
        "b3": "Domani | piove di nuovo.",
        "l1": "Ieri pomeriggio | siamo andati al mercato | a comprare frutta e verdura.",
        "l2": "Il libro che mi hai prestato | è ancora sul tavolo | della cucina.",
        "l3": "Quando finisce il lavoro, | Marco prende la bicicletta | e torna a casa.",
        "l4": "La riunione di giovedì | è stata spostata | alla settimana prossima.",
        # grammatical but meaningless, so the words carry no emotion of their own
        "n1": "Il tavolo canta | sotto la luna di vetro.",
        "n2": "Sei gatti verdi | leggono il fiume.",
        "n3": "La sedia beve | tre nuvole di sale.",
        "n4": "Un ombrello pensa | alla finestra del mare.",
        "n5": "Le scarpe dormono | dentro un limone.",
        "d1": "Hai chiuso la finestra | prima di uscire?",
        "d2": "A che ora | arriva tua sorella?",
    },
    emotions={"neutral": "neu", "happy": "gio", "angry": "rab", "sad": "tri"},
    path=lambda spk, text, emo: f"emovo/{spk.code}/{emo}-{spk.code}-{text}.wav",
)

TESS_WORDS = (
    "lamp river stone chair cloud bread train glove paper window garden pencil basket candle "
    "ladder mirror orange pocket rabbit saddle tunnel button carpet dinner forest hammer kettle "
    "lemon market needle planet ribbon silver ticket velvet wagon yellow marble copper meadow"
).split()
# The real corpus capitalises one folder differently; adapters must cope, so we copy that.
TESS_FOLDERS = {("OAF", "sad"): "OAF_Sad"}

TESS = Corpus(
    name="tess",
    language="en",
    speakers=(Speaker("OAF", "en+f4", 30, 160), Speaker("YAF", "en+f2", 62, 182)),
    texts={word: f"Say the word | {word}." for word in TESS_WORDS},
    emotions={"neutral": "neutral", "happy": "happy", "angry": "angry", "sad": "sad"},
    path=lambda spk, word, emo: (
        f"tess/{TESS_FOLDERS.get((spk.code, emo), f'{spk.code}_{emo}')}/{spk.code}_{word}_{emo}.wav"
    ),
)

# Four male British voices, as in the real corpus; with TESS's two, English has six.
SAVEE = Corpus(
    name="savee",
    language="en",
    speakers=(
        Speaker("DC", "en-gb-x-rp+m1", 38, 168), Speaker("JE", "en-gb-scotland+m3", 46, 176),
        Speaker("JK", "en-gb+m7", 33, 158), Speaker("KL", "en-gb-x-gbclan+m4", 52, 184),
    ),
    texts={
        "01": "The kettle was left | on the back of the stove.",
        "02": "She hung the wet coat | behind the kitchen door.",
        "03": "A small boat drifted | past the harbour wall.",
        "04": "We counted the boxes | twice before lunch.",
        "05": "The map was folded | into the glove box.",
        "06": "His brother moved | to a flat near the station | last winter.",
        "07": "Every Tuesday | the market opens | an hour later.",
        "08": "The printer on the second floor | has run out of paper again.",
        "09": "They painted the fence | a pale shade of green.",
        "10": "Put the letters | on the desk by the window.",
    },
    emotions={"neutral": "n", "happy": "h", "angry": "a", "sad": "sa"},
    path=lambda spk, take, emo: f"savee/AudioData/{spk.code}/{emo}{take}.wav",
)

# Sentence K of each emotion; the paper drops disgust, fear and surprise, and there is no neutral.
ENTERFACE_SENTENCES = {
    "angry": (
        "C'est la troisième fois | que tu me fais le coup, | j'en ai assez !",
        "Tu te moques de moi ? | Rends-moi tout de suite | mon argent !",
        "Non, non et non ! | Je ne signerai pas | ce papier.",
        "Qui t'a permis | de toucher à mes affaires ?",
        "Sortez d'ici | et ne revenez jamais !",
    ),
    "happy": (
        "C'est formidable, | j'ai enfin obtenu | ce travail !",
        "Quelle belle surprise, | merci mille fois !",
        "Nous partons demain matin | en vacances | au bord de la mer !",
        "J'ai gagné le concours, | je n'arrive pas à y croire !",
        "Tu es venu ! | Je suis si contente | de te voir.",
    ),
    "sad": (
        "Il est parti hier soir | et il ne reviendra pas.",
        "Je n'ai plus personne | à qui parler.",
        "Tout ce que nous avions construit | a disparu.",
        "Mon vieux chien | est mort ce matin.",
        "Je croyais | que tu étais mon ami.",
    ),
}
ENTERFACE_FOLDERS = {"an": "anger", "ha": "happiness", "sa": "sadness"}


def _enterface_path(spk: Speaker, text: str, emo: str) -> str:
    # The real corpus names some of subject 3's files `s_3_*`; adapters must cope, so we copy that.
    stem = f"s_3_{emo}_{text}" if spk.code == "3" else f"s{spk.code}_{emo}_{text}"
    return f"enterface/subject {spk.code}/{ENTERFACE_FOLDERS[emo]}/sentence {text}/{stem}.wav"


ENTERFACE = Corpus(
    name="enterface",
    language="fr",
    speakers=(  # 5 men, 3 women (the real corpus is 81% men)
        Speaker("1", "fr+m4", 42, 172), Speaker("2", "fr+f2", 60, 176),
        Speaker("3", "fr-be+m1", 36, 165), Speaker("4", "fr+m7", 48, 180),
        Speaker("5", "fr-ch+f4", 64, 168), Speaker("6", "fr+m2", 32, 162),
        Speaker("7", "fr-be+f1", 57, 184), Speaker("8", "fr-ch+m6", 47, 174),
    ),
    texts={
        str(k + 1): {label: sentences[k] for label, sentences in ENTERFACE_SENTENCES.items()}
        for k in range(5)
    },
    emotions={"happy": "ha", "angry": "an", "sad": "sa"},
    path=_enterface_path,
    held_out=True,
)

# language -> its corpora; English is TESS-like and SAVEE-like, so every training language has six voices or more
CORPORA_BY_LANGUAGE = {"de": (EMODB,), "it": (EMOVO,), "en": (TESS, SAVEE), "fr": (ENTERFACE,)}
CORPORA = {c.name: c for corpora in CORPORA_BY_LANGUAGE.values() for c in corpora}


@dataclass(frozen=True)
class Job:
    corpus: Corpus
    speaker: Speaker
    text: str
    label: str
    rel: str  # path under OUT


def _jobs(corpus: Corpus, seed: int, scale: float) -> list[Job]:
    """Every speaker keeps a share of the texts, so speaker-independent splits work at any scale."""
    codes = list(corpus.texts)
    count = max(1, round(scale * len(codes)))
    jobs = []
    for spk in corpus.speakers:
        rng = np.random.default_rng([seed, zlib.crc32(f"{corpus.name}/{spk.code}".encode())])
        for i in sorted(rng.permutation(len(codes))[:count]):
            for label in (label for label in LABELS if label in corpus.emotions):
                text = corpus.texts[codes[i]]
                text = text if isinstance(text, str) else text[label]
                jobs.append(Job(corpus, spk, text, label, corpus.path(spk, codes[i], corpus.emotions[label])))
    return jobs


def _ssml(text: str, style: Style, rng: np.random.Generator) -> str:
    """Jittered prosody; wide enough that neighbouring emotions overlap a little."""
    pitch = style.pitch + rng.normal(0, 10)
    prange = style.range * np.exp(rng.normal(0, 0.2))
    rate = style.rate * np.exp(rng.normal(0, 0.07))
    volume = style.volume * np.exp(np.clip(rng.normal(0, 0.1), -0.2, 0.2))
    prosody = f'<prosody pitch="{pitch:+.0f}%" range="{prange:.0f}%" rate="{rate:.0f}%" volume="{volume:.0f}%">'
    phrases = [f"{prosody}{html.escape(p.strip(), quote=False)}</prosody>" for p in text.split("|")]
    # Breaks go between prosody elements: inside one, espeak scales them by the rate.
    breaks = [f'<break time="{style.pause_ms * np.exp(rng.normal(0, 0.3)):.0f}ms"/>' for _ in phrases[1:]]
    return "<speak>" + phrases[0] + "".join(b + p for b, p in zip(breaks, phrases[1:])) + "</speak>"


def _espeak(espeak: str, ssml: str, speaker: Speaker, where: str) -> tuple[np.ndarray, int]:
    """Run espeak-ng once: `(num_samples,)` float32 audio and its sample rate; errors name `where`."""
    import soundfile as sf

    cmd = [espeak, "-m", "-b", "1", "--stdin", "--stdout"]
    cmd += ["-v", speaker.voice, "-p", str(speaker.pitch), "-s", str(speaker.wpm)]
    proc = subprocess.run(cmd, input=ssml.encode("utf-8"), capture_output=True, check=False)
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode != 0:
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        raise SertrtError(f"{where}: espeak-ng failed ({last})")
    try:
        audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise SertrtError(f"{where}: espeak-ng wrote no readable WAV ({e})") from None
    if audio.ndim != 1 or audio.shape[0] == 0 or not np.abs(audio).max() > 0:
        raise SertrtError(f"{where}: espeak-ng produced no audio")
    return audio, rate


def _render(job: Job, out: Path, seed: int, noise_snr_db: float | None, espeak: str) -> Utterance:
    import soundfile as sf

    rng = np.random.default_rng([seed, zlib.crc32(job.rel.encode())])
    ssml = _ssml(job.text, STYLES[job.label], rng)
    spoken = " ".join(job.text.replace("|", " ").split())
    audio, rate = _espeak(espeak, ssml, job.speaker, f"{job.rel} ({spoken!r}, voice {job.speaker.voice})")
    if noise_snr_db is not None:
        snr_db = noise_snr_db + rng.uniform(-5.0, 5.0)
        power = float(np.mean(audio.astype(np.float64) ** 2))
        audio = audio + colored_noise(rng, audio.shape[0]) * np.sqrt(power / 10 ** (snr_db / 10))
    peak = float(np.abs(audio).max())
    if peak > PEAK:
        audio = audio * (PEAK / peak)
    path = out / job.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_wav(path, audio.astype(np.float32), rate)
    except sf.LibsndfileError as e:  # libsndfile says "System error." for a full disk, and names no file
        raise OSError(errno.EIO, f"could not write the WAV (libsndfile: {e.error_string} Is the disk full?)", str(path)) from None
    return Utterance(str(path), job.label, job.corpus.name, job.corpus.language, job.speaker.code,
                     duration=round(audio.shape[0] / rate, 4), sample_rate=rate)


def _readme(opts: SynthOptions, espeak: str, utterances: list[Utterance]) -> str:
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True, check=False)
    version_text = version.stdout.split("Data at")[0].strip() or "espeak-ng (unknown version)"
    held_out = sum(CORPORA[u.corpus].held_out for u in utterances)
    lines = [
        f"Synthetic emotional speech, NOT real recordings: sertrt.data.synth with espeak-ng ({version_text}).",
        f"seed={opts.seed} scale={opts.scale} noise_snr_db={opts.noise_snr_db}",
        f"{len(utterances) - held_out} utterances, 16-bit mono WAV at espeak's own rate; list: manifest.jsonl",
    ]
    if held_out:
        lines.append(f"{held_out} held-out utterances for the transfer test (enterface/, French, 8 voices heard "
                     "nowhere else); list: transfer_manifest.jsonl, never manifest.jsonl.")
    lines.append("")
    for c in CORPORA.values():
        rows = [u for u in utterances if u.corpus == c.name]
        if rows:
            counts = ", ".join(f"{e} {sum(u.label == e for u in rows)}" for e in LABELS if e in c.emotions)
            lines.append(f"{c.name}: {len(rows)} ({counts}), {len({u.speaker for u in rows})} speakers")
    return "\n".join(lines) + "\n"


def synthesize(opts: SynthOptions, progress: Callable[[int, int], None] | None = None) -> Path:
    """Speak every corpus in `opts.languages` into `opts.out`; returns OUT/manifest.jsonl (with only
    `fr`, OUT/transfer_manifest.jsonl). Manifests are written last, each only when it has rows, so a failed run
    never leaves one listing missing audio. `progress(done, total)` is called from this thread."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SertrtError(INSTALL_HINT)
    for lang in opts.languages:
        if lang not in CORPORA_BY_LANGUAGE:
            raise SertrtError(f"unknown language {lang!r} (valid: {', '.join(CORPORA_BY_LANGUAGE)})")
    if not opts.languages:
        raise SertrtError(f"no languages chosen (valid: {', '.join(CORPORA_BY_LANGUAGE)})")
    if opts.seed < 0:
        raise SertrtError(f"seed must be a non-negative integer, got {opts.seed}")  # numpy SeedSequence
    if not 0.0 < opts.scale <= 1.0:
        raise SertrtError(f"scale must be in (0, 1], got {opts.scale}")
    if opts.workers < 1:
        raise SertrtError(f"workers must be at least 1, got {opts.workers}")
    out = claim_output_dir(Path(opts.out).resolve(), "synth", option="OUT")
    languages = dict.fromkeys(opts.languages)  # ordered and without repeats
    jobs = [job for lang in languages for corpus in CORPORA_BY_LANGUAGE[lang] for job in _jobs(corpus, opts.seed, opts.scale)]
    render = partial(_render, out=out, seed=opts.seed, noise_snr_db=opts.noise_snr_db, espeak=espeak)
    utterances = []
    pool = ThreadPoolExecutor(max_workers=opts.workers)
    try:
        for utt in pool.map(render, jobs):
            utterances.append(utt)
            if progress is not None:
                progress(len(utterances), len(jobs))
    finally:
        # On an error, drop the queued utterances instead of speaking them all first.
        pool.shutdown(cancel_futures=True)
    utterances.sort(key=lambda u: u.path)
    atomic.write_text(out / "README.txt", _readme(opts, espeak, utterances))
    manifests = {
        out / "manifest.jsonl": [u for u in utterances if not CORPORA[u.corpus].held_out],
        out / "transfer_manifest.jsonl": [u for u in utterances if CORPORA[u.corpus].held_out],
    }
    for path, rows in manifests.items():
        if rows:
            write_manifest(path, rows)
    return next(path for path, rows in manifests.items() if rows)
