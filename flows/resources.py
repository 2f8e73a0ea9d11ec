"""Per-process caches of the expensive resources tasks share: the model and the store.

A worker process loads a model once (keyed by name, device, dtype, model dir) and opens a
store once (keyed by URL/path and collection), however many task runs use them. The specs
are small frozen dataclasses, so they travel to Dask/Ray workers, which build their own.
Secrets (the Qdrant API key) never travel: they are read from ``CLASP_QDRANT_API_KEY`` in
the process that opens the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clasp_ingest.errors import ConfigError

if TYPE_CHECKING:
    from clasp_ingest.model.base import AudioTextEncoder
    from clasp_ingest.store import QdrantStore, StoreNames

__all__ = [
    "ModelSpec",
    "StoreSpec",
    "cached_model",
    "cached_store",
    "clear_models",
    "held_store",
    "model_identity",
    "release_store",
]

log = logging.getLogger("clasp_ingest.flows")

_LOCK = threading.Lock()
_MODELS: dict[ModelSpec, AudioTextEncoder] = {}
_STORES: dict[StoreSpec, QdrantStore] = {}
_HOLDERS: dict[StoreSpec, int] = {}  # flow runs of this process using each store now


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load, and where it runs."""

    name: str
    device: str = "auto"
    dtype: str = "auto"
    model_dir: str | None = None
    torch_threads: int | None = None  # CPU threads (torch or ONNX Runtime); None = one less than the cores
    engine: str = "auto"  # "auto": ONNX Runtime on the CPU for models it runs (clasp-mini), else torch

    def __post_init__(self) -> None:
        from clasp_ingest.model.inference import check_runtime

        check_runtime(self.device, self.engine)  # a bad one fails the run at once, not every item


@dataclass(frozen=True)
class StoreSpec:
    """Which Qdrant collection to write: a server ``url`` or an embedded ``path``."""

    collection: str
    url: str | None = None
    path: str | None = None
    prefer_grpc: bool = False

    def __post_init__(self) -> None:
        if (self.url is None) == (self.path is None):
            raise ConfigError("give exactly one of a Qdrant url (--qdrant-url) or path (--qdrant-path)")

    def open(self) -> QdrantStore:
        from clasp_ingest.config import Settings
        from clasp_ingest.store import open_store

        api_key = Settings.from_env().qdrant_api_key if self.url else None
        return open_store(
            url=self.url,
            path=Path(self.path) if self.path else None,
            api_key=api_key,
            prefer_grpc=self.prefer_grpc,
            collection=self.collection,
            names=flow_names(),
        )


def flow_names() -> StoreNames:
    """How a flow run's messages name what the user changes: its parameters (a flow cannot
    recreate a collection; the CLI does it once)."""
    from clasp_ingest.store import StoreNames

    return StoreNames(
        url="the flow's qdrant_url parameter, or CLASP_QDRANT_URL",
        api_key="CLASP_QDRANT_API_KEY",
        store="the flow's collection / qdrant_path / qdrant_url parameters",
        collection="the flow's collection parameter",
        recreate="once, with 'clasp-ingest ingest SOURCE --collection NAME --recreate'",
        model="the flow's model parameter set to {}",
        name="the flow's collection parameter, or CLASP_COLLECTION",
        path="the flow's qdrant_path parameter, or CLASP_QDRANT_PATH",
    )


def model_identity(spec: ModelSpec) -> tuple[str, int, str]:
    """``(model_id, vector width, source)`` of a preset or saved model, read from its config
    without loading weights. The width is what a collection stores: ``ModelConfig.vector_dim``
    (the text encoder's width, plus one coordinate for a model with a query bank, e.g. 385 for
    clasp-mini); the source (preset name, or the model folder's absolute path) is recorded
    with a new collection so that searches load the same model."""
    from clasp_ingest.model.query import resolve_model_config

    config, saved_dir = resolve_model_config(spec.name)
    source = str(saved_dir.resolve()) if saved_dir is not None else spec.name
    return config.model_id, config.vector_dim, source


def cached_model(spec: ModelSpec) -> AudioTextEncoder:
    """The model of ``spec``, loaded on first use in this process."""
    with _LOCK:
        model = _MODELS.get(spec)
        if model is None:
            from clasp_ingest.errors import ModelLoadError
            from clasp_ingest.model.inference import load_inference_model

            log.info("loading model %s on %s (once per process)", spec.name, spec.device)
            model_dir = Path(spec.model_dir) if spec.model_dir else None
            model = load_inference_model(
                spec.name, device=spec.device, dtype=spec.dtype, model_dir=model_dir,
                threads=spec.torch_threads, engine=spec.engine,
            )  # fmt: skip
            model_id, dim, _ = model_identity(spec)
            if (model.model_id, model.dim) != (model_id, dim):
                raise ModelLoadError(
                    f"model {spec.name!r} loaded as {model.model_id!r} ({model.dim}-d) but its config says "
                    f"{model_id!r} ({dim}-d); fix its config.json"
                )
            _MODELS[spec] = model
        return model


def clear_models() -> None:
    """Forget every cached model (frees its memory once nothing else holds it)."""
    with _LOCK:
        _MODELS.clear()


def cached_store(spec: StoreSpec) -> QdrantStore:
    """The store of ``spec``, opened on first use in this process."""
    with _LOCK:
        store = _STORES.get(spec)
        if store is None:
            store = _STORES[spec] = spec.open()
        return store


@contextmanager
def held_store(spec: StoreSpec) -> Iterator[QdrantStore]:
    """The store of ``spec`` for one flow run (:func:`cached_store`), closed when the last run of
    this process holding it ends: two runs on one store (a served deployment, threads) shared
    it, and the first to end closed it under the other ("the embedded store ... is closed")."""
    with _LOCK:
        _HOLDERS[spec] = _HOLDERS.get(spec, 0) + 1
    try:
        yield cached_store(spec)
    finally:
        with _LOCK:  # closed under the lock: a run starting now opens it anew, after the close
            _HOLDERS[spec] -= 1
            if _HOLDERS[spec] == 0:
                del _HOLDERS[spec]
                store = _STORES.pop(spec, None)
                if store is not None:
                    store.close()


def release_store(spec: StoreSpec) -> None:
    """Close and forget the store of ``spec`` (flushes an embedded store; frees its lock)."""
    with _LOCK:
        store = _STORES.pop(spec, None)
    if store is not None:
        store.close()
