"""What the model cache holds, when each copy was last used, and removing the ones no run uses.

The cache (``$XDG_CACHE_HOME/clasp-ingest``, :func:`~clasp_ingest.model.assets.default_cache_dir`)
gets a copy per model version and install: the joined Whisper-base (145 MB), a ``-top-<hash>``
copy with a model's fine-tuned layers (145 MB) and its ``-int7e-<hash>`` 7-bit copy (126 MB),
ONNX exports of heads, the e5 graph (13.5 MB, keyed by the installed file's path: one per
virtualenv). A new version or a new virtualenv writes new ones and nothing removed the old:
270 MB a clasp-mini release, 13.5 MB a reinstall.

So each load of a copy marks it used (:func:`mark_used`: its mtime set to now, at most once an
hour, where it can be written), and :func:`prune` removes the copies unused for longer than a
given number of days, and what runs cut short left behind (staging folders and temporary files
over an hour old). A removed copy is written again by the next run that needs it (seconds;
the joined Whisper-base from the installed packages). Only the names this package writes are
listed or removed, and symbolic links are neither followed nor removed: anything else in the folder stays, as
do the feed cache (``feeds/``, which keeps its own: a day,
:mod:`clasp_ingest.connectors.feedcache`) and the training features (``features/``).

A copy is checked again just before it goes (a run may have marked it since it was listed) and
renamed aside first (one rename), so a run that looks for it finds it whole or not at all (and
then writes it again); a run that found it an instant before may still fail to read it, once.
One that cannot be deleted is put back under its name where none of it went, else left aside as
a leftover the next prune deletes. Two prunes at once remove each entry once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clasp_ingest.log import get_logger

__all__ = ["CacheEntry", "Pruned", "cache_entries", "mark_used", "prune"]

log = get_logger("model.cache")

DAY_S = 86_400.0
#: A load records its use where the last one recorded is older than this: one write an hour at
#: most, and a copy used within the hour never reads as unused for a day or more.
MARK_EVERY_S = 3_600.0
#: What runs cut short left (staging folders, temporary files) is removed once this old: a copy
#: is written in seconds, so one this old belongs to no run still writing it.
UNFINISHED_AFTER_S = 3_600.0

#: Folders of the cache's top level that hold entries of their own kind.
_ONNX, _E5 = "onnx", "e5-onnx"
_RANDOM = r"[a-z0-9_]{8}"  # what tempfile.mkdtemp/mkstemp add to a prefix
#: A Whisper copy: the joined Whisper-base, or a CTranslate2 folder's copy with a model's top layers,
#: with 7-bit weights or with its first N layers (whisper_ct2.patched_whisper_dir,
#: int7_whisper_dir, truncated_whisper_dir).
_COPY = r"(?:whisper-base-ct2|.+-(?:top-[0-9a-f]{16}|int7e-[0-9a-f]{12}|[0-9]+L))"
_LITE0 = "efficientnet-lite0-timm.safetensors"
#: Each kind's names, and the names runs cut short leave beside them: a copy's staging folder
#: (``.<copy>-XXXXXXXX``: assets.cached_folder, _materialise) or an old copy moved aside
#: (``.<copy>-old-XXXXXXXX``: install_folder, _remove), ``.export-*`` (ONNX exports), ``.tmp-*``
#: (assets.atomic_write), the Lite0 file's ``.tmp``. Nothing else is listed or removed.
_TOP = re.compile(_COPY)
_TOP_LEFT = re.compile(rf"\.{_COPY}(?:-old)?-{_RANDOM}|efficientnet-lite0-timm\.tmp")
_EXPORT = re.compile(r".+-[0-9a-f]{16}")
_EXPORT_LEFT = re.compile(rf"\.export-{_RANDOM}|\..+-[0-9a-f]{{16}}-old-{_RANDOM}")
_GRAPH = re.compile(r"e5-small-q4-[0-9a-f]{16}\.onnx")
_GRAPH_LEFT = re.compile(rf"\.tmp-{_RANDOM}\.onnx")
UNFINISHED = "unfinished"


@dataclass(frozen=True)
class CacheEntry:
    """One copy in the model cache: ``kind`` (what it is), ``size`` in bytes, ``used``: when a run
    last loaded it (an hour's precision; its mtime), or for an unfinished one, when it was left."""

    path: Path
    kind: str
    size: int
    used: float

    @property
    def unfinished(self) -> bool:
        return self.kind == UNFINISHED

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
    kept: int  # entries left as they were (in use, or another prune removed them first)

    @property
    def freed(self) -> int:
        return sum(entry.size for entry in self.removed)


def mark_used(path: Path) -> None:
    """Record that a run loaded ``path`` (a cache copy): its mtime is set to now where it is over
    an hour old (:data:`MARK_EVERY_S`), so a copy in use costs one write an hour. Never fails a
    load: a read-only cache is left as it is (its copies then read as unused since written)."""
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > MARK_EVERY_S:
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
    entries = cache_entries(cache)
    for entry in entries:
        if not entry.stale(unused_days, at) or _used_since(entry):
            continue
        try:
            gone = _remove(entry)
        except OSError as exc:
            failed.append((entry, exc.strerror or str(exc)))
            continue
        if gone:
            removed.append(entry)
            log.info("removed %s (%s, %.1f MB)", entry.path, entry.kind, entry.size / 1e6)
    return Pruned(removed, failed, len(entries) - len(removed) - len(failed))


def _used_since(entry: CacheEntry) -> bool:
    """Whether a run marked ``entry`` used after it was listed (a prune walks large folders)."""
    try:
        return entry.path.lstat().st_mtime > entry.used
    except OSError:
        return False


def _ours(cache: Path) -> Iterator[tuple[Path, str]]:
    """Each name of ``cache`` this package writes, with its kind. Symbolic links are not
    followed (an ``onnx`` link may lead anywhere); a name that cannot be read is logged and
    skipped."""
    for path in _listing(cache):
        if path.name == _ONNX:
            yield from _inside(path, _EXPORT, _EXPORT_LEFT, "ONNX export")
        elif path.name == _E5:
            yield from _inside(path, _GRAPH, _GRAPH_LEFT, "e5 graph")
        elif path.name == _LITE0:
            yield from _kind(path, path, "Lite0 weights")
        elif _TOP_LEFT.fullmatch(path.name):
            yield from _kind(path, path, UNFINISHED, needs_file=False)
        elif _TOP.fullmatch(path.name):
            yield from _kind(path, path / "model.bin", "Whisper (CT2)")


def _inside(
    folder: Path, whole: re.Pattern[str], left: re.Pattern[str], kind: str
) -> Iterator[tuple[Path, str]]:
    if folder.is_symlink():
        return
    for path in _listing(folder):
        if left.fullmatch(path.name):
            yield from _kind(path, path, UNFINISHED, needs_file=False)
        elif whole.fullmatch(path.name):
            yield from _kind(path, path, kind, needs_file=False)


def _kind(path: Path, needs: Path, kind: str, *, needs_file: bool = True) -> Iterator[tuple[Path, str]]:
    """``path`` as ``kind`` where it is no symbolic link (and the file ``needs`` is there)."""
    try:
        if not path.is_symlink() and (not needs_file or needs.is_file()):
            yield path, kind
    except OSError as exc:  # Python 3.11's is_file raises on a folder it may not enter
        log.warning("%s cannot be read (%s); left out", path, exc.strerror or exc)


def _listing(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        log.warning("%s cannot be read (%s); left out", folder, exc.strerror or exc)
        return []


def _entry(path: Path, kind: str) -> CacheEntry | None:
    try:
        st = path.lstat()
    except FileNotFoundError:  # removed by another run meanwhile
        return None
    except OSError as exc:  # a folder it may list but not enter
        log.warning("%s cannot be read (%s); left out", path, exc.strerror or exc)
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


def _remove(entry: CacheEntry) -> bool:
    """Remove ``entry``; False where another prune removed it first. A copy is renamed aside
    first (one rename: a run that finds it finds it whole or not at all) and put back where none
    of it could be deleted; what a run cut short left is deleted where it is."""
    path = entry.path
    try:
        folder = stat.S_ISDIR(path.lstat().st_mode)
    except FileNotFoundError:
        return False
    if not folder:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
    if entry.unfinished:
        return _delete(path)
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}-old-", dir=path.parent))
    try:
        path.replace(aside / path.name)
    except OSError as exc:
        aside.rmdir()
        if isinstance(exc, FileNotFoundError):
            return False
        raise
    files = _files(aside)
    try:
        _delete(aside)
    except OSError:
        if _files(aside) == files:  # nothing deleted: whole again under its name
            with contextlib.suppress(OSError):
                (aside / path.name).replace(path)
                aside.rmdir()
        raise
    return True


def _files(folder: Path) -> list[str]:
    return sorted(
        str(Path(root, name).relative_to(folder)) for root, _, names in os.walk(folder) for name in names
    )


def _delete(folder: Path) -> bool:
    """Delete ``folder`` and all in it; False where another prune deleted the folder itself
    first (what it deleted is no error)."""
    errors: list[str] = []
    beaten: list[bool] = []

    def failed(_function: object, name: str, exc: tuple[type[BaseException], BaseException, object]) -> None:
        if not isinstance(exc[1], FileNotFoundError):
            errors.append(f"{name}: {exc[1]}")
        elif os.fspath(name) == os.fspath(folder):
            beaten.append(True)

    shutil.rmtree(os.fspath(folder), onerror=failed)
    if errors:
        raise OSError(errno.EACCES, f"{folder} could not be deleted whole ({errors[0]})")
    return not beaten
