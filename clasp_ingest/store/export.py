"""Copy a collection between stores: the embedded store to a Qdrant server or a local folder.

A Qdrant server (``http(s)://...``) makes the collection visible to the Qdrant dashboard, to
many processes, and to langchain-qdrant; a local qdrant-client folder is readable by
``QdrantClient(path=...)`` (and so by langchain-qdrant) without a server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clasp_ingest.errors import ConfigError, StoreError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import QdrantStore, StoredPoint

__all__ = ["ExportReport", "export_collection", "export_to", "open_export_target"]

log = get_logger("store.export")

_MEMORY = ":memory:"
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d+$")


@dataclass(frozen=True)
class ExportReport:
    """What an export did: points copied, the target collection and store, its point count."""

    exported: int
    collection: str
    target: str
    target_points: int


def export_collection(
    source: QdrantStore,
    target: QdrantStore,
    *,
    batch_size: int = 512,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Copy every point of ``source`` (ids, vectors, payloads) into ``target``; returns the count.

    ``on_progress(copied, total)`` is called before the first batch and after each one.

    The target collection is created for the source's model (id, dimension and source are
    recorded like clasp-ingest's own collections, with the word vectors when the source has
    them, and an embedded source's query-aware graph space when the target is embedded too),
    or must already be for it (``CollectionMismatchError`` otherwise). Copying again is
    idempotent (same point ids).
    """
    identity = source.identity
    if identity is None:
        raise StoreError(
            f"nothing to export: collection {source.collection!r} does not exist in the "
            f"{source.backend} store {source.location!r}; check --qdrant-path and --collection"
        )
    target.ensure_collection(
        identity.model_id,
        identity.dim,
        source=identity.source,
        text_dim=identity.text_dim,
        query_metric=getattr(source, "query_metric", None),  # an embedded source's graph space
    )
    copied, total = 0, source.count()
    report = on_progress or (lambda done, total: None)
    report(copied, total)
    batch: list[StoredPoint] = []
    with target.bulk():
        for point in source.iter_points(batch_size=batch_size, with_vectors=True):
            batch.append(point)
            if len(batch) == batch_size:
                target.upsert_points(batch)
                copied += len(batch)
                batch = []
                report(copied, total)
        if batch:
            target.upsert_points(batch)
            copied += len(batch)
            report(copied, total)
    log.info("exported %d points of %r to %s", copied, source.collection, target.location)
    return copied


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
        return open_store(
            url=_server_url(to), api_key=api_key, prefer_grpc=prefer_grpc, collection=collection
        )
    if to == _MEMORY:
        return open_store(url=_MEMORY, collection=collection)
    if api_key or prefer_grpc:
        log.warning("--api-key and --grpc apply to a Qdrant server; ignored for the folder %s", to)
    folder = _export_folder(to)
    return open_store(path=folder, backend="client", collection=collection)


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
    """Copy ``source``'s collection to ``to`` (see :func:`open_export_target`) as ``collection``.

    The source must hold the collection (checked before the target is opened or created).
    """
    source.require_collection()
    name = collection or source.collection
    with open_export_target(to, collection=name, api_key=api_key, prefer_grpc=prefer_grpc) as target:
        copied = export_collection(source, target, batch_size=batch_size, on_progress=on_progress)
        return ExportReport(copied, target.collection, target.location, target.count())
