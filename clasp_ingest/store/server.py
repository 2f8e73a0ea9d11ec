"""qdrant-client backend: a Qdrant server (URL, API key, TLS, gRPC) or qdrant-client's local mode.

The model identity lives in the collection's ``metadata`` (``clasp_model``, ``clasp_dim``).
Local mode (``":memory:"`` or ``path=``) is brute force and ignores payload indexes; it
stands in for a server in tests.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from clasp_ingest.errors import StoreError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import (
    DEFAULT_COLLECTION,
    PAYLOAD_INDEXES,
    STATE_COMPLETE,
    STATE_EMPTY,
    TEXT_VECTOR,
    TRANSCRIPT_KEY,
    VECTOR_NAME,
    WORDS_VECTOR,
    CollectionIdentity,
    HybridQuery,
    QdrantStore,
    StoredPoint,
    WriteOptions,
    point_from_record,
)
from clasp_ingest.store.filters import Clause, Condition, Where
from clasp_ingest.store.metric import QueryMetric

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

__all__ = ["ServerStore"]

log = get_logger("store.server")

T = TypeVar("T")

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
#: Qdrant's default optimizer indexing threshold (KB), restored after a bulk ingest.
_DEFAULT_INDEXING_THRESHOLD_KB = 10_000


def _models() -> Any:
    from qdrant_client import models

    return models


class ServerStore(QdrantStore):
    """A collection reached through a :class:`qdrant_client.QdrantClient` (passed in)."""

    backend = "client"

    def __init__(
        self,
        client: QdrantClient,
        collection: str = DEFAULT_COLLECTION,
        *,
        write: WriteOptions | None = None,
        hnsw_ef: int | None = None,
        owns_client: bool = False,
        location: str = "qdrant-client",
        check_version: bool = False,
    ) -> None:
        super().__init__(collection, write=write)
        self.location = location
        self._check_version = check_version
        self.client = client
        self.hnsw_ef = hnsw_ef
        self._owns_client = owns_client
        self._indexing_threshold: int | None = None
        #: In a qdrant-client folder this store opened: each item's point ids (:meth:`_item_ids`).
        self._items: dict[str, set[str]] | None = None
        self._items_lock = threading.Lock()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    # ----- collection

    def _read_identity(self) -> CollectionIdentity | None:
        if self._check_version:
            self._check_version = False
            self._warn_if_incompatible()
        exists = self._retry(lambda: self.client.collection_exists(self.collection), "reading collections")
        if not exists:
            return None
        config = self._retry(
            lambda: self.client.get_collection(self.collection), "reading the collection"
        ).config
        meta = config.metadata or {}
        vectors = config.params.vectors
        params = vectors.get(VECTOR_NAME) if isinstance(vectors, dict) else None
        dim = int(params.size) if params is not None else int(meta.get("clasp_dim", -1))
        model = str(meta.get("clasp_model", "<unknown: not made by clasp-ingest>"))
        source = meta.get("clasp_model_source")
        text = vectors.get(TEXT_VECTOR) if isinstance(vectors, dict) else None
        has_words = WORDS_VECTOR in (config.params.sparse_vectors or {})
        text_dim = int(text.size) if text is not None and has_words else None
        return CollectionIdentity(model, dim, None if source is None else str(source), text_dim)

    def _create(self, identity: CollectionIdentity, query_metric: QueryMetric | None = None) -> None:
        m = _models()  # a server collection keeps Qdrant's own graph: query_metric is not used
        vectors = {VECTOR_NAME: m.VectorParams(size=identity.dim, distance=m.Distance.COSINE)}
        sparse = None
        if identity.text_dim is not None:
            vectors[TEXT_VECTOR] = m.VectorParams(size=identity.text_dim, distance=m.Distance.COSINE)
            sparse = {WORDS_VECTOR: m.SparseVectorParams(modifier=m.Modifier.IDF)}
        self.client.create_collection(
            self.collection,
            vectors_config=vectors,
            sparse_vectors_config=sparse,
            metadata=_identity_metadata(identity),
        )
        types = {"keyword": m.PayloadSchemaType.KEYWORD, "float": m.PayloadSchemaType.FLOAT,
                 "integer": m.PayloadSchemaType.INTEGER}  # fmt: skip
        with warnings.catch_warnings():
            # local mode warns that payload indexes have no effect there; a server uses them
            warnings.simplefilter("ignore", UserWarning)
            for key, kind in PAYLOAD_INDEXES.items():
                self.client.create_payload_index(self.collection, key, types[kind], wait=True)
        self._create_text_index(TRANSCRIPT_KEY)
        self._text_indexed = True

    def _warn_if_incompatible(self) -> None:
        """Warn when the server is outside qdrant-client's window (same major, minor ±1)."""
        from importlib.metadata import version

        from qdrant_client.common.version_check import is_compatible

        server = self._server_version()
        client = version("qdrant-client")
        if not is_compatible(client, server):
            log.warning(
                "Qdrant server %s runs %s, outside the versions qdrant-client %s supports (same major "
                "version, minor within 1); upgrade the server or install a matching qdrant-client",
                self.location,
                server,
                client,
            )

    def _server_version(self) -> str:
        """The server's version (its first contact): ``StoreError`` naming the URL when what
        answers there is not a Qdrant server (a web page, other JSON, or 404 at its root)."""
        from qdrant_client.http.exceptions import UnexpectedResponse

        what = "reading the server version"
        try:
            return str(self._retry(lambda: self.client.info(), what).version)
        except StoreError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, UnexpectedResponse) and cause.status_code == 404):
                raise
            raise StoreError(self._not_qdrant(what, f"HTTP 404 {cause.reason_phrase}")) from exc

    def _not_qdrant(self, what: str, detail: str) -> str:
        from clasp_ingest.connectors.urls import redact_url

        return (
            f"{redact_url(self.location)!r} did not answer as a Qdrant server ({what}: {detail}); check "
            f"the URL ({self.names.url}): it should be a Qdrant server's address, e.g. http://localhost:6333"
        )

    def _drop(self) -> None:
        self._items = None
        self.client.delete_collection(self.collection)

    # ----- filters

    def _condition(self, cond: Condition) -> Any:
        m = _models()
        if cond.value is not None:
            return m.FieldCondition(key=cond.key, match=m.MatchValue(value=cond.value))
        if cond.any_of is not None:
            return m.FieldCondition(key=cond.key, match=m.MatchAny(any=list(cond.any_of)))
        bounds = m.Range(gte=cond.gte, gt=cond.gt, lte=cond.lte, lt=cond.lt)
        return m.FieldCondition(key=cond.key, range=bounds)

    def _clauses(self, clauses: Sequence[Clause]) -> list[Any] | None:
        built = [self._condition(c) if isinstance(c, Condition) else self._build(c) for c in clauses]
        return built or None

    def _build(self, where: Where) -> models.Filter:
        return _models().Filter(
            must=self._clauses(where.must),
            must_not=self._clauses(where.must_not),
            should=self._clauses(where.should),
        )

    def _filter(self, where: Where) -> models.Filter | None:
        return None if where.empty else self._build(where)

    # ----- primitives

    def _retry(self, func: Callable[[], T], what: str) -> T:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            return super()._retry(func, what)
        except (json.JSONDecodeError, ResponseHandlingException) as exc:  # an answer, but not Qdrant's
            source = exc.source if isinstance(exc, ResponseHandlingException) else exc
            lines = str(source).strip().splitlines()
            detail = f"{type(source).__name__}: {lines[0]}" if lines else type(source).__name__
            raise StoreError(self._not_qdrant(what, detail)) from exc
        except UnexpectedResponse as exc:
            remedy = (
                f"check the API key ({self.names.api_key})"
                if exc.status_code in (401, 403)
                else "see the server's log"
            )
            raise StoreError(
                f"the Qdrant server {self.location!r} refused {what}: HTTP {exc.status_code} "
                f"{exc.reason_phrase}; {remedy}"
            ) from exc

    def _is_transient(self, exc: BaseException) -> bool:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(exc, ResponseHandlingException):  # connection refused / reset / timeout,
            return not isinstance(exc.source, ValueError)  # not an answer that does not parse
        if isinstance(exc, UnexpectedResponse):
            return exc.status_code in _TRANSIENT_STATUS
        return _is_transient_grpc(exc)

    def _upsert(self, points: Sequence[StoredPoint]) -> None:
        m = _models()
        structs = [m.PointStruct(id=p.id, vector=_vectors(p), payload=p.payload) for p in points]
        if not self._by_id:
            self.client.upsert(self.collection, structs, wait=True)
            return
        # the table and the folder change together: a table read by another thread while this
        # upsert ran missed its points, and their item's next write kept this version beside the
        # new one (a failed upsert leaves ids in the table that are not there: harmless)
        with self._items_lock:
            if self._items is not None:
                for p in points:
                    self._items.setdefault(_media_id(p.payload), set()).add(str(p.id))
            self.client.upsert(self.collection, structs, wait=True)

    def _delete(self, where: Where) -> None:
        m = _models()
        selector = m.FilterSelector(filter=self._filter(where) or m.Filter())
        if not self._by_id:
            self.client.delete(self.collection, selector, wait=True)
            return
        with self._items_lock:
            self._items = None  # which points went is not told: the table is read again when needed
            self.client.delete(self.collection, selector, wait=True)

    # ----- one write's steps in a qdrant-client folder: by point id

    @property
    def _by_id(self) -> bool:
        """Whether a write's steps go by point id: in a qdrant-client folder this store opened
        (no other client writes there), whose every filter is checked on every point, in
        Python; a write's four filtered requests made an ingest of N items take O(N^2) (8,000
        points of 1,000 items: 0.53 s a write, 77 ms at the first 250)."""
        return self._owns_client and self._local

    def _item_ids(self, media_id: str) -> set[str]:
        """The ids of item ``media_id``'s points, from a table of every item's point ids read in
        one pass (a scroll of the ids' media), kept as this store writes, read again after a
        delete by filter. Called with ``_items_lock`` held."""
        if self._items is None:
            items: dict[str, set[str]] = {}
            offset = None
            while True:
                records, offset = self.client.scroll(
                    self.collection, limit=4096, offset=offset, with_payload=["metadata"], with_vectors=False
                )
                for r in records:
                    items.setdefault(_media_id(r.payload), set()).add(str(r.id))
                if offset is None:
                    break
            self._items = items
        return self._items.get(media_id, set())

    def _complete_write(self, this: Where, ids: Sequence[str]) -> None:
        if not self._by_id:
            return super()._complete_write(this, ids)
        self._set_payload(ids, {"state": STATE_COMPLETE}, "metadata")

    def _count_write(self, this: Where, ids: Sequence[str]) -> int:
        if not self._by_id:
            return super()._count_write(this, ids)
        return len(self.client.retrieve(self.collection, list(ids), with_payload=False, with_vectors=False))

    def _delete_others(self, media_id: str, others: Where, ids: Sequence[str]) -> None:
        if not self._by_id:
            return super()._delete_others(media_id, others, ids)
        m = _models()
        mine = set(ids)
        with self._items_lock:
            held = self._item_ids(media_id)
            gone = sorted(held - mine)
            if gone:
                self.client.delete(self.collection, m.PointIdsList(points=gone), wait=True)
                held.difference_update(gone)

    def _set_state(self, where: Where, state: str) -> None:
        selector = self._filter(where)
        self.client.set_payload(self.collection, {"state": state}, selector, key="metadata", wait=True)  # type: ignore[arg-type]

    def _set_payload(self, point_ids: Sequence[str], values: dict[str, Any], key: str | None) -> None:
        m = _models()
        ids = list(point_ids)
        if self._local:  # by an id list, of the ids it holds (a missing id fails the request there)
            held = self.client.retrieve(self.collection, ids, with_payload=False, with_vectors=False)
            if held:
                selector = m.PointIdsList(points=[r.id for r in held])
                self.client.set_payload(self.collection, values, selector, key=key, wait=True)
            return
        has_ids = m.Filter(must=[m.HasIdCondition(has_id=ids)])
        self.client.set_payload(self.collection, values, has_ids, key=key, wait=True)

    @property
    def _local(self) -> bool:
        """qdrant-client's local mode, which checks a filter on every point it holds, in Python
        (a filter of N ids on every point: O(points x N) per request; by ids, O(N))."""
        from qdrant_client.local.qdrant_local import QdrantLocal

        return isinstance(getattr(self.client, "_client", None), QdrantLocal)

    def _retrieve(self, point_ids: Sequence[str]) -> list[StoredPoint]:
        ids = list(point_ids)
        records = self.client.retrieve(self.collection, ids, with_payload=True, with_vectors=False)
        return [StoredPoint(str(r.id), dict(r.payload or {})) for r in records]

    def _create_text_index(self, key: str) -> None:
        m = _models()
        params = m.TextIndexParams(
            type=m.TextIndexType.TEXT, tokenizer=m.TokenizerType.MULTILINGUAL, lowercase=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode: indexes have no effect
            self.client.create_payload_index(self.collection, key, params, wait=True)

    def _count(self, where: Where) -> int:
        return int(self.client.count(self.collection, count_filter=self._filter(where), exact=True).count)

    def _search_params(self) -> Any:
        return None if self.hnsw_ef is None else _models().SearchParams(hnsw_ef=self.hnsw_ef)

    def _query(
        self, vector: list[float], limit: int, where: Where, score_threshold: float | None
    ) -> list[StoredPoint]:
        response = self.client.query_points(
            self.collection,
            query=vector,
            using=VECTOR_NAME,
            limit=limit,
            query_filter=self._filter(where),
            score_threshold=score_threshold,
            with_payload=True,
            search_params=self._search_params(),
        )
        return [StoredPoint(str(p.id), dict(p.payload or {}), score=float(p.score)) for p in response.points]

    def _query_hybrid(
        self, query: HybridQuery, limit: int, prefetch: int, where: Where, score_threshold: float | None
    ) -> list[StoredPoint]:
        m = _models()
        flt, params = self._filter(where), self._search_params()
        stages = [
            m.Prefetch(query=query.clasp, using=VECTOR_NAME, limit=prefetch, filter=flt, params=params,
                       score_threshold=score_threshold),
            m.Prefetch(query=query.text, using=TEXT_VECTOR, limit=prefetch, filter=flt, params=params),
        ]  # fmt: skip
        if query.words:
            words = m.SparseVector(indices=list(query.words.indices), values=list(query.words.values))
            stages.append(m.Prefetch(query=words, using=WORDS_VECTOR, limit=prefetch, filter=flt))
        response = self.client.query_points(
            self.collection,
            prefetch=stages,
            query=m.RrfQuery(rrf=m.Rrf(k=query.k, weights=list(query.weights[: len(stages)]))),
            limit=limit,
            query_filter=flt,
            with_payload=True,
            with_vectors=[VECTOR_NAME],
        )
        return [replace(point_from_record(p, True), score=float(p.score)) for p in response.points]

    def _query_groups(
        self, vector: list[float], k: int, group_size: int, where: Where, score_threshold: float | None
    ) -> list[list[StoredPoint]]:
        response = self.client.query_points_groups(
            self.collection,
            group_by="metadata.media_id",
            query=vector,
            using=VECTOR_NAME,
            limit=k,
            group_size=group_size,
            query_filter=self._filter(where),
            score_threshold=score_threshold,
            with_payload=True,
            search_params=self._search_params(),
        )
        return [
            [StoredPoint(str(p.id), dict(p.payload or {}), score=float(p.score)) for p in group.hits]
            for group in response.groups
        ]

    def _scroll(
        self, where: Where, limit: int, offset: str | None, with_vectors: bool
    ) -> tuple[list[StoredPoint], str | None]:
        records, next_offset = self.client.scroll(
            self.collection,
            scroll_filter=self._filter(where),
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=with_vectors,
        )
        points = [point_from_record(r, with_vectors) for r in records]
        return points, None if next_offset is None else str(next_offset)

    # ----- bulk: Qdrant's advice for large uploads is to pause indexing, then restore it

    def _begin_bulk(self) -> None:
        m = _models()
        if self.identity is None:
            return
        current = self.client.get_collection(self.collection).config.optimizer_config.indexing_threshold
        self._indexing_threshold = _DEFAULT_INDEXING_THRESHOLD_KB if current is None else int(current)
        self.client.update_collection(
            self.collection, optimizers_config=m.OptimizersConfigDiff(indexing_threshold=0)
        )

    def _end_bulk(self) -> None:
        if self._indexing_threshold is None:
            return
        m = _models()
        diff = m.OptimizersConfigDiff(indexing_threshold=self._indexing_threshold)
        self.client.update_collection(self.collection, optimizers_config=diff)
        self._indexing_threshold = None


def _vectors(point: StoredPoint) -> dict[str, Any]:
    """The point's named vectors. An ``"empty"`` marker gets none: a server's or a folder's
    collection is also searched by other clients (langchain-qdrant, the dashboard), which
    do not leave markers out, and its unit-axis vector (what the embedded engine needs) made
    it a hit of every query, "no speech found" among the spans."""
    if point.payload.get("metadata", {}).get("state") == STATE_EMPTY:
        return {}
    vectors: dict[str, Any] = {VECTOR_NAME: point.vector}
    if point.text_vector is not None:
        vectors[TEXT_VECTOR] = point.text_vector
    if point.sparse:
        indices, values = list(point.sparse.indices), list(point.sparse.values)
        vectors[WORDS_VECTOR] = _models().SparseVector(indices=indices, values=values)
    return vectors


def _identity_metadata(identity: CollectionIdentity) -> dict[str, Any]:
    meta: dict[str, Any] = {"clasp_model": identity.model_id, "clasp_dim": identity.dim}
    if identity.source is not None:
        meta["clasp_model_source"] = identity.source
    return meta


def _is_transient_grpc(exc: BaseException) -> bool:
    try:
        import grpc
    except ImportError:  # pragma: no cover - grpcio comes with qdrant-client
        return False
    if not isinstance(exc, grpc.RpcError) or not hasattr(exc, "code"):
        return False
    return exc.code() in {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }


def _media_id(payload: Any) -> str:
    """The ``metadata.media_id`` of a point's payload ("" where it has none)."""
    meta = (payload or {}).get("metadata")
    return str(meta.get("media_id", "")) if isinstance(meta, dict) else ""
