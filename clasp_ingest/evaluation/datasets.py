"""Real-speech evaluation sets built from files that registry packages install.

* ``librivox`` — Debian ``pocketsphinx-testdata`` (``make eval-deps``): five LibriVox
  utterances of *Sense and Sensibility* (one reader, 16 kHz), transcripts in lower case
  without punctuation, as CMU Sphinx writes them.
* ``sphinx-cards`` — the same package's five "cards" utterances (short, near-identical
  phrases such as "seven of clubs": a hard set).
* ``audioeval`` — PyPI ``pytest-audioeval`` (``pip install 'clasp-ingest[dev]'``): 27 clips
  in 9 languages (en, es, fr, hi, it, ja, pl, pt, zh), each with a reference text *in the
  clip's own language*.

Every set becomes a manifest (JSONL, split ``"test"``, see
:mod:`clasp_ingest.training.manifest`) whose ``audio`` paths point at the installed files,
or at copies when ``copy_to`` is given. Nothing is downloaded.

``python -m clasp_ingest.evaluation.datasets --out DIR`` writes ``DIR/<set>.jsonl`` for every
set whose package is installed and prints what it wrote.
"""

from __future__ import annotations

import argparse
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
    "POCKETSPHINX_DATA",
    "EvalClip",
    "audioeval_clips",
    "audioeval_samples_dir",
    "build_eval_sets",
    "main",
    "parse_sphinx_transcription",
    "pocketsphinx_clips",
    "write_manifest",
]

log = get_logger("evaluation.datasets")

#: Where Debian's ``pocketsphinx-testdata`` installs its test data.
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
_AUDIOEVAL_MODULE = "pytest_audioeval"
_SPHINX_LINE = re.compile(r"^\s*(?:<s>)?(?P<text>.*?)(?:</s>)?\s*\((?P<id>[^()]+)\)\s*$")


@dataclass(frozen=True)
class EvalClip:
    """One clip of an evaluation set and its reference text (the query)."""

    audio: Path
    text: str
    language: str
    clip_id: str

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


def _copied(clips: Sequence[EvalClip], dest: Path) -> list[EvalClip]:
    out = []
    for clip in clips:
        target = dest / f"{clip.clip_id}{clip.audio.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.stat().st_size != clip.audio.stat().st_size:
            shutil.copyfile(clip.audio, target)
        out.append(EvalClip(audio=target, text=clip.text, language=clip.language, clip_id=clip.clip_id))
    return out


def write_manifest(clips: Sequence[EvalClip], path: Path, copy_to: Path | None = None) -> Path:
    """Write ``clips`` as a JSONL manifest (split ``"test"``, absolute audio paths); return ``path``.

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
            fh.write(json.dumps({**row, "split": "test"}, ensure_ascii=False) + "\n")
    return path


#: Set name → builder of its clips.
EVAL_SETS: dict[str, Callable[[], list[EvalClip]]] = {
    "librivox": lambda: pocketsphinx_clips("librivox"),
    "sphinx-cards": lambda: pocketsphinx_clips("cards"),
    "audioeval": lambda: audioeval_clips(),
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
