"""Copy a collection between stores: the embedded store to a Qdrant server or a local folder.

A Qdrant server (``http(s)://...``) makes the collection visible to the Qdrant dashboard, to
many processes, and to langchain-qdrant; a local qdrant-client folder is readable by
``QdrantClient(path=...)`` (and so by langchain-qdrant) without a server.
"""

from __future__ import annotations

import errno
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from clasp_ingest.errors import CollectionMismatchError, ConfigError, StoreError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import (
    CLI_NAMES,
    STATE_COMPLETE,
    STATE_WRITING,
    CollectionIdentity,
    QdrantStore,
    StoredPoint,
    check_collection_name,
)

__all__ = ["ExportReport", "export_collection", "export_to", "open_export_target"]

log = get_logger("store.export")

_MEMORY = ":memory:"
#: What an export that stopped part-way leaves in its target.
_PARTIAL = "items not yet copied whole are marked 'writing' there, and no search returns them"
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d+$")
#: Points a page when reading the target's payloads: qdrant-client's local mode sorts every id
#: it holds for each page (16,000 points: 1.1 CPU-s in pages of 256, 0.55 s in pages of 4,096).
_SCAN_PAGE = 4096
#: How ``store export`` names its target, for the target store's messages.
_TARGET = replace(
    CLI_NAMES,
    url="--to",
    api_key="--api-key / CLASP_EXPORT_API_KEY",
    store="--to-collection / --to",
    name="--to-collection",
)


@dataclass(frozen=True)
class ExportReport:
    """What an export did: points copied, the target collection and store, its point count, and
    the points removed from the target (item versions the source no longer holds complete)."""

    exported: int
    collection: str
    target: str
    target_points: int
    removed: int = 0


#: One write of an item version: ``(media_id, version, write_id)`` of a point's payload
#: (``write_id`` "" for points written before writes had ids).
_Version = tuple[str, str, str]


def export_collection(
    source: QdrantStore,
    target: QdrantStore,
    *,
    batch_size: int = 512,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make ``target`` a copy of ``source`` (ids, vectors, payloads); returns the points copied.

    ``on_progress(read, total)`` is called before the first batch and after each one.

    The target collection is created for the source's model (id, dimension and source are
    recorded like clasp-ingest's own collections, with the word vectors when the source has
    them, and an embedded source's query-aware graph space when the target is embedded too),
    or must already be for it (``CollectionMismatchError`` otherwise, before anything is
    written). The copy mirrors the source's media items: points being written in the source
    (state ``"writing"``) are not copied, and every point of an item write the source does
    not hold complete is deleted from the target afterwards (an item deleted, changed or
    written again since the last export). Copying again is idempotent (same point ids).

    An item write new to the target is copied as ``"writing"`` and marked complete once every
    point is copied, so an export that stops part-way (a full disk, a lost server, Ctrl-C)
    leaves no item there that searches return half; running it again completes the copy. A
    target whose disk fills up raises a :class:`StoreError` that names it and the remedy.
    """
    return _mirror(source, target, batch_size, on_progress)[0]


def _mirror(
    source: QdrantStore,
    target: QdrantStore,
    batch_size: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[int, int]:
    """:func:`export_collection`; returns the points copied and the points removed from the target."""
    identity = source.identity
    if identity is None:
        raise StoreError(
            f"nothing to export: collection {source.collection!r} does not exist in the "
            f"{source.backend} store {source.location!r}; check --qdrant-path and --collection"
        )
    _check_target(source, target, identity)
    target.ensure_collection(
        identity.model_id,
        identity.dim,
        source=identity.source,
        text_dim=identity.text_dim,
        query_metric=getattr(source, "query_metric", None),  # an embedded source's graph space
    )
    try:
        copied, complete = _copy_points(source, target, batch_size, on_progress or (lambda done, total: None))
        removed = _remove_other_versions(target, complete)
    except BaseException as exc:
        if _disk_full(exc):
            raise StoreError(
                f"the export to {target.location!r} stopped part-way: the disk there is full ({exc}); "
                "free space on it (or export elsewhere, --to) and run the export again, which completes "
                f"the copy ({_PARTIAL})"
            ) from exc
        log.warning(
            "the export to %s stopped part-way (%s): %s; running the export again completes the copy",
            target.location, exc, _PARTIAL,
        )  # fmt: skip
        raise
    log.info(
        "exported %d points of %r to %s; removed %d points there of item versions the source no "
        "longer holds", copied, source.collection, target.location, removed,
    )  # fmt: skip
    return copied, removed


def _check_target(source: QdrantStore, target: QdrantStore, identity: CollectionIdentity) -> None:
    """Refuse a target collection made for another model (or without the source's word vectors)."""
    current = target.identity
    if current is None or (current == identity and identity.text_dim in (None, current.text_dim)):
        return
    held = f"{current.dim}-d vectors of model {current.model_id!r}"
    if current == identity:  # the same model, but the source's word vectors do not fit
        held += f" {'without' if current.text_dim is None else 'with other'} word vectors"
    raise CollectionMismatchError(
        f"cannot export {source.collection!r} ({identity.dim}-d vectors of model {identity.model_id!r}) "
        f"to collection {target.collection!r} in {target.location!r}: it holds {held}; export to "
        "another collection (--to-collection NAME) or target (--to), or delete that collection there"
    )


def _copy_points(
    source: QdrantStore, target: QdrantStore, batch_size: int, report: Callable[[int, int], None]
) -> tuple[int, set[_Version]]:
    """Upsert the source's points that are not being written; returns how many, and the item
    versions the source holds complete (every point ``"complete"``, or the ``"empty"`` marker).
    ``report(read, total)`` follows the points read.

    Points come in id order, the items' points interleaved: a complete point the target does not
    hold complete yet goes in as ``"writing"``, and its write is marked complete only after the
    last point is in (before, a full disk left 31 items of 40 half-copied, each marked complete
    and returned by searches). Points the target holds complete stay so: a re-export does not
    hide the items it already has while it runs."""
    read, copied, total = 0, 0, source.count()
    seen: set[_Version] = set()
    writing: set[_Version] = set()
    held_back: dict[_Version, list[str]] = {}  # ids copied as "writing", to be marked complete at the end
    report(read, total)
    batch: list[StoredPoint] = []
    with target.bulk():
        for point in source.iter_points(batch_size=batch_size, with_vectors=True):
            version, state = _version_of(point)
            (writing if state == STATE_WRITING else seen).add(version)
            if state != STATE_WRITING:
                batch.append(point)
            read += 1
            if read % batch_size == 0:
                _upsert_held_back(target, batch, held_back)
                copied, batch = copied + len(batch), []
                report(read, total)
        if read % batch_size:
            _upsert_held_back(target, batch, held_back)
            copied += len(batch)
            report(read, total)
        complete = seen - writing
        _complete_writes(target, [ids for version, ids in held_back.items() if version in complete])
    return copied, complete


def _upsert_held_back(target: QdrantStore, batch: list[StoredPoint], held: dict[_Version, list[str]]) -> None:
    """Upsert ``batch``, its complete points that the target does not hold complete as
    ``"writing"``; adds the ids of those to ``held``, by item write."""
    have = {p.id for p in target.points([p.id for p in batch]) if _version_of(p)[1] == STATE_COMPLETE}
    points: list[StoredPoint] = []
    for point in batch:
        version, state = _version_of(point)
        if state == STATE_COMPLETE and point.id not in have:
            meta = {**point.payload.get("metadata", {}), "state": STATE_WRITING}
            point = replace(point, payload={**point.payload, "metadata": meta})
            held.setdefault(version, []).append(point.id)
        points.append(point)
    target.upsert_points(points)


def _complete_writes(target: QdrantStore, writes: list[list[str]], chunk: int = 1024) -> None:
    """Mark these item writes' points of the target complete (each list: the ids of one write
    copied as ``"writing"``, which the source holds complete), whole writes a request, about
    ``chunk`` ids (a longer write alone): an export stopped between two requests leaves each
    item wholly complete or wholly hidden (ids cut into plain slices of 1,024 left an item
    complete but for one span, and searches returned it). A qdrant-client folder saves each
    point on its own, so one request is not atomic there either.

    By id, not by a filter on the writes: a qdrant-client folder checks a filter on every point
    it holds, in Python, so a request per 256 writes made the export quadratic (16,000 one-span
    items: 66 CPU-s of 74 marking; Qdrant Edge 1.6 s). Ids are looked up: the work grows with the
    points marked (3-4 s; Edge 0.2 s). Keeping the ids costs about 100 bytes a point of long
    items, up to about 530 for one-span items (50 MiB per 100k)."""
    request: list[str] = []
    for ids in [*writes, []]:
        if request and (not ids or len(request) + len(ids) > chunk):
            # the store's own primitive, with its retries: export is its sibling
            mark = partial(target._set_payload, request, {"state": STATE_COMPLETE}, "metadata")
            target._retry(mark, "marking copied items complete")
            request = []
        request += ids


def _disk_full(exc: BaseException) -> bool:
    """A full disk: qdrant-client's local folder (SQLite's ``SQLITE_FULL``) or a file write."""
    if isinstance(exc, sqlite3.OperationalError):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _version_of(point: StoredPoint) -> tuple[_Version, str]:
    meta = point.payload.get("metadata", {})
    media_id, version, write_id = (str(meta.get(key, "")) for key in ("media_id", "version", "write_id"))
    return (media_id, version, write_id), str(meta.get("state", ""))


def _remove_other_versions(target: QdrantStore, keep: set[_Version]) -> int:
    """Delete every point of ``target`` whose item write is not in ``keep``; returns how many."""
    stale = {_version_of(point)[0] for point in target.iter_points(batch_size=_SCAN_PAGE)} - keep
    kept: dict[tuple[str, str], list[str]] = {}
    for media_id, version, write_id in keep:
        if write_id:
            kept.setdefault((media_id, version), []).append(write_id)
    removed = 0
    for media_id, version, write_id in sorted(stale):
        removed += target.delete_write(media_id, version, write_id, keep=kept.get((media_id, version), ()))
    return removed


def open_export_target(
    to: str, *, collection: str, api_key: str | None = None, prefer_grpc: bool = False
) -> QdrantStore:
    """The store named by ``to``: an ``http(s)://`` Qdrant server, ``:memory:``, or a folder.

    A folder is opened with qdrant-client's local mode (created when missing); it must be
    empty or already a qdrant-client folder: an embedded (Edge) store or another non-empty
    folder is refused (``ConfigError``). ``api_key`` and ``prefer_grpc`` apply to servers only.
    """
    from clasp_ingest.store import open_store

    if "://" in to:
        url = _server_url(to)
        store = open_store(
            url=url, api_key=api_key, prefer_grpc=prefer_grpc, collection=collection, names=_TARGET
        )
    elif to == _MEMORY:
        store = open_store(url=_MEMORY, collection=collection, names=_TARGET)
    else:
        if api_key or prefer_grpc:
            log.warning("--api-key and --grpc apply to a Qdrant server; ignored for the folder %s", to)
        store = open_store(path=_export_folder(to), backend="client", collection=collection, names=_TARGET)
    return store


def _server_url(to: str) -> str:
    scheme = to.split("://", 1)[0].lower()
    if scheme not in {"http", "https"}:
        raise ConfigError(
            f"cannot export to {to!r}: a Qdrant server URL starts with http:// or https:// "
            "(e.g. http://localhost:6333); for a local folder give its path"
        )
    return to


def _export_folder(to: str) -> Path:
    if _HOST_PORT.match(to) and not Path(to).exists():
        raise ConfigError(
            f"--to {to!r} looks like host:port; write the server URL as http://{to} "
            "(or give a folder path that does not look like one, e.g. ./name)"
        )
    folder = Path(to).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"cannot export to {to!r}: it is a file; give a folder (new, empty, or qdrant-client's)"
        )
    if not folder.exists() or is_client_folder(folder) or not any(folder.iterdir()):
        return folder
    kind = "an embedded (Qdrant Edge) store" if is_edge_folder(folder) else "a non-empty folder"
    raise ConfigError(
        f"cannot export to {to!r}: it is {kind}, not a qdrant-client folder; give a new or empty "
        "folder, or a Qdrant server URL (http://host:6333)"
    )


def is_client_folder(path: Path) -> bool:
    """True for a folder that qdrant-client's local mode (``QdrantClient(path=...)``) wrote."""
    return (path / "meta.json").is_file()


def is_edge_folder(path: Path) -> bool:
    """True for a folder holding embedded (Qdrant Edge) collections of clasp-ingest."""
    return any(child.is_file() for child in path.glob("*/collection.json"))


def export_to(
    source: QdrantStore,
    to: str,
    *,
    collection: str | None = None,
    api_key: str | None = None,
    prefer_grpc: bool = False,
    batch_size: int = 512,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Copy ``source``'s collection to ``to`` (see :func:`open_export_target`) as ``collection``
    (default: the source's name), mirroring it (see :func:`export_collection`).

    The source must hold the collection, and ``collection`` must be a valid name (both checked
    before the target is opened or created). Errors name the ``store export`` options
    (``--to``, ``--to-collection``, ``--api-key``).
    """
    source.require_collection()
    name = source.collection if collection is None else collection
    check_collection_name(name, option="--to-collection")
    with open_export_target(to, collection=name, api_key=api_key, prefer_grpc=prefer_grpc) as target:
        copied, removed = _mirror(source, target, batch_size, on_progress)
        return ExportReport(copied, target.collection, target.location, target.count(), removed)
