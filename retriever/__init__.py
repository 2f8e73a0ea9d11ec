"""LangChain side: a retriever of audio spans, text embeddings, and span playback."""

from __future__ import annotations

from clasp_ingest.retriever.audio import save_span_audio
from clasp_ingest.retriever.embeddings import ClaspTextEmbeddings
from clasp_ingest.retriever.retriever import ClaspRetriever, span_document
from clasp_ingest.retriever.spans import Span, merge_spans

__all__ = ["ClaspRetriever", "ClaspTextEmbeddings", "Span", "merge_spans", "save_span_audio", "span_document"]
