"""LangChain side: a retriever of audio spans, text embeddings, and span playback.

Names are imported on first use, so that ``clasp-ingest --help`` does not load LangChain.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clasp_ingest.retriever.audio import ClipOptions, save_span_audio, span_clip
    from clasp_ingest.retriever.embeddings import ClaspTextEmbeddings
    from clasp_ingest.retriever.retriever import ClaspRetriever, span_document
    from clasp_ingest.retriever.spans import Span, merge_spans

__all__ = [
    "ClaspRetriever",
    "ClaspTextEmbeddings",
    "ClipOptions",
    "Span",
    "merge_spans",
    "save_span_audio",
    "span_clip",
    "span_document",
]

_HOMES = {
    "ClaspRetriever": "retriever",
    "ClaspTextEmbeddings": "embeddings",
    "ClipOptions": "audio",
    "Span": "spans",
    "merge_spans": "spans",
    "save_span_audio": "audio",
    "span_clip": "audio",
    "span_document": "retriever",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
