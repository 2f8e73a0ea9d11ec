"""Prefect flows that run :mod:`clasp_ingest.pipeline` on a schedule, restartably.

``ingest_source`` is the flow (deployed by ``prefect.yaml``); ``prefect_runtime`` gives quiet,
fast local runs against Prefect's ephemeral server. Importing this package imports Prefect.
"""

from __future__ import annotations

from clasp_ingest.flows.ingest import embed_batch, ingest_media, ingest_source, list_source
from clasp_ingest.flows.resources import ModelSpec, StoreSpec, cached_model, cached_store
from clasp_ingest.flows.runtime import listen_progress, prefect_runtime

__all__ = [
    "ModelSpec",
    "StoreSpec",
    "cached_model",
    "cached_store",
    "embed_batch",
    "ingest_media",
    "ingest_source",
    "list_source",
    "listen_progress",
    "prefect_runtime",
]
