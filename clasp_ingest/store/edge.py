"""Qdrant Edge backend: Qdrant's embedded engine in a directory on disk, no server.

Layout under ``path``: ``<collection>/shard/`` (the Edge shard) and
``<collection>/collection.json`` (which model made the vectors, and their dimension), written
last when a collection is made (the shard is built as ``shard.partial`` and renamed first), so a
collection folder without it is one whose making was cut off: the next create replaces it.
Damaged files are reported (:class:`StoreError`) naming the collection and the remedy;
``drop`` (``ingest --recreate``) still removes such a collection when its shard opens.
Qdrant Edge (``qdrant-edge-py`` 0.9, beta) allows one process per path and builds HNSW
indexes only when asked (``optimize()``); this backend keeps a collection exact while it is
small and builds HNSW after a large ingest (see :class:`EdgeOptions`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import StoreBusyError, StoreError, StoreFullError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import (
    DEFAULT_COLLECTION,
    PAYLOAD_INDEXES,
    TEXT_VECTOR,
    TRANSCRIPT_KEY,
    VECTOR_NAME,
    WORDS_VECTOR,
    CollectionIdentity,
    HybridQuery,
    QdrantStore,
    StoredPoint,
    StoreNames,
    WriteOptions,
    point_from_record,
)
from clasp_ingest.store.filters import Clause, Condition, Where
from clasp_ingest.store.metric import QueryMetric

__all__ = ["EdgeOptions", "EdgeStore"]

log = get_logger("store.edge")

_IDENTITY_FILE = "collection.json"
_METRIC_FILE = "query_metric.npz"
_SHARD = "shard"
#: Where a collection's shard is built (and put before it is deleted): never a complete one.
_PARTIAL_SHARD = "shard.partial"
#: Every entry of a collection's folder that this store writes (``_write_durably``'s temporary
#: file too); a folder holding others is not one of its collections.
_OWN_ENTRIES = frozenset({_IDENTITY_FILE, f"{_IDENTITY_FILE}.partial", _METRIC_FILE, _SHARD, _PARTIAL_SHARD})
_PATH_OPTIONS = "--qdrant-path, CLASP_QDRANT_PATH"
#: Engine calls that write (for messages).
_WRITES = frozenset({"update", "flush", "optimize", "close"})
#: Engine calls that answer a request (a search, a count...) and change nothing.
_REQUESTS = frozenset({"query", "query_batch", "search", "count", "scroll", "retrieve", "facet"})
#: How the engine's errors of its storage (unreadable files...) begin; others are bad requests.
_ENGINE_SERVICE_ERROR = "Service runtime error"

#: The named vector a collection with a query metric builds its graph on (see
#: :class:`~clasp_ingest.store.metric.QueryMetric`); ``clasp`` keeps the model's vectors.
GRAPH_VECTOR = "clasp_graph"


#: Segments of at least this many points get an HNSW graph when the index is built, and a
#: filter matching fewer points than this is served exactly from the payload index.
SEGMENT_INDEX_POINTS = 20_000
#: Free space below which an embedded store refuses to write (:attr:`EdgeOptions.min_free_bytes`).
MIN_FREE_BYTES = 128 * 2**20
#: How the engine refuses an optimization (an index build, a vacuum) for want of disk space,
#: before it writes anything: not a damaged collection.
_NO_ROOM_TO_OPTIMIZE = "Not enough space available for optimization"
#: The engine's file of a shard's settings (``EdgeShard.load`` reads it).
_ENGINE_CONFIG = "edge_config.json"
#: The engine's indexing threshold (KiB of vectors in a segment) while a collection is searched
#: exactly (below ``index_threshold``): more than any segment holds, so the optimizers that give
#: back the space of deleted points build no HNSW graph. With the graphs' threshold (by segment
#: size) in force, a segment of 1,500 live points and 50,000 deleted ones came out of the vacuum
#: with a graph and an int8 copy.
_NEVER_INDEX_KB = 2**40


@dataclass(frozen=True)
class EdgeOptions:
    """Index policy of an embedded collection, by its size (measured on 2 busy cores, 385-d
    clasp-mini-like vectors, text queries; ``bench/bench_store.py`` and README *Search at scale*).

    - Below ``index_threshold`` points (150k) every search is exact: brute force scans 100k
      points in about 10-15 ms with perfect recall, and nothing has to be built, so a
      collection is ready the moment its points are written.
    - At or above it, :meth:`EdgeStore.optimize` builds HNSW graphs: every
      ``optimize_every`` new points during a :meth:`~QdrantStore.bulk` ingest (each step
      indexes the new segments; the index is ready when the load ends) and when it ends.
    - Graph space: a collection made with the model's query metric (``ensure_collection(...,
      query_metric=...)``; ingest does it for models with a query bank, clasp-mini among them)
      builds its graph on ``clasp_graph``, the query-aware space of
      :class:`~clasp_ingest.store.metric.QueryMetric` (the same ranking; points linked by how
      differently queries score them). The walk scores the full graph vectors (an int8 copy
      lost most of the recall, 0.37 at 200k: the extra coordinate takes the quantization
      range) with a beam of 512 at every size, and the best ``oversampling`` × k candidates
      are rescored with the model's vectors (``clasp``, which has no graph of its own). 2 cores,
      clasp-mini-like vectors, text queries (2026-12-04): 200k points, recall@10 0.98 at ef
      512 (0.948 at 256); 1M points (5 segments), 0.955 / 0.980 / 0.993 / 0.997 at ef 256 / 512
      / 1024 / 2048, search p50 13 ms at ef 1024 against 0.956 in 22 ms for the plain graph at
      ef 6144. Collections without a metric (older ones, models without a bank) keep:
    - the plain graph of the model's vectors. Text queries sit far from the speech vectors
      they look for (the model's text-speech gap), which that walk finds hard: the graph is
      wide (``hnsw_m=32``, ``hnsw_ef_construct=200``) and the beam wider, by the collection's
      size (``hnsw_ef=None``, :meth:`search_ef`): 4096 below ``wide_ef_points`` (300k), 6144
      from there. Measured with the int8 copy below: ef 4096 gave recall@10 0.951 at 200k
      points but 0.937 at 1M, where 6144 gave 0.958 (22.5 ms against 15.7 ms); the switch at
      300k lies between the two measured sizes and was not measured itself. A number
      (``hnsw_ef``) sets one beam for every size and both graphs.
    - ``payload_m=0``: no payload-aware extra links (no filter here needs them: searches
      filter either on nearly every point (``state``), which the main graph serves, or on
      one media item or source, which the payload index serves exactly).
    - ``quantization="int8"`` (the plain graph, and the word vectors' ``text`` graph): an int8
      copy of the vectors in RAM (385 bytes a point) that the graph walk scores, then the best
      ``oversampling`` × k (80 for k = 10) rescored with the full vectors. With
      ``oversampling=8`` it lost no recall against the full vectors and halved the search time
      (2 cores, clasp-mini-like vectors, text queries, 2026-12-04):
      200k points, ef 4096: recall@10 0.951 in 7.8 ms against 0.942 in 10.5 ms; 1M points,
      ef 4096: 0.937 (0.969 within 1e-3 of the 10th score) in 15.6 ms, where the full vectors
      took 30 ms for 0.949 on an earlier base. With ``oversampling=2`` the rescoring missed
      neighbours (0.893 at 200k). Exact searches (below ``index_threshold``) score the full
      vectors. Binary quantization lost almost everything on these vectors (recall 0.08).

    HNSW and quantization settings and the graph space are written when a collection is
    created; a collection made with other settings keeps its own (search-time settings follow
    these options), and opening it logs how to rebuild it (``--recreate``).

    ``min_free_bytes``: writes (a new collection, points, words, index builds) are refused with
    :class:`~clasp_ingest.errors.StoreFullError` while the store's disk has less free space.
    The engine maps its files into memory and grows them 32 MiB at a time (a new collection
    takes about 100 MiB); a page it cannot get on a full disk kills the process with SIGBUS
    (exit 135, no message), with the item half-written. An index build also needs the space
    the collection takes now (it writes new segments before it drops the old).

    Space of deleted points (an item rewritten: ``--force``, a changed file, ``--transcribe``;
    ``--prune``, ``store delete``) comes back when the engine's vacuum rewrites a segment where
    more than 20 % of its points, 1,000 or more in all, are deleted (its defaults): at the end of
    a bulk ingest that deleted points (:meth:`EdgeStore.optimize`), and when a store that
    deleted points outside one is closed (below ``index_threshold``; above it, at the next
    bulk's end). Below ``index_threshold`` the new segment gets no graph (searches stay exact);
    it took 4-14 s for a segment of 70k live points (2 busy cores), under 2 s below 2k, once
    per 25 % of it rewritten. A store written by an earlier release gets back what it holds at
    the first run that deletes points. The write-ahead log is apart: it keeps 40-64 MB of recent
    writes whatever the collection's size.
    """

    index_threshold: int = 150_000
    hnsw_m: int = 32
    hnsw_ef_construct: int = 200
    hnsw_ef: int | None = None
    payload_m: int = 0
    quantization: str | None = "int8"
    oversampling: float = 8.0
    optimize_every: int | None = 50_000
    max_search_threads: int | None = None
    wide_ef_points: int = 300_000
    min_free_bytes: int = MIN_FREE_BYTES

    def __post_init__(self) -> None:
        if (
            self.index_threshold < 1
            or self.hnsw_m < 2
            or (self.hnsw_ef is not None and self.hnsw_ef < 1)
            or self.wide_ef_points < 1
            or self.hnsw_ef_construct < 4
            or self.payload_m < 0
            or self.quantization not in (None, "int8")
            or self.oversampling < 1.0
            or (self.optimize_every is not None and self.optimize_every < 1)
            or self.min_free_bytes < 0
        ):
            raise ValueError(f"invalid EdgeOptions: {self}")

    def search_ef(self, points: int, *, graph: bool = False) -> int:
        """The HNSW beam for a collection of ``points``: ``hnsw_ef`` when set, else by size for
        the plain graph, and 512 for the query-aware one (``graph``), which needs far less."""
        if self.hnsw_ef is not None:
            return self.hnsw_ef
        if graph:
            return 512
        return 6144 if points >= self.wide_ef_points else 4096

    @property
    def segment_index_points(self) -> int:
        """Segments of at least this many points get a graph (at most ``index_threshold``)."""
        return min(self.index_threshold, SEGMENT_INDEX_POINTS)


def _full_disk(location: str, detail: str) -> StoreFullError:
    return StoreFullError(
        f"the disk of the embedded store {location!r} is full ({detail}); free space there, or "
        f"give a store on another disk ({_PATH_OPTIONS}), and run the command again"
    )


def _disk_bytes(folder: Path) -> int:
    """The disk space the files under ``folder`` take (their allocated blocks)."""
    return sum(stat.st_blocks * 512 for stat in _file_stats(folder))


def _hole_bytes(folder: Path) -> int:
    """The space the files under ``folder`` may still take: their sizes less their allocated
    blocks (the engine makes its memory-mapped files sparse; ``cp`` keeps them so)."""
    return sum(max(0, stat.st_size - stat.st_blocks * 512) for stat in _file_stats(folder))


def _file_stats(folder: Path) -> Iterator[os.stat_result]:
    """``lstat`` of every file under ``folder`` that can be asked."""
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                stat = (Path(root) / name).lstat()
            except OSError:
                continue
            yield stat


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError:  # pragma: no cover - a core dependency
        raise ImportError(
            "the embedded store needs qdrant-edge-py: pip install 'qdrant-edge-py>=0.9,<0.10'"
        ) from None
    return qdrant_edge


def _in_use(where: str, names: StoreNames) -> str:
    return (
        f"the embedded Qdrant store {where!r} is open in another process (or store object); "
        f"close it, or run a Qdrant server ({names.url}) for concurrent access"
    )


def _not_writable(where: Path, why: str) -> str:
    return (
        f"the embedded Qdrant store {str(where)!r} is not writable ({why}); Qdrant Edge writes to "
        "its folder even to search: make it writable, or copy the folder to a writable place and "
        f"pass that ({_PATH_OPTIONS})"
    )


def _refused(where: Path, number: int, exc: BaseException) -> str:
    """What a refused file access (EROFS, EACCES, EPERM) in the store at ``where`` means. A store
    whose folder this user may write, but with a file another user made private (umask 077:
    ``shard/edge_config.json``, mode 0600), was called "not writable" while ``ls -ld`` showed
    ``drwxrwxrwx``; name the file and say to open up all of them."""
    why = os.strerror(number)
    if number == errno.EROFS or not os.access(where, os.R_OK | os.W_OK | os.X_OK):
        return _not_writable(where, why)
    blocker = _locked_out(where, _named_path(exc))
    which = f"{'folder' if _is_dir(blocker) else 'file'} {str(blocker)!r}" if blocker else "file"
    return (
        f"a {which} of the embedded Qdrant store {str(where)!r} cannot be read or written ({why}), "
        "though the store's folder can: another user made it private (umask 077?); give every user "
        f"of the store access to all its files (chmod -R a+rwX {str(where)!r}, and umask 000 for "
        f"whoever writes to it), or copy the folder to a place of your own and pass that ({_PATH_OPTIONS})"
    )


def _named_path(exc: BaseException) -> Path | None:
    """The path an error names: an ``OSError``'s ``filename``, or the engine's
    ``failed to open file `/path`: Permission denied``."""
    if isinstance(exc, OSError) and exc.filename:
        return Path(os.fsdecode(exc.filename))
    found = re.search(r"`([^`]+)`", str(exc))
    return Path(found.group(1)) if found else None


def _is_dir(path: Path) -> bool:
    return os.path.isdir(path)  # noqa: PTH112 - Path.is_dir raises where a folder above may not be read


def _locked_out(where: Path, named: Path | None) -> Path | None:
    """The first folder or file from ``where`` down to ``named`` that this user cannot read and
    write, else ``named`` itself (None when it is not in the store)."""
    store = where.absolute()
    if named is None or not named.absolute().is_relative_to(store):
        return None
    parts = named.absolute().relative_to(store).parts
    for depth in range(1, len(parts) + 1):
        path = store.joinpath(*parts[:depth])
        if not os.path.lexists(path):
            break
        mode = os.R_OK | os.W_OK | (os.X_OK if _is_dir(path) else 0)
        if not os.access(path, mode):
            return path
    return named


def _engine_errno(exc: BaseException) -> int | None:
    """The OS error number an engine message carries, if any: ``... (os error 30)``, or Rust's
    debug form ``Os { code: 13, kind: PermissionDenied, ... }`` (some WAL errors)."""
    found = re.search(r"\(os error (\d+)\)|\bOs \{ code: (\d+)", str(exc))
    return int(found.group(1) or found.group(2)) if found else None


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest of ``path`` and its parents that exists as something other than a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def _engine_filter(flt: Any) -> str:
    """An engine ``Filter`` as its repr without the parts it leaves unset."""
    return re.sub(r", \w+=None|\w+=None, |r#", "", repr(flt))


def _engine_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the engine's: an ``Exception``, or a Rust panic inside it (pyo3's
    ``PanicException`` derives from ``BaseException``; the engine panics on some damaged files,
    e.g. a truncated payload page, where it raises on others)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


class _Damage(Exception):
    """A file of an embedded collection cannot be read (the message says which and why)."""


class _DamagedCollection(StoreError):
    """The engine failed reading or writing an open shard's files."""


class _ShardError(StoreError):
    """The engine could not open or make a shard (not for a lock, nor a read-only folder)."""


class _Gate:
    """Engine calls of any number of threads at once, or the shard closed and opened again under
    them, alone (a readers-writer lock that lets a waiting writer go first). A search that had
    the shard when another thread closed it to change its settings read "Shard is not
    initialized" and called the intact collection damaged, with ``--recreate`` as the remedy.
    The thread that holds ``exclusive`` makes its own calls freely, and may take it again
    (``close`` giving back space switches the settings)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._calls = 0
        self._writer: int | None = None
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            if self._writer == threading.get_ident():
                mine = True
            else:
                mine = False
                while self._writer is not None or self._waiting:
                    self._changed.wait()
                self._calls += 1
        try:
            yield
        finally:
            if not mine:
                with self._changed:
                    self._calls -= 1
                    if not self._calls:
                        self._changed.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        if self._writer == threading.get_ident():  # only this thread sets or clears it as its own
            yield
            return
        with self._changed:
            self._waiting += 1
            try:
                while self._writer is not None or self._calls:
                    self._changed.wait()
            finally:
                self._waiting -= 1
            self._writer = threading.get_ident()
        try:
            yield
        finally:
            with self._changed:
                self._writer = None
                self._changed.notify_all()


class _Unopened:
    """In place of an engine shard that could not be opened again: every call says so."""

    def __init__(self, why: str) -> None:
        self._why = why

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise StoreError(f"the embedded store {self._why}; open it again")

        return refuse


class _Shard:
    """An Edge shard whose failures (the engine raises bare ``Exception``) become the
    :class:`StoreError` that ``failed(operation, error)`` makes. ``failed`` is held weakly (a
    store's own method): a strong one made a cycle, so a store dropped unclosed kept its
    folder locked until the garbage collector ran (a retriever made twice in a row failed)."""

    def __init__(
        self, shard: Any, failed: Callable[[str, BaseException, Any], BaseException], gate: _Gate
    ) -> None:
        self._shard = shard
        self._failed = weakref.WeakMethod(failed)
        self._gate = gate

    @property
    def engine(self) -> Any:
        """The engine's shard itself (its failures as the engine raises them)."""
        return self._shard

    def swap(self, engine: Any) -> None:
        """Use ``engine`` from now on (the shard opened again: :meth:`EdgeStore._use_indexing_kb`,
        under the gate's ``exclusive``), so a caller holding this object calls the new one."""
        self._shard = engine

    def __getattr__(self, name: str) -> Any:
        getattr(self._shard, name)  # an engine without it: AttributeError now, as before

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                with self._gate.shared():  # the engine is not closed under a call
                    return getattr(self._shard, name)(*args, **kwargs)
            except BaseException as exc:
                if not _engine_failure(exc):
                    raise
                explain = self._failed()
                failed = exc if explain is None else explain(name, exc, args[0] if args else None)
                if failed is exc:  # not the storage's: as the engine raised it
                    raise
                raise failed from exc

        return call


#: Why an :class:`EdgeStore` cannot be copied (``copy``, ``deepcopy``, ``pickle``).
_NOT_COPIED = (
    "an embedded store cannot be copied: one EdgeStore object holds the collection's lock and "
    "engine; share that object (its calls may run in several threads), or close it and open the "
    "folder again"
)

#: The longest file name (bytes) of common file systems (ext4, XFS, APFS, NTFS: 255).
_NAME_MAX = 255


def lock_name(collection: str) -> str:
    """The file name of a collection's lock: ``.<collection>.lock``, or, where that would be too
    long for a file name (a collection name of 250-255 characters, or fewer multi-byte ones),
    ``.<first 200 characters>~<sha256 of the name, 16 hex digits>.lock``, still one per name."""
    name = f".{collection}.lock"
    if len(os.fsencode(name)) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(collection.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = collection[:200]
    while len(os.fsencode(f".{head}~{digest}.lock")) > _NAME_MAX:
        head = head[:-1]
    return f".{head}~{digest}.lock"


def _identity_data(identity: CollectionIdentity, query_metric: QueryMetric | None) -> dict[str, Any]:
    """The content of a collection's ``collection.json``."""
    data: dict[str, Any] = {
        "model_id": identity.model_id,
        "dim": identity.dim,
        "vector": VECTOR_NAME,
        "distance": "cosine",
    }
    if identity.source is not None:
        data["model_source"] = identity.source
    if identity.text_dim is not None:
        data.update(text_vector=TEXT_VECTOR, text_dim=identity.text_dim, sparse_vector=WORDS_VECTOR)
    if query_metric is not None:
        data.update(graph_vector=GRAPH_VECTOR, query_metric=_METRIC_FILE)
    return data


def _write_durably(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a temporary file, synced, then renamed over it)."""
    partial = path.with_name(f"{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class EdgeStore(QdrantStore):
    """A collection in a Qdrant Edge shard on local disk (one process at a time)."""

    backend = "edge"

    def __init__(
        self,
        path: Path,
        collection: str = DEFAULT_COLLECTION,
        *,
        options: EdgeOptions | None = None,
        write: WriteOptions | None = None,
        names: StoreNames | None = None,
    ) -> None:
        if names is not None:  # before any message: open_store's caller's names (CLI, Python, flow)
            self.names = names
        super().__init__(collection, write=write)
        self.path = Path(path)
        self.location = str(self.path)
        self.options = options or EdgeOptions()
        self._dir = self.path / collection
        self._shard: _Shard | None = None
        #: Every engine call passes it; the shard is closed and opened again with other engine
        #: settings (:meth:`_use_indexing_kb`) while no call runs, and calls in other threads wait
        #: (they found the store closed: 42,000 errors of a searching thread over 20 switches).
        self._gate = _Gate()
        self._indexed = False
        self._unindexed = 0  # points written in this bulk ingest since the index was last built
        self._indexed_points = 0  # the collection's size when it was opened or last indexed
        self._deleted = False  # points were deleted since the space was last reclaimed
        #: Points were deleted since the shard was opened: the engine still counts their words
        #: in the IDF of the ``words`` ranking (:meth:`_words_counted_again`).
        self._idf_stale = False
        self._metric: QueryMetric | None = None
        self._lock_fd: int | None = None
        #: Whether :meth:`close` ran: later calls are refused (they opened the store again).
        self._closed = False
        #: Why the collection cannot be used (its files are damaged): raised by what reads it.
        self._damage: str | None = None
        #: Why its shard was not opened (a disk without room for it): raised by what needs it;
        #: ``drop`` (``--recreate``) still removes it.
        self._unopened: StoreFullError | None = None
        if self._dir.exists() and not self._dir.is_dir():
            raise StoreError(
                f"the embedded store {self.location!r} holds a file {str(self._dir)!r} where collection "
                f"{collection!r} keeps its folder; move or delete that file, or use another collection "
                f"({self.names.collection})"
            )
        if self._dir.is_dir():  # made, or being made by another process (which holds the lock)
            self._lock()
            if (self._dir / _IDENTITY_FILE).exists():
                self._load()
            else:
                self._check_unfinished()

    def _load(self) -> None:
        """Open the existing collection's shard (and its query metric). Damage is kept in
        ``_damage``, not raised, so that ``drop`` (``--recreate``) can still remove it."""
        self._lock()
        if not self._room_to_open():
            return
        try:
            self._shard = self._load_shard()
            if self._stored()[1]:
                self._metric = self._load_metric()
            self._indexed = self._hnsw_built()
            self._indexed_points = int(self._shard.info().points_count)
        except _Damage as exc:
            self._damage = self._damaged(str(exc))
            return
        except _DamagedCollection as exc:  # the shard opened, but reading it failed
            self._damage = str(exc)
            return
        self._note_other_settings()

    def _check_unfinished(self) -> None:
        """A collection folder without its ``collection.json``: the leftover of a create that was
        cut off (no shard, or one without points; the next create replaces it), or a collection
        that lost that file (damaged)."""
        if not (self._dir / _SHARD).is_dir() or not self._room_to_open():
            return
        try:
            shard = self._load_shard()
            points = int(shard.info().points_count)
        except (_Damage, _DamagedCollection) as exc:
            self._damage = self._damaged(f"{_IDENTITY_FILE} is missing and {exc}")
            return
        if points == 0:
            shard.close()
            return
        self._shard = shard
        self._damage = self._damaged(f"{_IDENTITY_FILE} is missing (its shard holds {points} points)")

    def _stored(self) -> tuple[CollectionIdentity, bool]:
        """The identity ``collection.json`` records, and whether the collection has a query
        metric; ``_Damage`` when the file cannot be read."""
        try:
            data = json.loads((self._dir / _IDENTITY_FILE).read_text(encoding="utf-8"))
            source, text_dim = data.get("model_source"), data.get("text_dim")
            identity = CollectionIdentity(
                str(data["model_id"]),
                int(data["dim"]),
                None if source is None else str(source),
                None if text_dim is None else int(text_dim),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _Damage(f"{_IDENTITY_FILE} cannot be read ({_first_line(exc)})") from exc
        return identity, "query_metric" in data

    def _load_metric(self) -> QueryMetric:
        try:
            return QueryMetric.load(self._dir / _METRIC_FILE)
        except StoreError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise _Damage(f"{_METRIC_FILE} cannot be read ({_first_line(cause)})") from exc

    def _load_shard(self) -> _Shard:
        """The collection's shard; ``_Damage`` when the engine cannot open it for another reason
        than a lock or a read-only folder (those are ``StoreError``)."""
        try:
            return self._open(_edge().EdgeShard.load, None)
        except _ShardError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            raise _Damage(f"its shard cannot be opened ({_first_line(cause)})") from exc

    def _damaged(self, detail: str) -> str:
        """The message of a damaged collection, with the remedies (``drop`` removes it whatever
        state its files are in)."""
        folder = str(self._dir)
        remedy = (
            f"ingest again with --recreate (deletes the collection and makes it anew), or delete the "
            f"folder {folder!r}"
        )
        where = f"the embedded collection {self.collection!r} in {self.location!r}"
        return f"{where} is damaged: {detail}; {remedy}"

    def _engine_error(self, operation: str, exc: BaseException, request: Any = None) -> BaseException:
        """What a failed engine call of an open shard means: a :class:`StoreError` for a file that
        cannot be read or written (or a panic over one), or for a ``request`` the engine panicked
        on while the collection reads fine; anything else (a bad request: a bug here) as it was."""
        number = _engine_errno(exc)
        panicked = not isinstance(exc, Exception)
        if number in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StoreError(_refused(self.path, number, exc))
        if number in (errno.ENOSPC, errno.EDQUOT):
            return _full_disk(self.location, _first_line(exc))
        if number is None and not panicked and not str(exc).startswith(_ENGINE_SERVICE_ERROR):
            return exc
        if _NO_ROOM_TO_OPTIMIZE in str(exc):  # its own check: the collection is intact
            return _full_disk(self.location, _first_line(exc))
        doing = "writing to" if operation in _WRITES else "reading"
        not_the_files = self._not_the_files(number, doing, exc)
        if not_the_files is not None:
            return StoreError(not_the_files)
        if panicked and operation in _REQUESTS and self._reads_fine(exc):
            return StoreError(self._request_failed(operation, exc, request))
        return _DamagedCollection(self._damaged(f"{doing} it failed ({_first_line(exc)})"))

    def _reads_fine(self, panic: BaseException) -> bool:
        """Whether the collection reads while a request panicked the engine: the panic says
        nothing of corrupt storage, and a count and a point (payload and vectors) come back.
        A search with a NaN range bound (a panic in the engine's range lookup) called an intact
        collection damaged, with ``--recreate`` (which deletes it) as the remedy."""
        if "corrupt" in str(panic).lower() or self._shard is None:
            return False
        qe, shard = _edge(), self._shard.engine
        try:
            shard.count(qe.CountRequest(exact=True))
            shard.scroll(qe.ScrollRequest(limit=1, with_payload=True, with_vector=True))
        except BaseException as exc:
            if not _engine_failure(exc):
                raise
            return False
        return True

    def _request_failed(self, operation: str, panic: BaseException, request: Any) -> str:
        """The message of a request (``operation``) the engine panicked on, with its filter."""
        flt = getattr(request, "filter", None)
        named = "" if flt is None else f" with the filter {_engine_filter(flt)}"
        return (
            f"Qdrant Edge failed on a {operation} of the embedded collection {self.collection!r} in "
            f"{self.location!r}{named} ({_first_line(panic)}); the collection reads fine (it is not "
            "damaged): the engine cannot serve this request; change it (its filter's values) and "
            "try again"
        )

    def _not_the_files(self, number: int | None, doing: str, exc: BaseException) -> str | None:
        """The message of an engine error that says nothing about the collection's files (out of
        memory, the folder moved away, too many open files, a failing disk), where "damaged;
        ingest again with --recreate" would have the user delete an intact collection (a run
        under ``ulimit -v``, one whose store was renamed while it wrote, all said so)."""
        what = f"{doing} the embedded store {self.location!r} failed ({_first_line(exc)})"
        if number == errno.ENOMEM:
            return f"{what}: out of memory; free memory (or raise ulimit -v) and run the command again"
        if number in (errno.EMFILE, errno.ENFILE):
            return f"{what}: too many open files; raise the limit (ulimit -n) and run the command again"
        if number == errno.EIO:
            return (
                f"{what}: the disk reported an input/output error; check the disk, then run the command again"
            )
        if number == errno.ENOENT and not self._dir.is_dir():
            return (
                f"{what}: its folder {str(self._dir)!r} is gone (moved or deleted while the command "
                f"ran); run the command again with the store where it is now ({self.names.path})"
            )
        return None

    def _check_room(self, more: int = 0) -> None:
        """Refuse to write while the store's disk has less than ``options.min_free_bytes`` (plus
        ``more``) free (:class:`EdgeOptions`): the engine would die of SIGBUS where it cannot
        grow a file."""
        where = next((p for p in (self._dir, *self._dir.parents) if p.is_dir()), None)
        if where is None or not self.options.min_free_bytes:
            return
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            return  # a folder that cannot be asked: the write's own error will say why
        needed = self.options.min_free_bytes + more
        if free < needed:
            mib = 2**20
            raise _full_disk(
                self.location,
                f"{free / mib:.0f} MiB free, under the {needed / mib:.0f} MiB that Qdrant Edge "
                f"needs to {'rewrite its segments' if more else 'grow its files'}",
            )

    def _room_to_open(self) -> bool:
        """Whether the shard may be opened: not where its disk may not give the pages the engine
        touches. Opening maps its files into memory and writes to some (a store opened for the
        first time since it was written or copied took 64-154 MiB more of its disk, even for
        ``store list``), and where the disk cannot give a page the process dies of SIGBUS (exit
        135, no message; also ``search``). The space its files have not taken yet (their holes),
        at most ``options.min_free_bytes``, must be free; else ``_unopened`` says so to what
        needs the shard (a store opened before may have needed less: which pages were taken
        cannot be told on every file system), and ``--recreate`` can still drop it."""
        if not self.options.min_free_bytes:
            return True
        try:
            free = shutil.disk_usage(self._dir).free
        except OSError:
            return True  # a folder that cannot be asked: opening says why
        holes = _hole_bytes(self._dir / _SHARD)
        needed = min(holes, self.options.min_free_bytes)
        if free >= needed:
            return True
        mib = 2**20
        self._unopened = _full_disk(
            self.location,
            f"{free / mib:.0f} MiB free; opening collection {self.collection!r} may take up to "
            f"{needed / mib:.0f} MiB more, and Qdrant Edge kills the process where the disk cannot "
            "give a page of its files; only ingest --recreate, which deletes its points, can still "
            "drop it here",
        )
        return False

    def exists(self) -> bool:
        """True when the collection exists, also when it is damaged (``drop`` removes it)."""
        return self._damage is not None or super().exists()

    # ----- lifecycle

    def _hnsw_built(self) -> bool:
        """Whether HNSW graphs exist: indexed vectors beyond the sparse ``words`` ones (a sparse
        vector is indexed as it is written)."""
        qe = _edge()
        indexed = int(self._require_shard().info().indexed_vectors_count)
        if self.identity is None or self.identity.text_dim is None:
            return indexed > 0
        has_words = qe.Filter(must=[qe.HasVectorCondition(WORDS_VECTOR)])
        return indexed > int(self._require_shard().count(qe.CountRequest(exact=True, filter=has_words)))

    def _lock(self) -> None:
        """Hold ``.<collection>.lock`` (:func:`lock_name`) beside the collection (flock) while this
        store is open, so a second process (or store object) is refused at once, also while the
        collection is being created (the shard's own lock exists only once it is)."""
        if self._lock_fd is not None:
            return
        self._check_open()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / lock_name(self.collection), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(self._unusable_folder(exc)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreBusyError(_in_use(str(self._dir), self.names)) from None
        self._lock_fd = fd

    def _unusable_folder(self, exc: OSError) -> str:
        """What an OS error making the store's folder or lock file means, and the remedy."""
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return _refused(self.path, exc.errno, exc)
        blocker = _file_in_the_way(self.path)
        if blocker is not None:
            return (
                f"the embedded store {self.location!r} cannot be made: {str(blocker)!r} is a file, not "
                f"a folder; give a folder ({self.names.path}) or a server ({self.names.url})"
            )
        return (
            f"cannot use the embedded store folder {self.location!r} ({_first_line(exc)}); give a "
            f"folder you can write to ({self.names.path}) or a server ({self.names.url})"
        )

    def __del__(self) -> None:  # a store dropped unclosed lets others in (the shard's own lock goes too)
        if getattr(self, "_lock_fd", None) is not None:  # (not when __init__ failed before setting it)
            self._unlock()

    def __copy__(self) -> EdgeStore:
        """Refused: one object owns the folder's lock and the engine (a copy, once collected,
        closed the original's lock descriptor, and its own close then another file's)."""
        raise TypeError(_NOT_COPIED)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> EdgeStore:
        raise TypeError(_NOT_COPIED)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(_NOT_COPIED)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _open(self, opener: Any, config: Any, folder: str = _SHARD) -> _Shard:
        shard_dir = str(self._dir / folder)
        try:
            shard = opener(shard_dir) if config is None else opener(shard_dir, config)
        except BaseException as exc:
            if not _engine_failure(exc):
                raise
            if "WouldBlock" in str(exc) or re.search(r"\block(ed)?\b", str(exc).lower()):
                raise StoreBusyError(_in_use(shard_dir, self.names)) from exc
            number = _engine_errno(exc)
            if number in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreError(_refused(self.path, number, exc)) from exc
            not_the_files = self._not_the_files(number, "opening", exc)
            if not_the_files is not None:  # out of memory (ulimit -v) was "damaged; --recreate"
                raise StoreError(not_the_files) from exc
            raise _ShardError(f"cannot open the embedded Qdrant store {shard_dir!r}: {exc}") from exc
        return _Shard(shard, self._engine_error, self._gate)

    def _config(self, dim: int, text_dim: int | None, metric: QueryMetric | None) -> Any:
        qe = _edge()
        opts = self.options
        threshold_kb = self._segment_index_kb(dim)
        quantization = self._quantization()
        vectors = {VECTOR_NAME: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
        if metric is not None:
            # the graph belongs to the graph vector (full vectors: an int8 copy lost the walk);
            # ``clasp`` (the model's vectors) only scores exactly: below the index threshold
            # and in the rescoring
            no_graph = qe.HnswIndexConfig(m=0, ef_construct=opts.hnsw_ef_construct,
                                          full_scan_threshold=threshold_kb, payload_m=0)  # fmt: skip
            vectors[VECTOR_NAME] = qe.EdgeVectorParams(
                size=dim, distance=qe.Distance.Cosine, hnsw_config=no_graph
            )
            vectors[GRAPH_VECTOR] = qe.EdgeVectorParams(size=dim + 1, distance=qe.Distance.Cosine)
        sparse = None
        if text_dim is not None:
            vectors[TEXT_VECTOR] = qe.EdgeVectorParams(
                size=text_dim,
                distance=qe.Distance.Cosine,
                quantization_config=quantization if metric is not None else None,
            )
            sparse = {WORDS_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
        return qe.EdgeConfig(
            vectors=vectors,
            sparse_vectors=sparse,
            hnsw_config=qe.HnswIndexConfig(
                m=opts.hnsw_m,
                ef_construct=opts.hnsw_ef_construct,
                full_scan_threshold=threshold_kb,
                payload_m=opts.payload_m,
            ),
            quantization_config=quantization if metric is None else None,
            # exact while it is small; optimize() sets the graphs' threshold when it builds them
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=_NEVER_INDEX_KB),
            max_search_threads=opts.max_search_threads,
        )

    def _segment_index_kb(self, dim: int) -> int:
        """The size (KiB of ``dim``-d vectors) from which a segment gets a graph and a search
        walks it rather than scanning it (:attr:`EdgeOptions.segment_index_points`)."""
        return max(1, self.options.segment_index_points * dim * 4 // 1024)

    def index_config(self) -> dict[str, Any]:
        """The collection's own HNSW and quantization settings (as written when it was made), and
        ``graph``: the vector its graph is built on (``clasp_graph``, the query-aware space of
        :class:`~clasp_ingest.store.metric.QueryMetric`, or ``clasp``, the model's vectors)."""
        file = self._dir / "shard" / "edge_config.json"
        data = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
        return {
            "hnsw": data.get("hnsw_config"),
            "quantization": data.get("quantization_config"),
            "graph": GRAPH_VECTOR if self._metric is not None else VECTOR_NAME,
        }

    def _note_other_settings(self) -> None:
        config = self.index_config()
        hnsw, quant = config["hnsw"] or {}, config["quantization"] or {}
        wanted = {"m": self.options.hnsw_m, "ef_construct": self.options.hnsw_ef_construct,
                  "payload_m": self.options.payload_m, "quantization": self.options.quantization}  # fmt: skip
        have = {key: hnsw.get(key) for key in ("m", "ef_construct", "payload_m")}
        have["quantization"] = (quant.get("scalar") or {}).get("type")
        if self._metric is not None:  # the query-aware graph scores full vectors: no int8 copy
            wanted.pop("quantization")
            have.pop("quantization")
        if have != wanted:
            log.info(
                "collection %r keeps the index settings it was made with (%s; current defaults %s); "
                "to rebuild it with the current ones, re-ingest with --recreate",
                self.collection,
                have,
                wanted,
            )

    def _quantization(self) -> Any:
        if self.options.quantization is None:
            return None
        qe = _edge()
        return qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)

    def _require_shard(self) -> Any:
        self._check_open()
        shard = self._shard
        if shard is None:
            if self._unopened is not None:
                raise self._unopened
            if self._damage is not None:
                raise StoreError(self._damage)
            self.require_collection()
            raise StoreError(
                f"the embedded store {str(self._dir)!r} is closed; open it again"
            )  # pragma: no cover
        return shard

    def close(self) -> None:
        """Flush and close the engine and give the folder's lock back, once the engine calls
        running in other threads are done (it closed the engine under a search). Later calls,
        also one of a thread that took the shard before, raise ``StoreError`` saying the store
        is closed; closing again does nothing."""
        with self._gate.exclusive():
            try:
                with contextlib.ExitStack() as closing:
                    closing.callback(self._unlock)
                    closing.callback(self._close_engine)
                    self._reclaim_at_close()
            finally:
                self._closed = True

    def require_collection(self) -> CollectionIdentity:
        """As :meth:`QdrantStore.require_collection`; after :meth:`close`, a ``StoreError``
        saying so (the identity is kept: a write went on to fail at its first point, and its
        rollback warned of a partial write with ``store delete`` as the remedy)."""
        self._check_open()
        return super().require_collection()

    def _check_open(self) -> None:
        """``StoreError`` once :meth:`close` ran: a call then opened the store again, or read a
        closed engine as a damaged collection (with ``--recreate``, which deletes it)."""
        if self._closed:
            raise StoreError(f"the embedded store {self._closed_why()}; open it again")

    def _closed_why(self) -> str:
        return f"{str(self._dir)!r} is closed"

    def _close_engine(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            try:
                shard.flush()  # a full disk says so here, and the shard is closed still
            finally:
                try:
                    shard.close()
                finally:  # a caller holding the shard is told the store is closed
                    shard.swap(_Unopened(self._closed_why()))

    def _reclaim_at_close(self) -> None:
        """Give back the space of points deleted outside a bulk ingest (``store delete``; a bulk
        gives it back at its end), where the collection is searched exactly: above the index
        threshold the vacuum rebuilds graphs (minutes), left to the next ingest's
        :meth:`optimize`."""
        if self._shard is None or not self._deleted or self._bulk_depth:
            return
        if self._count(Where()) < self.options.index_threshold:
            self._reclaim()

    # ----- collection

    def _no_collection(self, aside: str = "") -> str:
        """A folder that does not exist is named as such (it was "collection ... does not exist
        in the edge store", for a mistyped path), and the collections the store holds are listed."""
        if not self.path.is_dir():
            return (
                f"collection {self.collection!r} does not exist: there is no embedded store at "
                f"{self.location!r} (no such folder); check the path, or ingest some media into it "
                f"first ({self.names.store})"
            )
        held = sorted(folder.name for folder in self.path.iterdir() if (folder / _IDENTITY_FILE).is_file())
        return super()._no_collection(
            f"{aside} (it holds {', '.join(map(repr, held)) or 'no collection yet'})"
        )

    def _read_identity(self) -> CollectionIdentity | None:
        file = self._dir / _IDENTITY_FILE
        if self._damage is None and self._lock_fd is None and file.exists():
            self._load()  # made since this store was opened
        if self._damage is not None:
            raise StoreError(self._damage)
        if not file.exists():
            return None
        try:
            return self._stored()[0]
        except _Damage as exc:
            self._damage = self._damaged(str(exc))
            raise StoreError(self._damage) from exc

    def ensure_collection(
        self,
        model_id: str,
        dim: int,
        *,
        recreate: bool = False,
        source: str | None = None,
        text_dim: int | None = None,
        query_metric: QueryMetric | None = None,
    ) -> bool:
        """As :meth:`QdrantStore.ensure_collection`; ``recreate`` also replaces a damaged collection."""
        self._check_open()
        if recreate and (self._damage is not None or self._unopened is not None):
            log.warning(
                "dropping the %s collection %r to recreate it",
                "damaged" if self._damage is not None else "unopened",
                self.collection,
            )
            self.drop()
        return super().ensure_collection(
            model_id, dim, recreate=recreate, source=source, text_dim=text_dim, query_metric=query_metric
        )

    def _create(self, identity: CollectionIdentity, query_metric: QueryMetric | None = None) -> None:
        """Make the collection: the shard is built as ``shard.partial``, renamed ``shard`` once
        complete, and ``collection.json`` is written last, so a create cut off at any point (kill,
        power loss, Ctrl-C) leaves a folder without it, which the next create replaces."""
        if query_metric is not None and query_metric.dim != identity.dim:
            raise ValueError(
                f"a query metric for {query_metric.dim}-d vectors cannot index {identity.dim}-d ones"
            )
        self._lock()
        self._check_room()
        if self._dir.exists():  # no collection.json (or it would not be made): a cut-off create
            self._refuse_foreign_folder()
            log.warning(
                "removing the half-made collection folder %r (a create of it was cut off) to make it again",
                str(self._dir),
            )
            self._remove_folder()
        try:
            self._dir.mkdir()
            self._build_collection(identity, query_metric)
        except BaseException:
            self._close_shard()
            with contextlib.suppress(OSError):
                self._remove_folder()
            raise
        self._shard = self._open(_edge().EdgeShard.load, None)
        self._metric = query_metric

    def _build_collection(self, identity: CollectionIdentity, query_metric: QueryMetric | None) -> None:
        """Build the collection's files in its (new) folder; ``collection.json`` last."""
        qe = _edge()
        config = self._config(identity.dim, identity.text_dim, query_metric)
        self._shard = self._open(qe.EdgeShard.create, config, _PARTIAL_SHARD)
        types = {"keyword": qe.PayloadSchemaType.Keyword, "float": qe.PayloadSchemaType.Float,
                 "integer": qe.PayloadSchemaType.Integer}  # fmt: skip
        for key, kind in PAYLOAD_INDEXES.items():
            self._shard.update(qe.UpdateOperation.create_field_index(key, types[kind]))
        self._create_text_index(TRANSCRIPT_KEY)
        self._text_indexed = True
        if query_metric is not None:
            query_metric.save(self._dir / _METRIC_FILE)
        self._shard.flush()
        self._shard.close()
        self._shard = None
        (self._dir / _PARTIAL_SHARD).rename(self._dir / _SHARD)
        data = _identity_data(identity, query_metric)
        _write_durably(self._dir / _IDENTITY_FILE, json.dumps(data, indent=2))

    def _close_shard(self) -> None:
        """Close the shard, if open, whatever state its files are in (it is being removed)."""
        if self._shard is not None:
            shard, self._shard = self._shard, None
            with contextlib.suppress(StoreError):  # a damaged or full store: close it anyway
                shard.flush()
            with contextlib.suppress(StoreError):
                shard.close()

    def _refuse_foreign_folder(self) -> None:
        """A folder named like the collection that holds entries this store never writes (the
        user's media folder in the store's folder, a ``store export`` copy) is no cut-off create:
        a ``StoreError`` naming it, instead of removing it with everything in it."""
        try:
            foreign = sorted(entry.name for entry in self._dir.iterdir() if entry.name not in _OWN_ENTRIES)
        except NotADirectoryError:
            foreign = [self._dir.name]
        if foreign:
            shown = ", ".join(repr(name) for name in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise StoreError(
                f"{str(self._dir)!r} is in the store's folder under the collection's name but is no "
                f"collection of it (it holds {shown}), so it is left as it is; move it away, or use "
                f"another collection ({self.names.collection})"
            )

    def _remove_folder(self) -> None:
        """Delete the collection's folder so that a run cut off meanwhile leaves one that the next
        create replaces: ``collection.json`` goes first, then the shard is put aside. Only the
        entries this store writes are removed: a file someone put there stays, with the folder."""
        (self._dir / _IDENTITY_FILE).unlink(missing_ok=True)
        if (self._dir / _SHARD).is_dir():
            shutil.rmtree(self._dir / _PARTIAL_SHARD, ignore_errors=True)
            (self._dir / _SHARD).rename(self._dir / _PARTIAL_SHARD)
        for name in _OWN_ENTRIES:
            entry = self._dir / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        try:
            self._dir.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("kept %r: it holds files this store did not write", str(self._dir))

    def _drop(self) -> None:
        self._check_open()  # not without the folder's lock
        self._metric = None
        self._damage = self._unopened = None
        self._close_shard()
        if self._dir.is_dir():
            self._remove_folder()

    # ----- filters

    def _condition(self, cond: Condition) -> Any:
        qe = _edge()
        if cond.value is not None:
            return qe.FieldCondition(cond.key, match=qe.MatchValue(cond.value))
        if cond.any_of is not None:
            return qe.FieldCondition(cond.key, match=qe.MatchAny(list(cond.any_of)))
        bounds = qe.RangeFloat(gte=cond.gte, gt=cond.gt, lte=cond.lte, lt=cond.lt)
        return qe.FieldCondition(cond.key, range=bounds)

    def _clauses(self, clauses: Sequence[Clause]) -> list[Any] | None:
        built = [self._condition(c) if isinstance(c, Condition) else self._build(c) for c in clauses]
        return built or None

    def _build(self, where: Where) -> Any:
        return _edge().Filter(
            must=self._clauses(where.must),
            must_not=self._clauses(where.must_not),
            should=self._clauses(where.should),
        )

    def _filter(self, where: Where) -> Any:
        return None if where.empty else self._build(where)

    # ----- primitives

    def _upsert(self, points: Sequence[StoredPoint]) -> None:
        qe = _edge()
        vectors = [self._vectors(p) for p in points]
        if self._metric is not None and points:
            graph = self._metric.points(np.array([p.vector for p in points], np.float32))
            for named, row in zip(vectors, graph.tolist(), strict=True):
                named[GRAPH_VECTOR] = row
        # ids go in as text: the engine parses them as UUIDs (as ``uuid.UUID`` would, faster)
        batch = [qe.Point(p.id, named, p.payload) for p, named in zip(points, vectors, strict=True)]
        self._check_room()
        self._require_shard().update(qe.UpdateOperation.upsert_points(batch))
        self._unindexed += len(batch)
        every = self.options.optimize_every
        if self._bulk_depth and every is not None and self._unindexed >= every:
            self.optimize()

    @staticmethod
    def _vectors(point: StoredPoint) -> dict[str, Any]:
        vectors: dict[str, Any] = {VECTOR_NAME: point.vector}
        if point.text_vector is not None:
            vectors[TEXT_VECTOR] = point.text_vector
        if point.sparse:
            vectors[WORDS_VECTOR] = _edge().SparseVector(
                list(point.sparse.indices), list(point.sparse.values)
            )
        return vectors

    def _delete(self, where: Where) -> None:
        """Delete the points matching ``where``, and note whether there were any (every write of
        an item deletes its other versions, mostly none): their space is given back later."""
        qe = _edge()
        found = (self._deleted and self._idf_stale) or self._count(where) > 0
        self._require_shard().update(qe.UpdateOperation.delete_points_by_filter(self._filter(where)))
        if found:
            self._deleted = self._idf_stale = True

    def _set_state(self, where: Where, state: str) -> None:
        qe = _edge()
        op = qe.UpdateOperation.set_payload_by_filter(self._filter(where), {"state": state}, key="metadata")
        self._require_shard().update(op)

    def _set_payload(self, point_ids: Sequence[str], values: dict[str, Any], key: str | None) -> None:
        qe = _edge()
        has_ids = qe.Filter(must=[qe.HasIdCondition({uuid.UUID(pid) for pid in point_ids})])
        op = qe.UpdateOperation.set_payload_by_filter(has_ids, values, key=key)
        self._check_room()
        self._require_shard().update(op)

    def _retrieve(self, point_ids: Sequence[str]) -> list[StoredPoint]:
        records = self._require_shard().retrieve([uuid.UUID(pid) for pid in point_ids], True, False)
        return [StoredPoint(str(r.id), dict(r.payload or {})) for r in records]

    def _create_text_index(self, key: str) -> None:
        qe = _edge()
        params = qe.TextIndexParams(tokenizer=qe.TokenizerType.Multilingual, lowercase=True)
        self._require_shard().update(qe.UpdateOperation.create_field_index(key, params))

    def _count(self, where: Where) -> int:
        qe = _edge()
        return int(self._require_shard().count(qe.CountRequest(exact=True, filter=self._filter(where))))

    def _search_params(self, graph: bool = False) -> Any:
        """Exact below the index threshold; else the beam for the collection's size, and the
        int8 copy's best ``oversampling`` × k rescored with the full vectors. ``graph``: the
        walk of the graph vector (its beam only), whose candidates the ``clasp`` stage rescores."""
        qe = _edge()
        if not self._indexed:
            return qe.SearchParams(exact=True)
        ef = self.options.search_ef(self._indexed_points, graph=graph)
        if graph:  # full graph vectors (no int8 copy); the ``clasp`` stage rescores
            return qe.SearchParams(hnsw_ef=ef)
        quant = qe.QuantizationSearchParams(rescore=True, oversampling=self.options.oversampling)
        return qe.SearchParams(hnsw_ef=ef, quantization=quant)

    def _graph_stage(self, vector: Sequence[float], limit: int, flt: Any) -> list[Any] | None:
        """The prefetch of ``oversampling`` × ``limit`` candidates from the query-aware graph,
        or None when the collection has none (or searches exactly)."""
        if self._metric is None or not self._indexed:
            return None
        qe = _edge()
        pool = max(limit, math.ceil(self.options.oversampling * limit))
        walk = qe.Query.Nearest(
            self._metric.query(np.asarray(vector, np.float32)).tolist(), using=GRAPH_VECTOR
        )
        return [qe.Prefetch(pool, walk, params=self._search_params(graph=True), filter=flt)]

    def _query(
        self, vector: list[float], limit: int, where: Where, score_threshold: float | None
    ) -> list[StoredPoint]:
        qe = _edge()
        flt = self._filter(where)
        stages = self._graph_stage(vector, limit, flt)
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector, using=VECTOR_NAME),
            prefetches=stages,
            filter=flt,
            with_payload=True,
            score_threshold=score_threshold,
            params=None if stages else self._search_params(),
        )
        found = self._require_shard().query(request)
        return [StoredPoint(str(p.id), dict(p.payload or {}), score=float(p.score)) for p in found]

    def _query_hybrid(
        self, query: HybridQuery, limit: int, prefetch: int, where: Where, score_threshold: float | None
    ) -> list[StoredPoint]:
        qe = _edge()
        if query.words and self._idf_stale:
            self._words_counted_again()
        flt, params = self._filter(where), self._search_params()
        words = qe.SparseVector(list(query.words.indices), list(query.words.values))
        graph = self._graph_stage(query.clasp, prefetch, flt)
        stages = [
            qe.Prefetch(prefetch, qe.Query.Nearest(query.clasp, using=VECTOR_NAME), prefetches=graph,
                        params=None if graph else params, filter=flt, score_threshold=score_threshold),
            qe.Prefetch(prefetch, qe.Query.Nearest(query.text, using=TEXT_VECTOR), params=params, filter=flt),
        ]  # fmt: skip
        if query.words:
            stages.append(qe.Prefetch(prefetch, qe.Query.Nearest(words, using=WORDS_VECTOR), filter=flt))
        request = qe.QueryRequest(
            limit=limit,
            prefetches=stages,
            query=qe.Fusion.Rrf(k=query.k, weights=list(query.weights[: len(stages)])),
            filter=flt,
            with_payload=True,
            with_vector=[VECTOR_NAME],
        )
        found = self._require_shard().query(request)
        return [replace(point_from_record(p, True), score=float(p.score)) for p in found]

    def _scroll(
        self, where: Where, limit: int, offset: str | None, with_vectors: bool
    ) -> tuple[list[StoredPoint], str | None]:
        qe = _edge()
        request = qe.ScrollRequest(
            offset=uuid.UUID(offset) if offset else None,
            limit=limit,
            filter=self._filter(where),
            with_payload=True,
            with_vector=with_vectors,
        )
        records, next_offset = self._require_shard().scroll(request)
        points = [point_from_record(r, with_vectors) for r in records]
        return points, None if next_offset is None else str(next_offset)

    # ----- index policy

    def _end_bulk(self) -> None:
        self.optimize()

    def optimize(self, *, force: bool = False) -> bool:
        """Build HNSW indexes when the collection reached ``index_threshold`` (or ``force``);
        below it, give back the space of deleted points (:meth:`_reclaim`).

        Blocking (with the defaults about 45 s per 100k points on 2 busy cores). Returns True
        when indexes were built.
        """
        self._check_open()
        if self._shard is None:
            return False
        self._shard.flush()
        n = self._count(Where())
        self._unindexed = 0
        if n < self.options.index_threshold and not force:
            self._indexed = False
            if self._deleted:
                self._reclaim()
            return False
        self._clear_builders()
        try:
            self._check_room(more=_disk_bytes(self._dir / _SHARD))  # new segments beside the old
        except StoreFullError as exc:  # the points are stored; searches stay exact where unindexed
            log.warning("not building the HNSW index of %r: %s", self.collection, exc)
            return False
        log.info("building HNSW indexes of %r (%d points)", self.collection, n)
        self._use_indexing_kb(self._graph_kb())
        self._deleted = False  # the engine's optimizers vacuum too
        self._require_shard().optimize()
        self._require_shard().flush()
        self._indexed = True
        self._indexed_points = n
        return True

    def _reclaim(self) -> None:
        """Give back the space of deleted points, below the index threshold: Edge keeps a
        deleted point's vectors and payload in its segment (a store of 1,500 points, one item of
        500 of them rewritten 100 times, took 91 MB of segments where a fresh one took 4), until
        its vacuum rewrites the segment (:class:`EdgeOptions`). With the indexing threshold at
        :data:`_NEVER_INDEX_KB` the new segment is as ingest makes them: no graph, no int8 copy,
        searched exactly. The engine writes it beside the old and swaps them (a run cut off
        leaves the old), so the disk must have room for it, as for an index build."""
        self._deleted = False
        self._clear_builders()
        started = time.perf_counter()
        try:
            self._check_room(more=_disk_bytes(self._dir / _SHARD))
            self._use_indexing_kb(_NEVER_INDEX_KB)
            if not self._require_shard().optimize():
                return
            self._require_shard().flush()
        except StoreError as exc:  # the points are fine (a full disk...): their space stays for now
            if self._shard is None:  # the shard could not be opened again: nothing more works
                raise
            log.warning("not giving back the space of deleted points of %r: %s", self.collection, exc)
            return
        took = time.perf_counter() - started
        log.info("gave back the space of deleted points of %r (%.1f s)", self.collection, took)

    def _clear_builders(self) -> None:
        """Remove what an optimization cut off (kill, power loss) left in the shard's
        ``temp_segments``: the engine builds a segment there and moves it to ``segments`` once
        complete, and leaves one it did not finish (138 MB stayed after a vacuum of 70k points
        was killed, through later opens and vacuums). Called just before the engine optimizes:
        it builds nothing meanwhile (only inside ``optimize``, which blocks, and this store holds
        the collection's lock)."""
        temp = self._dir / _SHARD / "temp_segments"
        for leftover in temp.iterdir() if temp.is_dir() else ():
            log.info(
                "removing %r, left by an optimization of %r that was cut off", str(leftover), self.collection
            )
            shutil.rmtree(leftover, ignore_errors=True)

    def _graph_kb(self) -> int:
        """The collection's own indexing threshold: its full-scan threshold (one value, written
        when it was made: a segment gets a graph where searches would stop scanning it), else
        the one of the options."""
        hnsw = self._engine_config().get("hnsw_config") or {}
        kb = hnsw.get("full_scan_threshold")
        if isinstance(kb, int) and 0 < kb < _NEVER_INDEX_KB:
            return kb
        return self._segment_index_kb(self.require_collection().dim)

    def _engine_config(self) -> dict[str, Any]:
        """The shard's settings as the engine keeps them (``edge_config.json``)."""
        file = self._dir / _SHARD / _ENGINE_CONFIG
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(self._damaged(f"{_ENGINE_CONFIG} cannot be read ({_first_line(exc)})")) from exc
        if not isinstance(data, dict):
            raise StoreError(self._damaged(f"{_ENGINE_CONFIG} is not a JSON object"))
        return data

    def _use_indexing_kb(self, kb: int) -> None:
        """Give the engine the indexing threshold ``kb`` (KiB of vectors in a segment): it reads
        it only when it opens a shard, so the shard is closed, its settings file rewritten (whole,
        under this store's lock) and the shard opened again (0.5 s at 100k points); a no-op
        where the shard has it. A run cut off here leaves one threshold or the other, and the
        next :meth:`optimize` or :meth:`_reclaim` sets the one it needs."""
        data = self._engine_config()
        optimizers = data.get("optimizers") or {}
        if optimizers.get("indexing_threshold") == kb:
            return
        data["optimizers"] = {**optimizers, "indexing_threshold": kb}
        file = self._dir / _SHARD / _ENGINE_CONFIG

        def rewrite() -> None:
            try:
                _write_durably(file, json.dumps(data))
            except OSError as exc:
                raise self._write_failed(file, exc) from exc

        self._reopen_shard(rewrite)

    def _words_counted_again(self) -> None:
        """Open the shard again, so that the IDF of the ``words`` ranking counts the points
        that are there: Qdrant Edge 0.9 keeps counting deleted points' words until it opens the
        shard (a span that alone said a word deleted items said fell from 1st to last of the
        words ranking of a process that deleted them; a new process ranked it first). Once,
        before the first search with words after a delete (0.5 s at 100k points). In an
        indexed collection the segments built before keep the count until an index build
        rewrites them (README)."""
        with self._gate.exclusive():
            if self._idf_stale:  # (another thread may have opened it again meanwhile)
                log.debug("opening the shard of %r again: points were deleted", self.collection)
                self._reopen_shard()

    def _reopen_shard(self, between: Callable[[], None] | None = None) -> None:
        """Flush and close the shard, run ``between`` (a settings rewrite), and open the shard
        again, while no other engine call runs (those of other threads wait). Flushed or not,
        ``between`` done or not, the shard opens again; where it cannot, a caller holding it is
        told so (not "damaged" by the closed engine) and the error raised."""
        with self._gate.exclusive():
            shard = self._require_shard()
            try:
                try:
                    shard.flush()
                finally:
                    shard.close()
            except OSError as exc:  # a full disk (the engine's own errors are StoreErrors)
                raise self._write_failed(self._dir / _SHARD, exc) from exc
            else:
                if between is not None:
                    between()
            finally:
                try:
                    shard.swap(self._reopened().engine)
                    self._idf_stale = False
                except BaseException as exc:
                    shard.swap(_Unopened(f"{self._dir} could not be opened again ({_first_line(exc)})"))
                    self._shard = None
                    raise

    def _reopened(self) -> _Shard:
        try:
            return self._load_shard()
        except _Damage as exc:
            self._damage = self._damaged(str(exc))
            raise StoreError(self._damage) from exc

    def _write_failed(self, file: Path, exc: OSError) -> StoreError:
        """What an OS error writing ``file`` of the store means, and the remedy."""
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StoreError(_refused(self.path, exc.errno, exc))
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _full_disk(self.location, _first_line(exc))
        return StoreError(
            f"cannot write {str(file)!r} of the embedded store ({_first_line(exc)}); check the disk, "
            "and run the command again"
        )

    @property
    def query_metric(self) -> QueryMetric | None:
        """The collection's graph space (None: the plain graph of the model's vectors)."""
        return self._metric

    @property
    def segment_count(self) -> int:
        """How many segments the shard holds now (each is searched, and indexed, on its own)."""
        return int(self._require_shard().info().segments_count)

    @property
    def indexed(self) -> bool:
        """True when searches use the HNSW graph (approximate) rather than exact scoring."""
        return self._indexed

    def _query_exact(self, vector: list[float], limit: int, where: Where) -> list[StoredPoint]:
        """Exact search regardless of the index (for recall checks)."""
        was = self._indexed
        self._indexed = False
        try:
            return self._query(vector, limit, where, None)
        finally:
            self._indexed = was
