"""``ClaspRetriever``: a text query in any language → LangChain Documents naming audio spans."""

from __future__ import annotations

import asyncio
from typing import Any

from clasp_ingest.retriever.spans import Span, merge_spans, span_from_hit
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, SkipValidation

from clasp_ingest.model.base import QueryEncoder
from clasp_ingest.store.base import QdrantStore, SearchFilter, page_content, span_url
from clasp_ingest.types import SpanHit

__all__ = ["ClaspRetriever", "span_document"]


class ClaspRetriever(BaseRetriever):
    """Finds spoken spans for a text query with a CLASP model's text tower and a Qdrant store.

    Each ``Document`` has ``page_content`` naming the span (``"<title> [hh:mm:ss.mmm–…]"``)
    and ``metadata`` with ``source``, ``media_id``, ``title``, ``start_s``, ``end_s``,
    ``score``, ``url`` (``source#t=start,end``) and ``segment_indices``.

    Options (also accepted per call: ``retriever.invoke(q, k=3, filter={...})``):

    * ``k`` – documents returned; ``score_threshold`` – drop hits scoring lower;
    * ``filter`` – a :class:`SearchFilter` or a dict of its fields;
    * ``group_by_media`` – at most this many spans per media item;
    * ``merge`` – merge hits of one media item that overlap or are within ``merge_gap_s``;
    * ``context`` – widen each hit by this many neighbouring segments on each side.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: SkipValidation[QdrantStore]
    model: SkipValidation[QueryEncoder]
    k: int = Field(4, ge=1)
    score_threshold: float | None = None
    filter: SearchFilter | dict[str, Any] | None = None
    group_by_media: int | None = Field(None, ge=1)
    merge: bool = False
    merge_gap_s: float = Field(0.5, ge=0)
    context: int = Field(0, ge=0)

    def _options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        known = {"k", "score_threshold", "filter", "group_by_media", "merge", "merge_gap_s", "context"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"ClaspRetriever got unknown options {unknown}; use some of {sorted(known)}")
        opts = {name: getattr(self, name) for name in known}
        opts.update(overrides)
        if isinstance(opts["filter"], dict):
            opts["filter"] = SearchFilter.from_dict(opts["filter"])
        return opts

    def retrieve_spans(self, query: str, **overrides: Any) -> list[Span]:
        """The answer spans, best first (the Documents are made from these).

        With ``merge``, the spans are those made of the best N hits, for the smallest N
        (doubling from ``k``) that gives ``k`` spans or runs out of hits.
        """
        opts = self._options(overrides)
        vector = self.model.encode_text([query])[0]
        fetch = opts["k"]
        while True:
            hits = self._search(vector, fetch, opts)
            spans = [self._widen(hit, opts["context"]) for hit in hits]
            if not opts["merge"]:
                return spans[: opts["k"]]
            spans = merge_spans(spans, max_gap_s=opts["merge_gap_s"])
            if len(spans) >= opts["k"] or len(hits) < fetch:
                return spans[: opts["k"]]
            fetch *= 2

    def _search(self, vector: Any, fetch: int, opts: dict[str, Any]) -> list[SpanHit]:
        common = {"filters": opts["filter"], "score_threshold": opts["score_threshold"]}
        if opts["group_by_media"]:
            hits = self.store.search_groups(vector, k=fetch, group_size=opts["group_by_media"], **common)
            return sorted(hits, key=lambda h: -h.score)
        return self.store.search(vector, k=fetch, **common)

    def _widen(self, hit: SpanHit, context: int) -> Span:
        if context == 0:
            return span_from_hit(hit)
        index = int(hit.payload.get("metadata", {}).get("segment_index", 0))
        neighbours = self.store.segments(hit.media_id, max(0, index - context), index + context)
        return span_from_hit(hit, neighbours)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return [span_document(span) for span in self.retrieve_spans(query, **kwargs)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # Encoding and searching are blocking (torch, the engine): run them off the event loop.
        spans = await asyncio.to_thread(self.retrieve_spans, query, **kwargs)
        return [span_document(span) for span in spans]


def span_document(span: Span) -> Document:
    """A LangChain Document for one span."""
    url = span_url(span.source, span.start_s, span.end_s)
    metadata = {
        "source": span.source,
        "media_id": span.media_id,
        "title": span.title,
        "start_s": round(span.start_s, 3),
        "end_s": round(span.end_s, 3),
        "score": span.score,
        "url": url,
        "segment_indices": list(span.segment_indices),
    }
    for key in ("language", "version", "model"):
        if key in span.extra:
            metadata[key] = span.extra[key]
    return Document(
        page_content=page_content(span.title, span.source, span.start_s, span.end_s), metadata=metadata
    )
