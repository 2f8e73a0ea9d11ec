"""Real-speech evaluation sets built from files that registry packages install.

* ``librivox`` — Debian ``pocketsphinx-testdata`` (``make eval-deps``): five LibriVox
  utterances of *Sense and Sensibility* (one reader, 16 kHz), transcripts in lower case
  without punctuation, as CMU Sphinx writes them.
* ``sphinx-cards`` — the same package's five "cards" utterances (short, near-identical
  phrases such as "seven of clubs": a hard set).
* ``audioeval`` — PyPI ``pytest-audioeval`` (``pip install 'clasp-ingest[dev]'``): 27 clips
  in 9 languages (en, es, fr, hi, it, ja, pl, pt, zh), each with a reference text *in the
  clip's own language*.
* ``festvox-ru`` — Debian ``festvox-ru``: 620 sentences of Russian prose read by one man
  (16 kHz studio recordings; the ``+`` stress marks of ``etc/txt.done.data`` removed). One
  reader, so its splits share the speaker: every fifth sentence is ``test``, the next ``val``.
* ``fillets-cs`` / ``fillets-nl`` — Debian ``fillets-ng-data-cs`` / ``-nl`` (with
  ``fillets-ng-data``): acted game lines in Czech / Dutch, each also written in English (the
  original) and other languages (``dialogs_<lang>.lua``). ``fillets-cs-en`` / ``fillets-nl-en``
  are the same clips with the English text as the query (cross-lingual); ``fillets-cs-de`` and
  ``fillets-nl-fr`` with the game's German / French translation of the line. Split by actor: the
  small fish's actor (ids ``*-m-*``) is ``test``, unseen in ``train``/``val``; the other roles
  (big fish ``*-v-*`` and minor characters; whether one actor voices several minor roles is not
  recorded) go to ``val`` (a seeded 15 %) and ``train``. Lines whose English has fewer than
  four words, repeats of a text already taken, and recordings without audio are left out.

Every set becomes a manifest (JSONL, a ``split`` per row, ``"test"`` unless said above, see
:mod:`clasp_ingest.training.manifest`) whose ``audio`` paths point at the installed files,
or at copies when ``copy_to`` is given. Nothing is downloaded.

``python -m clasp_ingest.evaluation.datasets --out DIR`` writes ``DIR/<set>.jsonl`` for every
set whose package is installed and prints what it wrote.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clasp_ingest.errors import ConfigError
from clasp_ingest.log import get_logger
from clasp_ingest.training.manifest import manifest_lines

__all__ = [
    "EVAL_SETS",
    "FESTVOX_RU",
    "FILLETS_DATA",
    "POCKETSPHINX_DATA",
    "EvalClip",
    "audioeval_clips",
    "audioeval_samples_dir",
    "build_eval_sets",
    "festvox_ru_clips",
    "fillets_clips",
    "main",
    "parse_sphinx_transcription",
    "pocketsphinx_clips",
    "write_manifest",
]

log = get_logger("evaluation.datasets")

#: Where Debian's ``pocketsphinx-testdata`` installs its test data.
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
_AUDIOEVAL_MODULE = "pytest_audioeval"
#: Where Debian's ``festvox-ru`` installs the recordings of its voice.
FESTVOX_RU = Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits")
#: Where Debian's ``fillets-ng-data`` installs the game's scripts and sounds.
FILLETS_DATA = Path("/usr/share/games/fillets-ng")
_FESTVOX_LINE = re.compile(r'^\(\s*(?P<id>\S+)\s+"(?P<text>.*)"\s*\)\s*$')
_LUA_STRING = r'"((?:[^"\\]|\\.)*)"'
_FILLETS_LINE = re.compile(
    rf"dialogId\(\s*{_LUA_STRING}\s*,\s*{_LUA_STRING}\s*,\s*{_LUA_STRING}\s*\)\s*dialogStr\(\s*{_LUA_STRING}\s*\)"
)
_SPHINX_LINE = re.compile(r"^\s*(?:<s>)?(?P<text>.*?)(?:</s>)?\s*\((?P<id>[^()]+)\)\s*$")


@dataclass(frozen=True)
class EvalClip:
    """One clip of an evaluation set and its reference text (the query)."""

    audio: Path
    text: str
    language: str
    clip_id: str
    split: str = "test"

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError(f"clip {self.clip_id!r} ({self.audio}) has an empty reference text")


def parse_sphinx_transcription(path: Path) -> dict[str, str]:
    """``{utterance id: text}`` of a Sphinx ``.transcription`` file (``<s> text </s> (id)`` lines)."""
    out: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        match = _SPHINX_LINE.match(raw)
        if match is None:
            raise ConfigError(f"{path}:{number}: not a '<s> text </s> (id)' transcription line: {raw!r}")
        out[match["id"].strip()] = " ".join(match["text"].split())
    return out


def _require_dir(path: Path, what: str, remedy: str) -> Path:
    if not path.is_dir():
        raise ConfigError(f"{what} not found at {path}; {remedy}")
    return path


def pocketsphinx_clips(subset: str = "librivox", root: Path = POCKETSPHINX_DATA) -> list[EvalClip]:
    """The ``librivox`` or ``cards`` utterances of ``pocketsphinx-testdata`` with their transcripts."""
    if subset not in ("librivox", "cards"):
        raise ConfigError(f"pocketsphinx subset {subset!r} is not 'librivox' or 'cards'")
    folder = _require_dir(
        root / subset, f"pocketsphinx-testdata ({subset})", "install it: make eval-deps (Debian package)"
    )
    name = "transcription" if subset == "librivox" else "cards.transcription"
    texts = parse_sphinx_transcription(folder / name)
    clips = []
    for utt_id, text in texts.items():
        audio = folder / f"{utt_id}.wav"
        if not audio.is_file():
            raise ConfigError(
                f"{folder / name} names {utt_id!r} but {audio} is missing; reinstall the package"
            )
        clips.append(EvalClip(audio=audio, text=text, language="en", clip_id=f"{subset}/{utt_id}"))
    return clips


def audioeval_samples_dir() -> Path:
    """``samples/audio`` inside the installed ``pytest-audioeval`` (found without importing it)."""
    spec = importlib.util.find_spec(_AUDIOEVAL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("pytest-audioeval is not installed; install it: pip install 'clasp-ingest[dev]'")
    package = Path(next(iter(spec.submodule_search_locations)))
    return _require_dir(
        package / "samples" / "audio",
        "pytest-audioeval samples",
        "reinstall it: pip install pytest-audioeval",
    )


def audioeval_clips(samples: Path | None = None) -> list[EvalClip]:
    """Every ``<lang>/<name>.wav`` with a ``<name>.txt`` reference text, sorted by language then name."""
    root = samples if samples is not None else audioeval_samples_dir()
    clips = []
    for audio in sorted(root.glob("*/*.wav")):
        reference = audio.with_suffix(".txt")
        if not reference.is_file():
            log.warning("skipping %s: no reference text %s", audio, reference.name)
            continue
        text = " ".join(reference.read_text(encoding="utf-8").split())
        lang = audio.parent.name
        clips.append(EvalClip(audio=audio, text=text, language=lang, clip_id=f"{lang}/{audio.stem}"))
    if not clips:
        raise ConfigError(f"no <lang>/<name>.wav + .txt pairs under {root}; reinstall pytest-audioeval")
    return clips


def festvox_ru_clips(root: Path = FESTVOX_RU) -> list[EvalClip]:
    """The 620 recorded sentences of ``festvox-ru`` with their texts (stress marks removed)."""
    _require_dir(
        root / "wav", "festvox-ru recordings", "install it: make eval-deps (Debian package festvox-ru)"
    )
    clips: list[EvalClip] = []
    for number, raw in enumerate(
        (root / "etc" / "txt.done.data").read_text(encoding="utf-8").splitlines(), 1
    ):
        match = _FESTVOX_LINE.match(raw)
        if match is None:
            continue
        audio = root / "wav" / f"{match['id']}.wav"
        if not audio.is_file():
            log.warning("skipping %s: %s (line %d) names no recording", match["id"], audio, number)
            continue
        text = " ".join(match["text"].replace("+", "").split())
        split = ("test", "val", "train", "train", "train")[(len(clips)) % 5]
        clips.append(
            EvalClip(audio=audio, text=text, language="ru", clip_id=f"ru/{match['id']}", split=split)
        )
    if not clips:
        raise ConfigError(f"no recordings found under {root}; reinstall festvox-ru")
    return clips


def _has_samples(path: Path) -> bool:
    """Whether ``path`` declares any audio (two fillets-ng-data-nl recordings are empty Ogg
    headers that no decoder gets a sample from), read from the header, without decoding."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).frames) > 0
    except (RuntimeError, sf.LibsndfileError):
        return False


def _lua_unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _fillets_lines(script: Path) -> dict[str, tuple[str, str]]:
    """``{line id: (English original, the line in the script's language)}`` of a ``dialogs_*.lua``."""
    out = {}
    for match in _FILLETS_LINE.finditer(script.read_text(encoding="utf-8")):
        english, local = (" ".join(_lua_unescape(t).split()) for t in (match[3], match[4]))
        out[match[1]] = (english, local)
    return out


def fillets_clips(language: str, query: str | None = None, root: Path = FILLETS_DATA) -> list[EvalClip]:
    """The acted lines of ``fillets-ng-data-<language>`` (``cs`` or ``nl``); the query text is the
    line in ``query`` (default: the clip's own language; ``"en"``: the English original; another
    code: the game's translation in that language, lines it lacks left out)."""
    if language not in ("cs", "nl"):
        raise ConfigError(f"fillets language {language!r} is not 'cs' or 'nl'")
    _require_dir(
        root / "script", "fillets-ng-data", f"install it: make eval-deps (Debian fillets-ng-data-{language})"
    )
    query = query or language
    clips: list[EvalClip] = []
    seen: set[str] = set()
    for script in sorted((root / "script").glob(f"*/dialogs_{language}.lua")):
        level = script.parent.name
        other = script.with_name(f"dialogs_{query}.lua")
        translated = _fillets_lines(other) if query not in ("en", language) and other.is_file() else {}
        for line_id, (english, spoken) in _fillets_lines(script).items():
            audio = root / "sound" / level / language / f"{line_id}.ogg"
            if not audio.is_file() or len(english.split()) < 4 or not spoken:
                continue
            if not _has_samples(audio):
                log.warning("skipping %s: the recording holds no audio", audio)
                continue
            keys = {english.casefold(), spoken.casefold()}
            if keys & seen:
                continue
            seen |= keys
            text = {"en": english, language: spoken}.get(query) or translated.get(line_id, ("", ""))[1]
            if not text:
                continue
            role = line_id.split("-")[1] if line_id.count("-") >= 2 else ""
            if role == "m":
                split = "test"
            else:
                digest = hashlib.sha256(f"fillets/{line_id}".encode()).digest()[0]
                split = "val" if digest < 256 * 0.15 else "train"
            clip_id = f"{language}/{level}/{line_id}"
            clips.append(EvalClip(audio=audio, text=text, language=query, clip_id=clip_id, split=split))
    if not clips:
        raise ConfigError(
            f"no {language} lines with recordings under {root}; "
            f"install fillets-ng-data-{language}: make eval-deps"
        )
    return clips


def _copied(clips: Sequence[EvalClip], dest: Path) -> list[EvalClip]:
    out = []
    for clip in clips:
        target = dest / f"{clip.clip_id}{clip.audio.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.stat().st_size != clip.audio.stat().st_size:
            shutil.copyfile(clip.audio, target)
        out.append(dataclasses.replace(clip, audio=target))
    return out


def write_manifest(clips: Sequence[EvalClip], path: Path, copy_to: Path | None = None) -> Path:
    """Write ``clips`` as a JSONL manifest (each clip's split, absolute audio paths); return ``path``.

    With ``copy_to`` the audio files are copied there first (``<copy_to>/<clip_id>.wav``) and the
    manifest points at the copies.
    """
    if not clips:
        raise ConfigError(f"no clips to write to {path}")
    rows = _copied(clips, copy_to) if copy_to is not None else list(clips)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for clip in rows:
            row = {"audio": str(clip.audio.resolve()), "text": clip.text, "language": clip.language}
            fh.write(json.dumps({**row, "split": clip.split}, ensure_ascii=False) + "\n")
    return path


#: Set name → builder of its clips.
EVAL_SETS: dict[str, Callable[[], list[EvalClip]]] = {
    "librivox": lambda: pocketsphinx_clips("librivox"),
    "sphinx-cards": lambda: pocketsphinx_clips("cards"),
    "audioeval": lambda: audioeval_clips(),
    "festvox-ru": lambda: festvox_ru_clips(),
    "fillets-cs": lambda: fillets_clips("cs"),
    "fillets-cs-en": lambda: fillets_clips("cs", "en"),
    "fillets-nl": lambda: fillets_clips("nl"),
    "fillets-nl-en": lambda: fillets_clips("nl", "en"),
    "fillets-cs-de": lambda: fillets_clips("cs", "de"),
    "fillets-nl-fr": lambda: fillets_clips("nl", "fr"),
}


def build_eval_sets(
    out_dir: Path, names: Sequence[str] | None = None, copy: bool = False, skip_missing: bool = True
) -> dict[str, Path]:
    """Write ``out_dir/<name>.jsonl`` for each set; return ``{name: manifest path}``.

    A set whose package is missing is skipped with a warning (``skip_missing``) or raises
    :class:`ConfigError` naming the package to install. ``copy`` copies the audio under
    ``out_dir/audio/<name>/``.
    """
    wanted = list(names) if names is not None else list(EVAL_SETS)
    unknown = [n for n in wanted if n not in EVAL_SETS]
    if unknown:
        raise ConfigError(f"unknown evaluation set(s) {unknown}; choose from {sorted(EVAL_SETS)}")
    written: dict[str, Path] = {}
    for name in wanted:
        try:
            clips = EVAL_SETS[name]()
        except ConfigError as exc:
            if not skip_missing:
                raise
            log.warning("skipping evaluation set %s: %s", name, exc)
            continue
        copy_to = out_dir / "audio" / name if copy else None
        written[name] = write_manifest(clips, out_dir / f"{name}.jsonl", copy_to)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clasp_ingest.evaluation.datasets --out DIR [--set NAME ...] [--copy]``."""
    parser = argparse.ArgumentParser(description="Write real-speech evaluation manifests.")
    parser.add_argument("--out", type=Path, required=True, help="folder for <set>.jsonl manifests")
    parser.add_argument("--set", dest="sets", action="append", choices=sorted(EVAL_SETS), help="repeatable")
    parser.add_argument("--copy", action="store_true", help="copy the audio under OUT/audio/<set>/")
    parser.add_argument("--strict", action="store_true", help="fail when a set's package is missing")
    args = parser.parse_args(argv)
    try:
        written = build_eval_sets(args.out, args.sets, copy=args.copy, skip_missing=not args.strict)
    except ConfigError as exc:
        parser.exit(1, f"error: {exc}\n")
    for name, path in written.items():
        n = sum(1 for _ in manifest_lines(path))
        sys.stdout.write(f"{name}\t{n} clips\t{path}\n")  # this entry point owns stdout
    return 0 if written else 1


if __name__ == "__main__":
    raise SystemExit(main())
