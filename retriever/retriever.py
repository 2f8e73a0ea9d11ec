"""``ClaspRetriever``: a text query in any language → LangChain Documents naming audio spans."""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextvars
import dataclasses
import functools
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from clasp_ingest.retriever.loading import fits_collection, query_model_for, store_names
from clasp_ingest.retriever.spans import Span, merge_spans, span_from_hit
from clasp_ingest.retriever.words import Stopped
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SkipValidation,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from clasp_ingest.config import is_device
from clasp_ingest.errors import CollectionMismatchError, ConfigError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import QueryEncoder
from clasp_ingest.model.query import says_nothing
from clasp_ingest.store.base import (
    DEFAULT_COLLECTION,
    HybridQuery,
    QdrantStore,
    page_content,
    span_url,
    words_metadata,
)
from clasp_ingest.store.filters import Condition, Where, meta_equals, meta_key, to_where
from clasp_ingest.transcribe import Transcriber
from clasp_ingest.types import SpanHit

if TYPE_CHECKING:
    from clasp_ingest.retriever.rerank import TextScorer
    from clasp_ingest.retriever.words import LazyWords

    from clasp_ingest.config import Settings
    from clasp_ingest.words import TextTower

__all__ = ["ClaspRetriever", "is_empty_query", "span_document"]

log = get_logger("retriever")

#: Threads per store for ``ainvoke`` calls that may transcribe (``"lazy"``, ``rerank``): a
#: transcriber runs one batch at a time and the others wait for their turn on these threads,
#: so there are enough that searches whose words are stored, and cuts, go on beside many
#: waiting ones (with 4, a search whose words were stored waited 7 s behind 8 queued
#: batches). Quick searches keep the event loop's default executor to themselves.
LAZY_WORKERS = 32

#: The search options: constructor fields, ``search_kwargs`` keys and per-call keyword arguments.
OPTIONS = (
    "k",
    "score_threshold",
    "filter",
    "group_by_media",
    "merge",
    "merge_gap_s",
    "context",
    "rerank",
    "hybrid",
)

#: The fields that hold objects (checked by ``_check_parts``, not by pydantic).
_PARTS = frozenset({"store", "model", "transcriber"})

#: What LangChain habits map to here, for the message about an unknown argument.
_HINTS = {
    "top_k": "use k",
    "search_type": "ClaspRetriever always ranks by similarity; give score_threshold to drop weak hits",
    "fetch_k": "MMR is not supported",
    "lambda_mult": "MMR is not supported",
    "vectorstore": "pass store= (a clasp_ingest.store.QdrantStore) or use ClaspRetriever.from_path/from_url",
    "embeddings": "pass model= (a query encoder) or use ClaspRetriever.from_path/from_url",
}


def _unknown(names: list[str], allowed: list[str], where: str) -> TypeError:
    hints = "; ".join(f"{name}: {_HINTS[name]}" for name in names if name in _HINTS)
    return TypeError(
        f"ClaspRetriever got unknown {where} {names}; it takes {', '.join(allowed)}"
        + (f" ({hints})" if hints else "")
    )


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # an int to Python: k=True searched for one span
        raise ValueError("a number is needed, not True/False")
    return value


#: A whole number of spans or segments: "2" is read as 2 (settings from text), True is refused.
_Count = Annotated[int, BeforeValidator(_not_bool)]


class ClaspRetriever(BaseRetriever):
    """Finds spoken spans for a text query with a CLASP model's text tower and a Qdrant store.

    Each ``Document`` has ``id`` = the Qdrant point id of its best-scoring segment,
    ``page_content`` = the span's spoken words when its segments have been transcribed, else
    a name for it (``"<title> [hh:mm:ss.mmm–…]"``), and ``metadata`` with ``source``,
    ``media_id``, ``title``, ``start_s``, ``end_s``, ``score``, ``url``
    (``source#t=start,end``), ``segment_indices`` and ``point_ids`` (the segments it covers),
    ``transcript`` (the words, or None) and ``transcript_language``.

    ``transcribe`` says where the words come from:

    * ``"never"`` (default) – no transcription here; words stored earlier (by a ``"lazy"``
      search) are returned. The default because ``"lazy"`` writes to the store, needs the
      source media reachable from this process, and costs seconds per new span;
    * ``"lazy"`` – each returned segment without words is cut from its source, transcribed by
      ``transcriber`` (default: :class:`~clasp_ingest.transcribe.Transcriber`, the bundled
      Whisper-base, loaded on first need) and its words written back to the store, so a later
      search returns them at once;
    * ``"ingest"`` – the words were stored at ingest; nothing is transcribed here, and a span
      without words is logged.

    Options (also accepted in ``search_kwargs={...}``, LangChain's ``VectorStoreRetriever``
    idiom, and per call: ``retriever.invoke(q, k=3, filter={...})``):

    * ``k`` – documents returned; ``score_threshold`` – drop hits scoring lower;
    * ``filter`` – a :class:`~clasp_ingest.store.SearchFilter`, a dict of its fields, or a
      ``qdrant_client.models.Filter`` on payload keys (``metadata.source``...; see
      :mod:`clasp_ingest.store.filters` for what maps);
    * ``group_by_media`` – at most this many spans per media item;
    * ``merge`` – hits are taken best first until ``k`` spans are made; one that overlaps a
      better hit's span of its item or lies within ``merge_gap_s`` of it joins that span (the
      best one, when two are near: spans never join into one) instead of making a span of its
      own; a span keeps its best hit's score; the segments in a gap wider than a segment become
      members of the span (it plays them), unless ``filter`` leaves one out (the hits stay apart);
    * ``context`` – widen each hit by this many neighbouring segments on each side, but not over
      a better hit's span (a hit inside one is left out: no audio comes back twice) nor over
      segments that ``filter`` leaves out;
    * ``rerank`` – two-stage ranking: CLASP finds the best ``rerank`` spans (``>= k``), their
      words are obtained as with ``"lazy"`` (transcribed and stored once, whatever
      ``transcribe`` says), scored against the query with the model's text tower, and the two
      scores fused (:mod:`clasp_ingest.retriever.rerank`); the best ``k`` by fused score are
      returned, with ``metadata["score"]`` the fused score and ``clasp_score``/``text_score``
      beside it. ``score_threshold`` applies to the CLASP score;
    * ``hybrid`` – for a collection ingested with words (``ingest --transcribe``): one Qdrant
      Query API call fuses three rankings by reciprocal rank fusion (prefetch + RRF, on both
      engines): the CLASP vectors, the words' dense ``text`` vectors (the model's text tower:
      ``"query: "`` on the query, ``"passage: "`` on the words) and their sparse ``words``
      vectors (BM25 weights, IDF applied by Qdrant); see
      :meth:`~clasp_ingest.store.QdrantStore.search_hybrid`. ``metadata["score"]`` is the fused
      score. A collection without word vectors raises ``StoreError``; not combined with
      ``rerank`` or ``group_by_media`` (``ValueError``).

    ``allow_private_hosts`` (at construction only): let the cuts for words (``"lazy"``,
    ``rerank``) of items stored under http(s) URLs reach loopback, private or link-local
    addresses (media served on your LAN); ``None`` (default) reads
    ``CLASP_ALLOW_PRIVATE_HOSTS``, else public addresses only (a point of a shared collection
    may name any host).

    Unknown arguments raise ``TypeError``. ``from_path`` / ``from_url`` / ``from_settings``
    open the store and load the collection's query model in one line; the retriever then owns
    that store: ``close()`` it, or use it in a ``with`` block. An embedded (Qdrant Edge) store
    is open in one process (and one store object) at a time.

    ``ainvoke`` runs a search off the event loop; one that may transcribe (``"lazy"``,
    ``rerank``) runs on a few threads kept for the searches on its store (:data:`LAZY_WORKERS`),
    so that slow ones never hold up quick ones in the loop's default executor. Cancelling it
    (``asyncio.wait_for``'s timeout, ``task.cancel()``) makes it give up at the next safe point:
    while waiting for a segment another search transcribes, before each cut, before the
    transcription and while waiting for the transcriber (one batch at a time); a transcription
    batch under way is finished and its words are stored (no work lost, nothing half-written).
    ``close()`` of the retriever that owns the store makes every search in flight on it give up
    the same way, waits for them, then closes the store.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    store: SkipValidation[QdrantStore]
    model: SkipValidation[QueryEncoder]
    k: _Count = Field(4, ge=1)
    score_threshold: float | None = Field(None, allow_inf_nan=False)
    filter: Any = None
    group_by_media: _Count | None = Field(None, ge=1)
    merge: bool = False
    merge_gap_s: float = Field(0.5, ge=0)
    context: _Count = Field(0, ge=0)
    rerank: _Count | None = Field(None, ge=1)
    hybrid: bool = False
    transcribe: Literal["never", "lazy", "ingest"] = "never"
    transcriber: SkipValidation[Transcriber] | None = None
    allow_private_hosts: bool | None = None

    _owned_store: QdrantStore | None = PrivateAttr(default=None)
    _lazy_words: LazyWords | None = PrivateAttr(default=None)
    _scorer: TextScorer | None = PrivateAttr(default=None)
    _tower: TextTower | None = PrivateAttr(default=None)

    # ----- construction

    def model_post_init(self, context: Any, /) -> None:
        _check_parts(self.store, self.model)
        if self.transcribe == "lazy" and self.transcriber is None:
            self.transcriber = Transcriber()  # cheap: the model loads when a span needs words
        _check_model(self.store, self.model)

    @model_validator(mode="before")
    @classmethod
    def _known_arguments(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        cls._check_names(data)
        return _with_search_kwargs(dict(data)) if "search_kwargs" in data else data

    @classmethod
    def _check_names(cls, arguments: Mapping[str, Any]) -> None:
        allowed = sorted([*cls.model_fields, "search_kwargs"])
        unknown = sorted(set(arguments) - set(allowed))
        if unknown:
            raise _unknown(unknown, allowed, "arguments")

    @model_validator(mode="after")
    def _valid_rerank(self) -> Self:
        _check_rerank(self.rerank, self.k)
        _check_hybrid(self.hybrid, self.rerank, self.group_by_media)
        return self

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: Any) -> Any:
        to_where(value)  # raises FilterError (a ValueError) naming the unsupported part
        return value

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        collection: str = DEFAULT_COLLECTION,
        model: str | None = None,
        device: str = "auto",
        model_dir: Path | None = None,
        **options: Any,
    ) -> Self:
        """A retriever over the embedded store in ``path`` (or a qdrant-client folder).

        The query model is the collection's own (``model``: a preset or directory instead).
        """
        from clasp_ingest.store import open_store

        names = store_names("from_path")
        store = open_store(path=Path(path).expanduser(), collection=collection, names=names)
        return cls._owning(store, model, device, model_dir, options)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        prefer_grpc: bool = False,
        model: str | None = None,
        device: str = "auto",
        model_dir: Path | None = None,
        **options: Any,
    ) -> Self:
        """A retriever over a collection on a Qdrant server."""
        from clasp_ingest.store import open_store

        store = open_store(url=url, api_key=api_key, prefer_grpc=prefer_grpc, collection=collection,
                           names=store_names("from_url"))  # fmt: skip
        return cls._owning(store, model, device, model_dir, options)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: Any) -> Self:
        """A retriever over the store ``CLASP_*`` settings name (``CLASP_QDRANT_URL`` wins over
        ``CLASP_QDRANT_PATH``; ``CLASP_QDRANT_API_KEY``, ``CLASP_COLLECTION``), searched with
        the collection's model unless ``CLASP_MODEL`` is set. ``options``: retriever options.
        """
        from clasp_ingest.config import Settings
        from clasp_ingest.store import open_store

        cfg = settings if settings is not None else Settings.from_env()  # reads CLASP_*
        url = cfg.qdrant_url
        store = open_store(url=url, path=None if url else cfg.qdrant_path, api_key=cfg.qdrant_api_key,
                           prefer_grpc=cfg.qdrant_grpc, collection=cfg.collection,
                           names=store_names("from_settings"))  # fmt: skip
        model = cfg.model if "model" in cfg.model_fields_set else None
        return cls._owning(store, model, cfg.device, cfg.model_dir, options)

    @classmethod
    def _owning(
        cls,
        store: QdrantStore,
        model: str | None,
        device: str,
        model_dir: Path | None,
        options: dict[str, Any],
    ) -> Self:
        try:
            cls._check_names(options)  # fail before loading the model
            if not is_device(str(device)):
                raise ConfigError(f"device={device!r} is unknown; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
            encoder = query_model_for(store, model, device=device, model_dir=model_dir)
            retriever = cls(store=store, model=encoder, **options)
        except BaseException:
            store.close()
            raise
        retriever._owned_store = store
        return retriever

    # ----- lifetime

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy (``update`` applied) that shares this retriever's store without owning it:
        closing the copy leaves the store open for this one."""
        if deep:
            raise TypeError(_NOT_COPIED)
        changed = dict(update or {})
        self._check_names(changed)  # pydantic's model_copy checks nothing: the constructor's checks
        if "search_kwargs" in changed:
            changed = _with_search_kwargs(changed)
        checked = {
            name: value if name in _PARTS else _valid_option(name, value) for name, value in changed.items()
        }
        if "filter" in checked:
            to_where(checked["filter"])  # raises FilterError naming the unsupported part
        copy = super().model_copy(update=checked)  # calls __copy__: not an owner
        _check_rerank(copy.rerank, copy.k)
        _check_hybrid(copy.hybrid, copy.rerank, copy.group_by_media)
        if changed.keys() & {"store", "model", "transcribe", "transcriber"}:
            copy.model_post_init(None)
        if changed.keys() & {"store", "transcriber"}:
            copy._lazy_words = None
        if "model" in changed:
            copy._scorer, copy._tower = None, None
        return copy

    def __copy__(self) -> Self:
        """``copy.copy``: a copy that shares the store without owning it, as ``model_copy()``
        (pydantic's copied the ownership: closing the copy closed the store under this one)."""
        copy = super().__copy__()
        copy._owned_store = None
        return copy

    def close(self) -> None:
        """Close the store this retriever opened (``from_*``); a store passed in stays open.

        Searches in flight on it (by any retriever in this process, in any thread or ``ainvoke``)
        give up at their next safe point (a transcription batch under way is finished and
        stored); ``close()`` waits for them, so none fails on a closed store and no thread runs
        on after it (from async code, ``await asyncio.to_thread(retriever.close)`` keeps the event
        loop running meanwhile). Later searches raise :class:`~clasp_ingest.retriever.words.Stopped`.
        """
        store, self._owned_store = self._owned_store, None
        if store is not None:
            _calls_on(store).close()
            store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[Any, Any]:
        raise TypeError(_NOT_COPIED)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        raise TypeError(_NOT_COPIED)

    # ----- searching

    def _options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(OPTIONS))
        if unknown:
            raise _unknown(unknown, list(OPTIONS), "options")
        opts = {name: getattr(self, name) for name in OPTIONS}
        opts.update({name: _valid_option(name, value) for name, value in overrides.items()})
        opts["filter"] = to_where(opts["filter"])
        _check_rerank(opts["rerank"], opts["k"])
        _check_hybrid(opts["hybrid"], opts["rerank"], opts["group_by_media"])
        return opts

    def retrieve_spans(self, query: str, **overrides: Any) -> list[Span]:
        """The answer spans, best first (the Documents are made from these).

        Hits are taken best first until ``k`` spans are made (with ``merge``, a hit near a
        span joins it; see ``_spans_of``), so a larger ``k`` returns the same first spans, in
        the same order, never joined together, widened at most by its best ``k`` hits and those
        that rank above the spans it adds. An empty query raises ``ValueError``; a long one is
        cut to the text encoder's limit by the model.
        """
        return self._retrieve(query, overrides, _calls_on(self.store).closing.is_set)

    def _retrieve(self, query: str, overrides: dict[str, Any], stop: Callable[[], bool]) -> list[Span]:
        """``retrieve_spans``; lazy transcription gives up where ``stop()`` says so."""
        with _calls_on(self.store).running():
            return self._spans_for(query, overrides, stop)

    def _spans_for(self, query: str, overrides: dict[str, Any], stop: Callable[[], bool]) -> list[Span]:
        if not isinstance(query, str):
            raise TypeError(f"the query must be text (str), got {type(query).__name__}")
        if is_empty_query(query):
            raise ValueError("the query is empty; say what to look for")
        from clasp_ingest.model.query import plain_query

        query = plain_query(query)  # its words too (hybrid, rerank): "médico" typed decomposed
        opts = self._options(overrides)
        vector: Any = self.model.encode_text([query])[0]
        if opts["hybrid"]:
            vector = self._hybrid_query(query, vector)
        if opts["rerank"] is not None:
            return self._reranked(query, vector, opts, stop)
        spans, members = self._find_spans(vector, opts)
        if self.transcribe == "lazy":
            return self._with_words(spans, members, stop)
        if self.transcribe == "ingest":
            _log_missing_words(spans)
        return spans

    def _reranked(
        self, query: str, vector: Any, opts: dict[str, Any], stop: Callable[[], bool]
    ) -> list[Span]:
        """The best ``k`` of CLASP's best ``rerank`` spans, by fused score (words filled lazily)."""
        from clasp_ingest.retriever.rerank import TextScorer, rerank_spans

        spans, members = self._find_spans(vector, {**opts, "k": opts["rerank"]})
        spans = self._with_words(spans, members, stop)
        if self._scorer is None:
            self._scorer = TextScorer(self.model)
        return rerank_spans(spans, query, self._scorer)[: opts["k"]]

    def _find_spans(self, vector: Any, opts: dict[str, Any]) -> tuple[list[Span], dict[str, SpanHit]]:
        """The answer spans and the hits they are made of (hits and context), by point id.

        Hits are taken best first until ``k`` spans are made; more are fetched (doubling) only
        while fewer are made (a hit inside a better span, an older version, merged hits). With
        ``group_by_media`` it caps spans per item, not hits: an item whose group came back full
        while it has fewer spans than the cap (a hit absorbed by a better one's context or
        merged span) is searched deeper (doubling its group), where that could add a span above
        the last one (:func:`_wanting`).
        """
        fetch, depth = opts["k"], 1  # depth: hits per item with group_by_media, in its spans
        while True:
            found = self._search(vector, fetch, opts, depth)
            spans, members = self._spans_of(_newest_versions(found), opts)
            wider, deeper = _wanting(found, spans, fetch, opts["k"], opts["group_by_media"], depth)
            if not (wider or deeper):
                return spans, members
            fetch, depth = fetch * 2 if wider else fetch, depth * 2 if deeper else depth

    def _spans_of(self, hits: list[SpanHit], opts: dict[str, Any]) -> tuple[list[Span], dict[str, SpanHit]]:
        """The first ``k`` spans made of ``hits`` (best first) and their members, by point id.

        A hit becomes a span of its own, or with ``merge`` joins the best span of its item that
        it overlaps or lies within ``merge_gap_s`` of (its context reaching into one counts).
        It joins one span at most: joining the spans on both sides let lower hits fill the gaps
        between the good spans and chain a whole talk into one span labelled with the best score.
        The spans are made of the best ``k`` hits and, where those make fewer than ``k`` spans,
        of the next ones down to the hit that makes the last span: the hits after it would only
        widen the spans (with audio that ranks below every span's best hit), and are left out.
        """
        members: dict[str, SpanHit] = {}
        taken: dict[str, list[int]] = {}  # media id -> segments in a better hit's span, sorted
        spans: list[Span] = []
        made: list[Span] = []  # the spans as they stood after the last hit that counts
        for rank, hit in enumerate(hits, start=1):
            if (cap := opts["group_by_media"]) and sum(s.media_id == hit.media_id for s in spans) >= cap:
                continue  # its item has its spans: this hit would add or widen one below them
            piece = self._widen(hit, opts, members, taken.setdefault(hit.media_id, []))
            if piece is None:
                continue
            if opts["merge"]:
                between = functools.partial(self._between, where=opts["filter"], taken=taken[hit.media_id])
                reach = _reach(hit, opts["context"])
                for member in _add_merging(spans, piece, reach, opts["merge_gap_s"], between):
                    members[str(member.point_id)] = member
                    bisect.insort(taken[hit.media_id], _segment_index(member))
            else:
                spans.append(piece)
            if rank <= opts["k"] or len(spans) > len(made):
                made = list(spans)
                if len(made) == opts["k"]:
                    break
        return made, members

    def _hybrid_query(self, query: str, vector: Any) -> HybridQuery:
        from clasp_ingest.words import TextTower, query_words

        if self._tower is None:
            self._tower = TextTower(self.model)
        text = self._tower.queries([query])[0]
        return HybridQuery([float(x) for x in vector], [float(x) for x in text], query_words(query))

    def _search(self, vector: Any, fetch: int, opts: dict[str, Any], depth: int = 1) -> list[SpanHit]:
        common = {"filters": opts["filter"], "score_threshold": opts["score_threshold"]}
        if isinstance(vector, HybridQuery):
            hits = self.store.search_hybrid(vector, k=fetch, **common)
        elif group := opts["group_by_media"]:
            hits = self.store.search_groups(vector, k=fetch, group_size=group * depth, **common)
            # one ranking, as ungrouped: equal scores by point id (by group, tied spans of two
            # items came in their items' order, unlike the same spans searched ungrouped)
            hits = sorted(hits, key=lambda h: (-h.score, h.point_id or ""))
        else:
            hits = self.store.search(vector, k=fetch, **common)
        return hits

    def _widen(
        self, hit: SpanHit, opts: dict[str, Any], members: dict[str, SpanHit], taken: list[int]
    ) -> Span | None:
        """``hit``'s span, widened by ``context`` segments on each side but not over the segments
        ``taken`` by better hits' spans of its item (which it then also takes): no audio comes
        back twice, and spans do not chain into one. ``None`` when the hit's own segment is
        taken (it lies in a better hit's context)."""
        index = _segment_index(hit)
        at = bisect.bisect_left(taken, index)
        if at < len(taken) and taken[at] == index:
            return None
        neighbours: list[SpanHit] = []
        if context := opts["context"]:
            low = taken[at - 1] + 1 if at > 0 else 0  # the free stretch around the hit
            high = taken[at] - 1 if at < len(taken) else index + context
            first, last = max(0, index - context, low), min(index + context, high)
            neighbours = self._neighbours(hit, first, last, opts["filter"])
        for member in (*neighbours, hit):
            members[str(member.point_id)] = member
        span = span_from_hit(hit, neighbours)
        for i in span.segment_indices:
            bisect.insort(taken, i)
        return span

    def _neighbours(self, hit: SpanHit, first: int, last: int, where: Where) -> list[SpanHit]:
        """The segments ``first``..``last`` of ``hit``'s item and version that the search's
        filter ``where`` admits, as far as they run on unbroken from the hit: a widened span
        stays inside the filter (a time range, segment indices, words...), as its hits do."""
        found = self._admitted(hit.media_id, hit.payload.get("metadata", {}), first, last, where)
        return _unbroken(found, _segment_index(hit))

    def _between(self, a: Span, b: Span, *, where: Where, taken: list[int]) -> list[SpanHit] | None:
        """The segments between spans ``a`` and ``b`` of one item, which a span merged of the two
        plays, so they become its members too (their words, their ids); ``None`` where one is
        missing, left out by the filter or in another span: then the two stay apart."""
        if not a.segment_indices or not b.segment_indices:
            return []
        low, high = sorted((a, b), key=lambda span: min(span.segment_indices))
        first, last = max(low.segment_indices) + 1, min(high.segment_indices) - 1
        if last < first:
            return []
        if any(first <= i <= last for i in taken):
            return None
        found = self._admitted(a.media_id, a.extra, first, last, where)
        return found if [_segment_index(n) for n in found] == list(range(first, last + 1)) else None

    def _admitted(
        self, media_id: str, meta: Mapping[str, Any], first: int, last: int, where: Where
    ) -> list[SpanHit]:
        """The segments ``first``..``last`` of the item's write that a hit's ``meta`` comes from
        (its version and write id) that ``where`` admits."""
        version, write = meta.get("version"), meta.get("write_id")
        found = self.store.segments(
            media_id,
            first,
            last,
            version=str(version) if version is not None else None,
            write_id=str(write) if write is not None else None,
        )
        if not where.empty:
            stretch = Where((Condition(meta_key("segment_index"), gte=first, lte=last),))
            inside = where & meta_equals("media_id", media_id) & stretch
            admitted = {str(p.id) for p in self.store.iter_points(inside, batch_size=last - first + 1)}
            found = [n for n in found if str(n.point_id) in admitted]
        return found

    def _words(self) -> LazyWords:
        if self._lazy_words is None:
            from clasp_ingest.retriever.words import LazyWords

            self._lazy_words = LazyWords(
                self.store, self.transcriber or Transcriber(), allow_private_hosts=self.allow_private_hosts
            )
        return self._lazy_words

    def _with_words(
        self, spans: list[Span], members: dict[str, SpanHit], stop: Callable[[], bool]
    ) -> list[Span]:
        """``spans`` with the words of every segment, transcribing (and storing) missing ones."""
        needed = [members[pid] for span in spans for pid in span.point_ids if pid in members]
        words, report = self._words().fill(needed, stop=stop)
        if report.transcribed or report.failed:
            log.info("words: %d segments transcribed and stored now, %d had words already, %d failed",
                     report.transcribed, report.stored, report.failed)  # fmt: skip
        if not words:
            return spans
        filled = []
        for span in spans:
            if not span.point_ids:
                filled.append(span)
                continue
            texts = tuple(
                words[pid].text if pid in words else text
                for pid, text in zip(span.point_ids, span.texts, strict=True)
            )
            extra = dict(span.extra)
            if span.point_id in words:
                best = words[span.point_id]
                extra.update(words_metadata(best.text, best.language, best.model, best.english))
            filled.append(dataclasses.replace(span, texts=texts, extra=extra))
        return filled

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return [span_document(span) for span in self.retrieve_spans(query, **kwargs)]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # Encoding and searching are blocking (torch, the engine): run them off the event loop;
        # one that may transcribe on the threads kept for its store (class docstring). A cancelled
        # call's thread cannot be stopped from here: it is told to give up at its next safe point.
        calls = _calls_on(self.store)
        cancelled, closing = threading.Event(), calls.closing

        def stop() -> bool:
            return cancelled.is_set() or closing.is_set()

        call = functools.partial(contextvars.copy_context().run, self._retrieve, query, kwargs, stop)
        try:
            if self.transcribe == "lazy" or kwargs.get("rerank", self.rerank) is not None:
                spans = await asyncio.wrap_future(calls.submit(call))
            else:
                spans = await asyncio.get_running_loop().run_in_executor(None, call)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return [span_document(span) for span in spans]


class _Calls:
    """The searches in flight on one store (of every retriever over it: copies, others given the
    store), and the threads that run their ``ainvoke`` calls that may transcribe; ``close()``
    ends both before the retriever that owns the store closes it."""

    def __init__(self) -> None:
        self.closing = threading.Event()
        self._changed = threading.Condition()
        self._running: collections.Counter[int] = collections.Counter()  # calls by thread id
        self._executor: ThreadPoolExecutor | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        """One search in flight; refused (:class:`Stopped`) once the store is closing."""
        me = threading.get_ident()
        with self._changed:
            self._refuse_if_closing()
            self._running[me] += 1
        try:
            yield
        finally:
            with self._changed:
                self._running[me] -= 1
                if not self._running[me]:
                    del self._running[me]
                self._changed.notify_all()

    def submit(self, call: Callable[[], list[Span]]) -> Future[list[Span]]:
        """Run ``call`` on the threads kept for searches that may transcribe (made on first need)."""
        with self._changed:
            self._refuse_if_closing()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(LAZY_WORKERS, thread_name_prefix="clasp-retriever")
            return self._executor.submit(call)

    def close(self) -> None:
        """Tell the searches in flight to give up, wait until they have, and let the threads go
        (a search this thread is inside of is not waited for: it would wait for itself)."""
        me = threading.get_ident()
        with self._changed:
            self.closing.set()
            self._changed.wait_for(lambda: not set(self._running) - {me})
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)  # calls still queued start, and are refused at once

    def _refuse_if_closing(self) -> None:
        if self.closing.is_set():
            raise Stopped(
                "the retriever's store was closed; open it again (ClaspRetriever.from_path / "
                "from_url / from_settings) to search"
            )


#: The searches on each open store (dropped with the store).
_CALLS: weakref.WeakKeyDictionary[QdrantStore, _Calls] = weakref.WeakKeyDictionary()
_CALLS_GUARD = threading.Lock()


def _calls_on(store: QdrantStore) -> _Calls:
    with _CALLS_GUARD:
        calls = _CALLS.get(store)
        if calls is None:
            calls = _CALLS[store] = _Calls()
        return calls


@functools.cache
def _option_adapter(name: str) -> TypeAdapter[Any]:
    field = ClaspRetriever.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]


def _valid_option(name: str, value: Any) -> Any:
    """A per-call override checked as the constructor checks that option (type, bounds)."""
    try:
        return _option_adapter(name).validate_python(value)
    except ValidationError as exc:
        raise ValueError(f"option {name}={value!r}: {exc.errors()[0]['msg']}") from None


def _check_rerank(rerank: Any, k: Any) -> None:
    if rerank is None:
        return
    if isinstance(rerank, bool) or not isinstance(rerank, int) or rerank < 1:
        raise ValueError(f"rerank={rerank!r} must be a whole number of spans >= k, or None (no rerank)")
    if rerank < k:
        raise ValueError(
            f"rerank={rerank} is smaller than k={k}: the second stage reorders CLASP's best rerank "
            f"spans and returns k of them; give rerank >= k (e.g. rerank={max(10, k)})"
        )


def _check_hybrid(hybrid: bool, rerank: int | None, group_by_media: int | None) -> None:
    if hybrid and rerank is not None:
        raise ValueError(
            "hybrid and rerank are two ways of ranking by the words; use one: hybrid=True for a "
            "collection ingested with --transcribe, rerank=N (transcribing lazily) for any other"
        )
    if hybrid and group_by_media is not None:
        raise ValueError(
            "hybrid search does not group by media; drop group_by_media, or search without hybrid"
        )


def _log_missing_words(spans: list[Span]) -> None:
    missing = sum(span.transcript is None for span in spans)
    if missing:
        log.warning(
            "%d of %d spans have no words stored although transcribe='ingest'; use transcribe='lazy' "
            "to transcribe them at query time",
            missing,
            len(spans),
        )


def _segment_index(hit: SpanHit) -> int:
    return int(hit.payload.get("metadata", {}).get("segment_index", 0))


def _reach(hit: SpanHit, context: int) -> range:
    """The segments ``hit``'s context covers before better spans cut it short."""
    index = _segment_index(hit)
    return range(index - context, index + context + 1)


def _add_merging(
    spans: list[Span],
    piece: Span,
    reach: range,
    gap_s: float,
    between: Callable[[Span, Span], list[SpanHit] | None],
) -> list[SpanHit]:
    """Join ``piece`` to the first (best) span of its item that holds a segment of ``reach``
    (the piece's context was cut short by it) or lies within ``gap_s`` of it, with the segments
    ``between`` the two (a gap wider than a segment); else add it. Returns those segments."""
    for at, span in enumerate(spans):
        if span.media_id != piece.media_id:
            continue
        touches = any(i in reach for i in span.segment_indices)
        if len(merge_spans([span, piece], max_gap_s=math.inf if touches else gap_s)) != 1:
            continue
        filler = between(span, piece)
        if filler is None:
            continue
        parts = [span, piece]
        if filler:  # under both scores: the span keeps its best hit's score and point
            parts.append(dataclasses.replace(span_from_hit(filler[0], filler[1:]), score=-math.inf))
        spans[at] = merge_spans(parts, max_gap_s=math.inf)[0]
        return filler
    spans.append(piece)
    return []


def _unbroken(neighbours: list[SpanHit], index: int) -> list[SpanHit]:
    """The ``neighbours`` that reach segment ``index`` without a missing segment between."""
    by_index = {_segment_index(n): n for n in neighbours}
    low, high = index, index
    while low - 1 in by_index:
        low -= 1
    while high + 1 in by_index:
        high += 1
    return [by_index[i] for i in range(low, high + 1) if i in by_index]


#: Why a retriever is not pickled or deep-copied (it said "cannot pickle '_thread.lock' object").
_NOT_COPIED = (
    "a ClaspRetriever holds an open store and a loaded model, which cannot be pickled or deep-copied; "
    "make one in each process (ClaspRetriever.from_path / from_url / from_settings), or share it "
    "with model_copy()"
)


def is_empty_query(query: str) -> bool:
    """Whether ``query`` says nothing: no letter, digit, punctuation or symbol, only spaces,
    zero-width or control characters (a byte-order mark from a file), which found arbitrary spans."""
    return says_nothing(query)


def _wanting(
    found: list[SpanHit], spans: list[Span], fetch: int, k: int, group: int | None, depth: int
) -> tuple[bool, bool]:
    """Whether a search for ``fetch`` hits (with ``group``: ``fetch`` items, ``group * depth``
    hits each) that made ``spans`` should be widened (more hits or items: fewer than ``k``
    spans were made, and it found as many as it asked for) or deepened (more hits of the items
    whose group came back full while they hold fewer spans than ``group``; once ``k`` spans are
    made, only of those whose last hit ranks above the last span). An item that has its spans
    is not searched deeper: a long one was fetched whole, doubling after doubling."""
    if not group:
        return len(spans) < k and len(found) >= fetch, False
    per_item = collections.Counter(hit.media_id for hit in found)
    lowest: dict[str, float] = {}
    for hit in found:
        lowest[hit.media_id] = min(lowest.get(hit.media_id, hit.score), hit.score)
    made = collections.Counter(span.media_id for span in spans)
    floor = min((span.score for span in spans), default=-math.inf) if len(spans) >= k else -math.inf
    deeper = any(
        n >= group * depth and made[item] < group and lowest[item] > floor for item, n in per_item.items()
    )
    return len(spans) < k and len(per_item) >= fetch, deeper


def _newest_versions(hits: list[SpanHit]) -> list[SpanHit]:
    """``hits`` of one write per item, the newest among them: a write removes the item's other
    writes once complete, and until then (a moment, or until the next ingest where a replace
    was cut short in between) both are searchable: the same span would come twice."""

    def age(hit: SpanHit) -> tuple[str, str, str]:
        meta = hit.payload.get("metadata", {})
        return str(meta.get("ingested_at", "")), str(meta.get("version", "")), str(meta.get("write_id", ""))

    newest: dict[str, tuple[str, str, str]] = {}
    for hit in hits:
        newest[hit.media_id] = max(newest.get(hit.media_id, age(hit)), age(hit))
    return [hit for hit in hits if age(hit)[1:] == newest[hit.media_id][1:]]


def _check_parts(store: Any, model: Any) -> None:
    """Refuse a store or model of the wrong kind at construction (a name or a path given where
    an open store or a loaded model belongs failed only at the first query, as AttributeError)."""
    if not isinstance(store, QdrantStore):
        raise TypeError(
            f"store must be an open store (clasp_ingest.store.open_store(...)), got {type(store).__name__} "
            f"{store!r}; for a folder or a server use ClaspRetriever.from_path(PATH) or from_url(URL)"
        )
    if not callable(getattr(model, "encode_text", None)):
        raise TypeError(
            f"model must be a loaded query model (clasp_ingest.model.load_query_model(NAME)), got "
            f"{type(model).__name__} {model!r}; ClaspRetriever.from_path/from_url/from_settings load "
            "the collection's own model (or model=NAME) for you"
        )


def _check_model(store: QdrantStore, model: Any) -> None:
    """Refuse a query model that makes other vectors than ``store``'s collection holds (one of
    the same width would search, and return nonsense); a collection made later is checked by
    the store when it is written."""
    identity = store.identity
    if identity is not None and not fits_collection(identity, model):
        raise CollectionMismatchError(
            f"collection {store.collection!r} holds vectors of model {identity.model_id!r}, but the "
            f"query model is {getattr(model, 'model_id', None)!r}; use the collection's own model "
            "(ClaspRetriever.from_path/from_url/from_settings load it)"
        )


#: Payload keys a Document carries where the span's item has them.
_KEPT_KEYS = ("language", "version", "model", "channel_mix", "transcript_en", "clasp_score", "text_score")
#: A feed episode's keys (``connectors.feed``): a RAG answer can name the show and the date.
FEED_KEYS = ("feed_title", "feed_url", "episode_title", "published", "published_ts", "episode_link")


def span_document(span: Span) -> Document:
    """A LangChain Document for one span (``id``: the point of its best-scoring segment).

    ``page_content`` is the span's words when it has them, else ``"<title> [start–end]"``.
    """
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
        "point_ids": list(span.point_ids),
        "transcript": span.transcript,
        "transcript_language": span.transcript_language,
    }
    for key in (*_KEPT_KEYS, *FEED_KEYS):
        if key in span.extra:
            metadata[key] = span.extra[key]
    named = page_content(span.title, span.source, span.start_s, span.end_s)
    return Document(id=span.point_id, page_content=span.transcript or named, metadata=metadata)


def _with_search_kwargs(data: dict[str, Any]) -> dict[str, Any]:
    """Move ``search_kwargs``' keys (LangChain's ``VectorStoreRetriever`` idiom) onto the options."""
    search_kwargs = data.pop("search_kwargs") or {}
    if not isinstance(search_kwargs, Mapping):
        raise TypeError(f"search_kwargs must be a dict of options, got {type(search_kwargs).__name__}")
    unknown = sorted(set(search_kwargs) - set(OPTIONS))
    if unknown:
        raise _unknown(unknown, list(OPTIONS), "search_kwargs keys")
    twice = sorted(set(search_kwargs) & set(data))
    if twice:
        raise TypeError(f"ClaspRetriever got {twice} both as arguments and in search_kwargs; give each once")
    return {**data, **search_kwargs}
