"""Copy a collection between stores (embedded → server when one machine is not enough)."""

from __future__ import annotations

from clasp_ingest.errors import StoreError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import QdrantStore

__all__ = ["export_collection"]

log = get_logger("store.export")


def export_collection(source: QdrantStore, target: QdrantStore, *, batch_size: int = 512) -> int:
    """Copy every point of ``source`` (ids, vectors, payloads) into ``target``; returns the count.

    The target collection is created for the source's model, or must already be for it
    (``CollectionMismatchError`` otherwise). Copying again is idempotent (same point ids).
    """
    identity = source.identity
    if identity is None:
        raise StoreError(
            f"nothing to export: collection {source.collection!r} does not exist in the source store; "
            "check --qdrant-path and --collection"
        )
    target.ensure_collection(identity.model_id, identity.dim, source=identity.source)
    copied = 0
    batch = []
    with target.bulk():
        for point in source.iter_points(batch_size=batch_size, with_vectors=True):
            batch.append(point)
            if len(batch) == batch_size:
                target.upsert_points(batch)
                copied += len(batch)
                batch = []
        if batch:
            target.upsert_points(batch)
            copied += len(batch)
    log.info("exported %d points of %r", copied, source.collection)
    return copied
