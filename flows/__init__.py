"""Prefect flows that run :mod:`clasp_ingest.pipeline` on a schedule, restartably.

``ingest_source`` is the flow (deployed by ``prefect.yaml``); ``prefect_runtime`` gives quiet,
fast local runs against Prefect's ephemeral server. Importing this package is light: Prefect
is imported on first attribute access (so ``clasp-ingest --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clasp_ingest.flows.gpu import embed_batch
    from clasp_ingest.flows.ingest import ingest_media, ingest_source, list_source
    from clasp_ingest.flows.logs import run_logs
    from clasp_ingest.flows.resources import ModelSpec, StoreSpec, cached_model, cached_store
    from clasp_ingest.flows.runtime import RuntimeInfo, listen_progress, prefect_runtime

__all__ = [
    "ModelSpec",
    "RuntimeInfo",
    "StoreSpec",
    "cached_model",
    "cached_store",
    "embed_batch",
    "ingest_media",
    "ingest_source",
    "list_source",
    "listen_progress",
    "prefect_runtime",
    "run_logs",
]

_LAZY = {
    "embed_batch": "clasp_ingest.flows.gpu",
    "ingest_media": "clasp_ingest.flows.ingest",
    "ingest_source": "clasp_ingest.flows.ingest",
    "list_source": "clasp_ingest.flows.ingest",
    "ModelSpec": "clasp_ingest.flows.resources",
    "StoreSpec": "clasp_ingest.flows.resources",
    "cached_model": "clasp_ingest.flows.resources",
    "cached_store": "clasp_ingest.flows.resources",
    "listen_progress": "clasp_ingest.flows.runtime",
    "RuntimeInfo": "clasp_ingest.flows.runtime",
    "run_logs": "clasp_ingest.flows.logs",
    "prefect_runtime": "clasp_ingest.flows.runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'clasp_ingest.flows' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
