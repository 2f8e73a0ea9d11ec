"""Read and validate a JSONL training/evaluation manifest.

One JSON object per line::

    {"audio": "clips/0001.wav", "text": "the cat sat", "language": "en", "split": "train"}

``audio`` (required) is a path; a relative one is resolved against the manifest's folder.
``text`` (required) is the transcript or caption the clip should land next to.
``language`` (optional) is a free-form language tag. ``split`` (optional) is one of
``train``, ``val``, ``test``. Blank lines and lines starting with ``#`` are skipped.
Every bad row raises :class:`~clasp_ingest.errors.ConfigError` naming the file and line.

Rows are bounded: a line of more than :data:`MAX_LINE_BYTES` (1 MiB) is refused after
reading at most that much of it (a manifest is read line by line, never whole), and so is a
``text`` of more than :data:`MAX_TEXT_CHARS` characters (a clip's transcript or caption is
far shorter; the text encoders read 512 tokens at most).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ConfigError
from clasp_ingest.log import get_logger

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_TEXT_CHARS",
    "SPLITS",
    "ManifestRow",
    "manifest_lines",
    "read_manifest",
    "select_split",
    "split_train_val",
]

#: The split names a manifest row may carry.
SPLITS = ("train", "val", "test")
_KEYS = frozenset({"audio", "text", "language", "split"})
#: The longest manifest line read (bytes, newline included).
MAX_LINE_BYTES = 1024 * 1024
#: The longest ``text`` of a row (characters).
MAX_TEXT_CHARS = 10_000


log = get_logger("training.manifest")


@dataclass(frozen=True)
class ManifestRow:
    """One audio clip and the text it should be embedded next to."""

    audio: Path
    text: str
    language: str | None = None
    split: str | None = None
    line: int = 0

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("field 'text' must be a non-empty string")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split {self.split!r} is not one of {', '.join(SPLITS)}; use one of those")


def read_manifest(path: Path | str, *, check_files: bool = True) -> list[ManifestRow]:
    """Every row of the JSONL manifest at ``path``, validated, audio paths made absolute."""
    manifest = Path(path)
    if manifest.is_dir():
        raise ConfigError(f"manifest {str(manifest)!r} is a folder; pass the JSONL file in it")
    if not manifest.is_file():
        raise ConfigError(f"manifest {str(manifest)!r} does not exist; pass a JSONL file")
    rows = [
        _parse_line(raw, number, manifest, check_files)
        for number, raw in manifest_lines(manifest)
        if not raw.lstrip().startswith("#")
    ]
    if not rows:
        raise ConfigError(f"manifest {str(manifest)!r} has no rows; add one JSON object per line")
    _warn_repeats(rows, manifest)
    return rows


def _warn_repeats(rows: Sequence[ManifestRow], manifest: Path) -> None:
    """Log rows that repeat an earlier one (same audio, text and split): they count twice in
    training, and in evaluation the same query is asked twice of the one clip they share."""
    first: dict[tuple[Path, str, str | None], int] = {}
    repeats = []
    for row in rows:
        seen = first.setdefault((row.audio, row.text, row.split), row.line)
        if seen != row.line:
            repeats.append((row.line, seen))
    if repeats:
        shown = ", ".join(f"line {line} repeats line {seen}" for line, seen in repeats[:3])
        more = f" and {len(repeats) - 3} more" if len(repeats) > 3 else ""
        log.warning("%s: %d repeated rows (%s%s); remove them", manifest, len(repeats), shown, more)


def manifest_lines(path: Path | str, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line of a JSONL file, read line by line.

    A line longer than ``max_line_bytes`` raises :class:`ConfigError` naming ``file:line``
    and the limit, after reading at most ``max_line_bytes + 1`` bytes of it; so does a line
    that is not UTF-8.
    """
    with Path(path).open("rb") as fh:
        number = 0
        while raw := fh.readline(max_line_bytes + 1):
            number += 1
            if len(raw) > max_line_bytes:
                raise ConfigError(
                    f"{path}:{number}: line longer than {max_line_bytes} bytes (the limit of a "
                    "manifest row); shorten its text or split the row"
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}:{number}: not UTF-8 ({exc.reason}); save the file as UTF-8"
                ) from None
            if text.strip():
                yield number, text


def _parse_line(raw: str, number: int, manifest: Path, check_files: bool) -> ManifestRow:
    where = f"{manifest}:{number}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg}); write one JSON object per line") from None
    if not isinstance(obj, dict):
        raise ConfigError(
            f"{where}: expected a JSON object with 'audio' and 'text', got {type(obj).__name__}"
        )
    _check_keys(obj, where)
    audio = _resolve_audio(obj["audio"], manifest.parent, where, check_files)
    try:
        return ManifestRow(
            audio=audio,
            text=obj["text"],
            language=obj.get("language"),
            split=obj.get("split"),
            line=number,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_keys(obj: dict[str, Any], where: str) -> None:
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(_KEYS)}")
    for key in ("audio", "text"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ConfigError(f"{where}: field {key!r} must be a non-empty string")
    if len(obj["text"]) > MAX_TEXT_CHARS:
        raise ConfigError(
            f"{where}: 'text' has {len(obj['text'])} characters, more than the limit of {MAX_TEXT_CHARS}; "
            "give the clip's own transcript or caption"
        )
    for key in ("language", "split"):
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            raise ConfigError(f"{where}: field {key!r} must be a string when present")


def _resolve_audio(value: str, base: Path, where: str, check_files: bool) -> Path:
    audio = Path(value).expanduser()
    if not audio.is_absolute():
        audio = base / audio
    audio = audio.resolve()
    if check_files and audio.is_dir():
        raise ConfigError(
            f"{where}: audio {str(audio)!r} is a folder, not a file; give one audio file per row"
        )
    if check_files and not audio.is_file():
        raise ConfigError(f"{where}: audio file {str(audio)!r} does not exist; fix the path in the manifest")
    return audio


def select_split(rows: Sequence[ManifestRow], split: str) -> list[ManifestRow]:
    """Rows of ``split``; a manifest with no ``split`` field at all counts as one big split.

    In a manifest that marks some rows, the unmarked ones are training rows (as
    :func:`split_train_val` takes them): ``"train"`` selects them with the rows marked so.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; use one of {SPLITS}")
    chosen = [row for row in rows if row.split == split or (split == "train" and row.split is None)]
    if chosen:
        return chosen
    if all(row.split is None for row in rows):
        return list(rows)
    raise ConfigError(f"the manifest has no rows with split {split!r}; add some or choose another split")


def split_train_val(
    rows: Iterable[ManifestRow], *, val_fraction: float, seed: int
) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Training and validation rows.

    Rows marked ``train`` or unmarked train; rows marked ``val`` validate; ``test`` rows are
    never used. Without any ``val`` row a seeded ``val_fraction`` (at least 2 rows) of the
    training rows is held out for validation.
    """
    rows = list(rows)
    train = [row for row in rows if row.split in (None, "train")]
    val = [row for row in rows if row.split == "val"]
    if not val:
        train, val = _hold_out(train, val_fraction, seed)
    if len(train) < 2 or len(val) < 2:
        raise ConfigError(
            f"training needs at least 2 training and 2 validation rows, got {len(train)} and {len(val)}; "
            'add rows to the manifest or mark some with "split": "val"'
        )
    return train, val


def _hold_out(
    rows: list[ManifestRow], val_fraction: float, seed: int
) -> tuple[list[ManifestRow], list[ManifestRow]]:
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-fraction (val_fraction) must be in (0, 1), got {val_fraction}")
    n_val = max(2, round(len(rows) * val_fraction))
    order = np.random.default_rng(seed).permutation(len(rows))
    held = set(order[:n_val].tolist())
    train = [row for i, row in enumerate(rows) if i not in held]
    val = [row for i, row in enumerate(rows) if i in held]
    return train, val
