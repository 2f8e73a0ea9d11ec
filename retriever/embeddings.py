"""``ClaspTextEmbeddings``: a CLASP model's text side as LangChain ``Embeddings``.

With it, langchain-qdrant's ``QdrantVectorStore`` can query collections written by
clasp-ingest (``vector_name="clasp"``; the payload already uses its layout). Only the text
side of the model loads (:func:`~clasp_ingest.model.load_query_model`: no torch for clasp-mini).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np
from clasp_ingest.retriever.loading import query_model_for, store_names
from langchain_core.embeddings import Embeddings

from clasp_ingest.model.base import QueryEncoder
from clasp_ingest.store.base import DEFAULT_COLLECTION

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from clasp_ingest.config import Settings
    from clasp_ingest.store.base import QdrantStore

__all__ = ["ClaspTextEmbeddings"]

_DEFAULT_MODEL = "clasp-mini"

log = logging.getLogger("clasp_ingest.retriever")


class ClaspTextEmbeddings(Embeddings):
    """Embeds text with a CLASP model's text side (L2-normalised, the model's vector width).

    Pass a loaded ``model`` (anything with ``encode_text``), or a ``model_name`` (preset or
    directory; default ``$CLASP_MODEL``, else ``clasp-mini``) whose text side loads on first
    use. To embed queries for an existing collection, let the collection name its model:
    :meth:`from_client` (a ``QdrantClient`` you hold, e.g. for langchain-qdrant),
    :meth:`from_path`, :meth:`from_url`, :meth:`from_settings` or :meth:`from_store`.
    """

    def __init__(
        self,
        model: QueryEncoder | None = None,
        *,
        model_name: str | None = None,
        device: str = "auto",
        model_dir: Path | None = None,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = (
            model.model_id
            if model is not None
            else model_name or os.environ.get("CLASP_MODEL") or _DEFAULT_MODEL
        )
        self.device = device
        self.model_dir = model_dir
        self.batch_size = batch_size
        self._model = model
        self._lock = threading.Lock()
        self._said_documents = False

    # ----- from a collection's model

    @classmethod
    def from_store(
        cls,
        store: QdrantStore,
        *,
        model: str | None = None,
        device: str = "auto",
        model_dir: Path | None = None,
    ) -> Self:
        """The query model of ``store``'s collection (``model``: a preset or directory instead)."""
        return cls(query_model_for(store, model, device=device, model_dir=model_dir))

    @classmethod
    def from_client(
        cls,
        client: QdrantClient,
        collection: str = DEFAULT_COLLECTION,
        *,
        model: str | None = None,
        device: str = "auto",
        model_dir: Path | None = None,
    ) -> Self:
        """The query model of a collection reached through ``client`` (left open: it is yours)."""
        from clasp_ingest.store import ServerStore

        store = ServerStore(client, collection)
        return cls.from_store(store, model=model, device=device, model_dir=model_dir)

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        collection: str = DEFAULT_COLLECTION,
        *,
        model: str | None = None,
        device: str = "auto",
        model_dir: Path | None = None,
    ) -> Self:
        """The query model of a collection in an embedded store or a qdrant-client folder.

        The store is open only while the collection is read (one process at a time).
        """
        from clasp_ingest.store import open_store

        names = store_names("from_path")
        with open_store(path=Path(path).expanduser(), collection=collection, names=names) as store:
            return cls.from_store(store, model=model, device=device, model_dir=model_dir)

    @classmethod
    def from_url(
        cls,
        url: str,
        collection: str = DEFAULT_COLLECTION,
        *,
        api_key: str | None = None,
        model: str | None = None,
        device: str = "auto",
        model_dir: Path | None = None,
    ) -> Self:
        """The query model of a collection on a Qdrant server."""
        from clasp_ingest.store import open_store

        names = store_names("from_url")
        with open_store(url=url, api_key=api_key, collection=collection, names=names) as store:
            return cls.from_store(store, model=model, device=device, model_dir=model_dir)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Self:
        """The query model of the collection ``CLASP_*`` settings name (``CLASP_MODEL`` if set)."""
        from clasp_ingest.config import Settings
        from clasp_ingest.store import open_store

        cfg = settings if settings is not None else Settings.from_env()  # reads CLASP_*
        url = cfg.qdrant_url
        model = cfg.model if "model" in cfg.model_fields_set else None
        names = store_names("from_settings")
        with open_store(url=url, path=None if url else cfg.qdrant_path, api_key=cfg.qdrant_api_key,
                        prefer_grpc=cfg.qdrant_grpc, collection=cfg.collection,
                        names=names) as store:  # fmt: skip
            return cls.from_store(store, model=model, device=cfg.device, model_dir=cfg.model_dir)

    # ----- embedding

    @property
    def model(self) -> QueryEncoder:
        """The model's text side, loaded on first use."""
        with self._lock:
            if self._model is None:
                from clasp_ingest.model.query import load_query_model

                self._model = load_query_model(self.model_name, device=self.device, model_dir=self.model_dir)
            return self._model

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        parts = [
            self.model.encode_text(list(texts[i : i + self.batch_size]))
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts).astype(np.float32).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Texts embedded as queries are (the text side; no speech vectors). Said once per
        instance: a vector store's ``add_texts``/``add_documents`` into a CLASP collection puts
        text points among its spans (a reviewer's show notes then outranked every audio span
        for their own words, and ``store info`` counted them as spans)."""
        if texts and not self._said_documents:
            self._said_documents = True
            log.warning(
                "ClaspTextEmbeddings.embed_documents embeds text with the model's text side, as a query: "
                "added to a collection of speech vectors (add_texts, add_documents), such points outrank "
                "the audio for their own words; keep text in a collection of its own"
            )
        return self._encode(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]
