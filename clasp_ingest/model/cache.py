"""What the model cache holds, when each copy was last used, and removing the ones no run uses.

The cache (``$XDG_CACHE_HOME/clasp-ingest``, :func:`~clasp_ingest.model.assets.default_cache_dir`)
gets a copy per model version and install: the joined Whisper-base (145 MB), a ``-top-<hash>``
copy with a model's fine-tuned layers (145 MB) and its ``-int7e-<hash>`` 7-bit copy (126 MB),
ONNX exports of heads, the e5 graph (13.5 MB, keyed by the installed file's path: one per
virtualenv). A new version or a new virtualenv writes new ones and nothing removed the old:
270 MB a clasp-mini release, 13.5 MB a reinstall.

So each load of a copy marks it used (:func:`mark_used`: its mtime set to now, at most once a
day, where it can be written), and :func:`prune` removes the copies unused for longer than a
given number of days, and what runs cut short left behind (staging folders and temporary files
over an hour old). A removed copy is written again by the next run that needs it (seconds;
the joined Whisper-base from the installed packages). Only names this package writes are
touched: anything else in the folder is neither listed nor removed, and the feed cache
(``feeds/``) keeps its own (a day, :mod:`clasp_ingest.connectors.feedcache`).

A copy is removed by renaming it aside first (one rename), so a run loading it at that moment
sees the whole copy or none (and then writes it again), never a half-removed one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from clasp_ingest.log import get_logger

__all__ = ["CacheEntry", "Pruned", "cache_entries", "mark_used", "prune"]

log = get_logger("model.cache")

DAY_S = 86_400.0
#: What runs cut short left (staging folders, temporary files) is removed once this old: a copy
#: is written in seconds, so one this old belongs to no run still writing it.
UNFINISHED_AFTER_S = 3_600.0

#: Folders of the cache's top level that hold entries of their own kind.
_ONNX, _E5, _FEEDS = "onnx", "e5-onnx", "feeds"
_LITE0 = "efficientnet-lite0-timm.safetensors"
_STAMP = ".verified"  # the stamp of a copy written by clasp_ingest.model.assets
_META = "meta.json"  # the stamp of an ONNX export
#: Temporary names: ``.<name>-XXXXXXXX`` staging folders and ``.<name>-old-XXXXXXXX`` copies moved
#: aside (assets.cached_folder / install_folder / _materialise), ``.export-*`` (ONNX exports),
#: ``.tmp-*`` (assets.atomic_write), ``*.tmp`` (the Lite0 file).
_UNFINISHED = re.compile(r"\.(?:tmp-.+|export-.+|[A-Za-z0-9_.-]+-[A-Za-z0-9_]{6,})|.+\.tmp")


@dataclass(frozen=True)
class CacheEntry:
    """One copy in the model cache: ``kind`` (what it is), ``size`` in bytes, ``used``: when a run
    last loaded it (a day's precision; its mtime), or for an unfinished one, when it was left."""

    path: Path
    kind: str
    size: int
    used: float

    @property
    def unfinished(self) -> bool:
        return self.kind == "unfinished"

    def unused_days(self, now: float) -> float:
        return max(0.0, now - self.used) / DAY_S

    def stale(self, unused_days: float, now: float) -> bool:
        """Whether :func:`prune` removes it: unused for more than ``unused_days``, or left by a run
        cut short over an hour ago."""
        if self.unfinished:
            return now - self.used > UNFINISHED_AFTER_S
        return now - self.used > unused_days * DAY_S


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune` did: the entries removed, and those it could not remove with why."""

    removed: list[CacheEntry]
    failed: list[tuple[CacheEntry, str]]

    @property
    def freed(self) -> int:
        return sum(entry.size for entry in self.removed)


def mark_used(path: Path) -> None:
    """Record that a run loaded ``path`` (a cache copy): its mtime is set to now where it is over
    a day old, so a copy in use costs one write a day. Never fails a load: a read-only cache is
    left as it is (its copies then read as unused since they were written)."""
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > DAY_S:
            os.utime(path)


def cache_entries(cache: Path) -> list[CacheEntry]:
    """The copies clasp-ingest wrote into ``cache``, largest first; other names are left out."""
    found = [entry for path, kind in _ours(cache) if (entry := _entry(path, kind)) is not None]
    return sorted(found, key=lambda e: (-e.size, e.path.name))


def prune(cache: Path, unused_days: float, *, now: float | None = None) -> Pruned:
    """Remove the entries of ``cache`` unused for more than ``unused_days`` days and what runs cut
    short left over an hour ago (:meth:`CacheEntry.stale`); one that cannot be removed (another
    user's, a read-only folder) is reported in :attr:`Pruned.failed` and the others still go."""
    at = time.time() if now is None else now
    removed: list[CacheEntry] = []
    failed: list[tuple[CacheEntry, str]] = []
    for entry in cache_entries(cache):
        if not entry.stale(unused_days, at):
            continue
        try:
            _remove(entry.path)
        except OSError as exc:
            failed.append((entry, exc.strerror or str(exc)))
        else:
            removed.append(entry)
            log.info("removed %s (%s, %.1f MB)", entry.path, entry.kind, entry.size / 1e6)
    return Pruned(removed, failed)


def _ours(cache: Path) -> Iterator[tuple[Path, str]]:
    """Each name of ``cache`` this package writes, with its kind."""
    for path in _listing(cache):
        name = path.name
        if name == _FEEDS:
            continue
        if name == _ONNX:
            yield from _inside(path, lambda p: p.is_dir() and (p / _META).is_file(), "ONNX export")
        elif name == _E5:
            yield from _inside(path, lambda p: p.name.startswith("e5-small-q4-"), "e5 graph")
        elif name == _LITE0:
            yield path, "Lite0 weights"
        elif _UNFINISHED.fullmatch(name):
            yield path, "unfinished"
        elif path.is_dir() and not path.is_symlink() and (path / _STAMP).is_file():
            yield path, "Whisper (CT2)" if (path / "model.bin").is_file() else "model copy"


def _inside(folder: Path, whole: Callable[[Path], bool], kind: str) -> Iterator[tuple[Path, str]]:
    for path in _listing(folder):
        if _UNFINISHED.fullmatch(path.name):
            yield path, "unfinished"
        elif whole(path) and not path.is_symlink():
            yield path, kind


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _entry(path: Path, kind: str) -> CacheEntry | None:
    try:
        st = path.lstat()
    except FileNotFoundError:  # removed by another run meanwhile
        return None
    return CacheEntry(path, kind, _size(path), st.st_mtime)


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        with contextlib.suppress(OSError):
            return path.lstat().st_size
        return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total


def _remove(path: Path) -> None:
    """Remove ``path``; a folder is renamed aside first (one rename: a run loading it sees the
    whole copy or none), then deleted."""
    if not path.is_dir() or path.is_symlink():
        path.unlink(missing_ok=True)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}-old-", dir=path.parent))
    try:
        with contextlib.suppress(FileNotFoundError):  # another run removed it meanwhile
            path.replace(aside / path.name)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():
        raise OSError(f"{aside} could not be deleted")
