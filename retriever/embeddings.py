"""``ClaspTextEmbeddings``: a CLASP model's text tower as LangChain ``Embeddings``.

With it, langchain-qdrant's ``QdrantVectorStore`` can query collections written by
clasp-ingest (``vector_name="clasp"``; the payload already uses its layout).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

from clasp_ingest.model.base import AudioTextEncoder

__all__ = ["ClaspTextEmbeddings"]

_DEFAULT_MODEL = "clasp-mini"


class ClaspTextEmbeddings(Embeddings):
    """Embeds text with a CLASP model's text tower (L2-normalised, the model's dimension).

    Pass a loaded ``model``, or a ``model_name`` (preset or directory; default
    ``$CLASP_MODEL``, else ``clasp-mini``) that is loaded on first use.
    """

    def __init__(
        self,
        model: AudioTextEncoder | None = None,
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

    @property
    def model(self) -> AudioTextEncoder:
        """The model, loaded on first use."""
        with self._lock:
            if self._model is None:
                from clasp_ingest.model import load_model

                self._model = load_model(self.model_name, device=self.device, model_dir=self.model_dir)
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
        return self._encode(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]
