"""The store interface and the logic both backends share.

A backend implements a handful of primitives (create, upsert, delete, count, query, scroll)
over an engine-neutral filter (:class:`Where`); :class:`QdrantStore` builds everything else
on them: point ids, langchain-qdrant-compatible payloads, media-level replace, retries.

Replace protocol of one media item (``write_media``):

1. upsert every point of the new version with ``metadata.state = "writing"``;
2. mark that version ``"complete"`` (one payload update by filter);
3. delete the item's points of any other version.

Point ids include the version, so a new version never overwrites a point of the old one
(even where both have a span with the same boundaries): the old version stays whole and
searchable until the new one is complete, whenever the writer dies. Searches only see
``complete`` points, so a reader never sees a half-written version; a failure at any step
deletes what was written for the new version. An item in which no speech was found is
stored as one ``"empty"`` marker point (never returned by searches), so it is skipped while
unchanged instead of being decoded again on every run.
"""

from __future__ import annotations

import abc
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import numpy as np

from clasp_ingest.errors import CollectionMismatchError, ConfigError, StoreError
from clasp_ingest.log import error_line, get_logger
from clasp_ingest.store.filters import (
    Condition,
    FilterLike,
    SearchFilter,
    Where,
    meta_equals,
    meta_key,
    to_where,
)
from clasp_ingest.store.metric import QueryMetric
from clasp_ingest.types import MEDIA_NAMESPACE, MediaRef, Segment, SpanHit
from clasp_ingest.words import SpanWords, SparseWords

__all__ = [
    "DEFAULT_COLLECTION",
    "STATE_COMPLETE",
    "STATE_EMPTY",
    "STATE_WRITING",
    "TEXT_VECTOR",
    "TRANSCRIPT_KEY",
    "VECTOR_NAME",
    "WORDS_VECTOR",
    "Batch",
    "CollectionIdentity",
    "Condition",
    "HybridQuery",
    "QdrantStore",
    "RetryOptions",
    "SearchFilter",
    "StoreNames",
    "StoredMedia",
    "StoredPoint",
    "Where",
    "WriteOptions",
    "build_payload",
    "check_collection_name",
    "format_timestamp",
    "fused_order",
    "point_id",
    "rrf_score",
    "score_order",
    "span_url",
    "transcript_of",
    "with_retry",
]

log = get_logger("store")

VECTOR_NAME = "clasp"
#: The dense vector of a span's words (the model's text tower, passage mode); ingest --transcribe.
TEXT_VECTOR = "text"
#: The sparse vector of a span's words (hashed word unigrams, IDF applied by Qdrant).
WORDS_VECTOR = "words"
#: Reciprocal rank fusion (Qdrant's formula): a point's fused score is the sum, over the rankings
#: it is in, of ``1 / ((rank + 1) / weight + k - 1)`` (rank from 0; ``1 / (k + rank)`` at weight
#: 1). ``k`` is Qdrant's default.
RRF_K = 2
#: The weights of the ``clasp``, ``text`` and ``words`` rankings: equal, Qdrant's default (no
#: weighting was better on both the bundled samples and real speech: bench/bench_hybrid.py --grid).
RRF_WEIGHTS = (1.0, 1.0, 1.0)
DEFAULT_COLLECTION = "clasp_segments"
STATE_WRITING = "writing"
STATE_COMPLETE = "complete"
#: The state of the one marker point of a media item in which no speech was found.
STATE_EMPTY = "empty"

#: Payload indexes every collection gets (key → "keyword" | "float" | "integer").
PAYLOAD_INDEXES: dict[str, str] = {
    "metadata.media_id": "keyword",
    "metadata.source": "keyword",
    "metadata.version": "keyword",
    "metadata.language": "keyword",
    "metadata.state": "keyword",
    "metadata.start_s": "float",
    "metadata.end_s": "float",
    "metadata.segment_index": "integer",
}

#: The payload key of a span's words; it gets a full-text index (multilingual tokenizer).
TRANSCRIPT_KEY = "metadata.transcript"

#: Who wrote a span's words: ``"search"`` for lazy words (payload only); absent for words
#: written with the span by ``ingest --transcribe`` (with their word vectors).
TRANSCRIPT_FROM = "transcript_from"
FROM_SEARCH = "search"

#: How an item's channels were mixed to mono where not by ffmpeg's downmix: ``"even"`` for a
#: track without a channel layout (every channel alike; span cuts of the item do the same).
CHANNEL_MIX = "channel_mix"

#: Payload keys this project owns; connector metadata cannot override them.
_RESERVED = (
    "media_id",
    "source",
    "title",
    "start_s",
    "end_s",
    "duration_s",
    "segment_index",
    "url",
    "version",
    "model",
    "ingested_at",
    "write_id",
    TRANSCRIPT_FROM,
    "state",
)

T = TypeVar("T")


# --------------------------------------------------------------------------- points and payloads


@dataclass(frozen=True)
class StoredPoint:
    """A point as the engines return it (ids as strings; vector only when asked for).

    ``text_vector`` and ``sparse``: the word vectors of a span transcribed at ingest (written
    only into a collection that has them)."""

    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None
    score: float = 0.0
    text_vector: list[float] | None = None
    sparse: SparseWords | None = None


@dataclass(frozen=True)
class CollectionIdentity:
    """Which model made a collection's vectors, and their dimension.

    ``source``: the preset name or model directory the vectors were made with, a hint for
    loading the same model to search (not part of the identity: equal ids and dims match).
    ``text_dim``: the width of the collection's ``text`` vector when it has the word vectors
    (``text`` dense and ``words`` sparse; made by ``ingest --transcribe``), else None.
    """

    model_id: str
    dim: int
    source: str | None = field(default=None, compare=False)
    text_dim: int | None = field(default=None, compare=False)


def point_id(
    media_id: str, model_id: str, version: str, start_ms: int, end_ms: int, write_id: str = ""
) -> str:
    """Deterministic point id of a span of one write (``write_id``) of a version of a media item.

    Every write of an item gets ids of its own, even of the version stored (``--force``, words
    added, a new segmentation), so it never overwrites the stored points: those stay whole and
    searchable until the write completes, and a write cut off leaves them as they were.
    """
    name = f"{media_id}:{model_id}:{version}:{start_ms}:{end_ms}"
    return _uuid5_text(_NAMESPACE_BYTES, f"{name}:{write_id}" if write_id else name)


_NAMESPACE_BYTES = MEDIA_NAMESPACE.bytes


def _uuid5_text(namespace: bytes, name: str) -> str:
    """``str(uuid.uuid5(UUID(bytes=namespace), name))`` without building UUID objects (a
    write makes one id per span: this takes a quarter of the time)."""
    digest = bytearray(hashlib.sha1(namespace + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def format_timestamp(seconds: float) -> str:
    """``hh:mm:ss.mmm``."""
    ms = round(seconds * 1000)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _seconds_text(seconds: float) -> str:
    return f"{round(seconds, 3):.3f}".rstrip("0").rstrip(".")


def span_url(source: str, start_s: float, end_s: float) -> str:
    """A media-fragment deep link: ``source#t=start,end`` (seconds; the fragment of an http(s)
    ``source`` is replaced: elsewhere ``#`` may be part of a name, e.g. an S3 key)."""
    if source.lower().startswith(("http://", "https://")):
        source = source.split("#", 1)[0]
    return f"{source}#t={_seconds_text(start_s)},{_seconds_text(end_s)}"


def page_content(title: str, source: str, start_s: float, end_s: float) -> str:
    """The text naming a span: ``<title> [hh:mm:ss.mmm–hh:mm:ss.mmm]``."""
    return f"{title or source} [{format_timestamp(start_s)}–{format_timestamp(end_s)}]"


def _json_safe(metadata: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, str):
            safe[str(key)] = _utf8_text(value)
        elif value is None or isinstance(value, int | float | bool | list | dict):
            safe[str(key)] = value
        else:
            safe[str(key)] = _utf8_text(str(value))
    return safe


def _utf8_text(text: str) -> str:
    """``text`` as valid UTF-8 for a JSON payload: lone surrogates (the undecodable bytes of
    a non-UTF-8 file name, kept by ``surrogateescape``) become ``\\xNN`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # other lone surrogates: ``\\udNNN``
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


#: Characters a collection name may not hold: a path separator or what Qdrant refuses.
_NAME_FORBIDDEN = frozenset('/\\<>:"|?*') | {chr(c) for c in range(32)} | {chr(127)}


def check_collection_name(name: str, *, option: str = "--collection, CLASP_COLLECTION") -> None:
    """Refuse a collection name that is not one plain name (``ConfigError``): empty, over 255
    characters, ``.`` or ``..`` (the embedded store's directory or the one above it), or holding
    ``/``, ``\\``, ``<>:"|?*`` or a control character (Qdrant's own rule for new names).
    ``option``: what the user set the name with, for the message."""
    bad = sorted({c for c in name if c in _NAME_FORBIDDEN})
    if not name or len(name.encode("utf-8", "surrogatepass")) > 255 or name in (".", "..") or bad:
        why = f"holds {''.join(bad)!r}" if bad else "must be 1-255 bytes (UTF-8), not '.' or '..'"
        raise ConfigError(f"collection name {name!r} {why}; use letters, digits, '_', '-' or '.' ({option})")


@dataclass(frozen=True)
class StoreNames:
    """How the user named a store, for its messages: the options and variables of its URL, of
    its API key, and those that choose the store and collection (``store export`` reads its
    source with ``--qdrant-path`` and names its target with ``--to``). The defaults are
    :func:`~clasp_ingest.store.open_store`'s arguments, for a Python caller; the command line
    passes :data:`CLI_NAMES`, a flow its parameters."""

    url: str = "open_store(url=...)"
    api_key: str = "open_store(api_key=...)"
    store: str = "open_store(collection=..., path=... or url=...)"
    #: How a run names another collection, recreates one, and picks a model (a flow has
    #: parameters, and no way to recreate).
    collection: str = "open_store(collection=NAME)"
    recreate: str = "store.drop()"
    model: str = "{!r}"
    #: What gave the collection's name, for a name that is no name (``a/b``).
    name: str = "open_store(collection=...)"
    #: What gave an embedded store's folder.
    path: str = "open_store(path=...)"


#: How the command line names a store: its options and variables.
CLI_NAMES = StoreNames(
    url="--qdrant-url, CLASP_QDRANT_URL",
    api_key="--api-key / CLASP_QDRANT_API_KEY",
    store="--collection / --qdrant-path / --qdrant-url",
    collection="--collection NAME",
    recreate="--recreate",
    model="--model {}",
    name="--collection, CLASP_COLLECTION",
    path="--qdrant-path, CLASP_QDRANT_PATH",
)


@dataclass(frozen=True)
class StoredMedia:
    """One stored version of a media item (``clasp-ingest store list``).

    ``state``: ``"complete"`` (searchable), ``"empty"`` (no speech found) or ``"writing"``
    (being written, or left by a run that stopped; the next run rewrites it); ``spans``: its
    searchable spans."""

    media_id: str
    source: str
    title: str
    version: str
    model: str
    ingested_at: str
    state: str
    spans: int


def build_payload(
    ref: MediaRef, model_id: str, segment: Segment, ingested_at: str, write_id: str = ""
) -> dict[str, Any]:
    """langchain-qdrant layout: ``{"page_content": ..., "metadata": {...}}``."""
    return PayloadMaker(ref, model_id, ingested_at, write_id)(segment)


class PayloadMaker:
    """:func:`build_payload` for many segments of one item: what they share is made once."""

    def __init__(self, ref: MediaRef, model_id: str, ingested_at: str, write_id: str = "") -> None:
        extra = {k: v for k, v in _json_safe(ref.metadata).items() if k not in _RESERVED}
        self._title, self._source = _utf8_text(ref.title), _utf8_text(ref.uri)
        # the key order of the payload as stored: shared keys, then the span's, then the rest
        self._head = {**extra, "media_id": ref.media_id, "source": self._source, "title": self._title}
        self._tail = {"version": ref.fingerprint, "model": model_id, "ingested_at": ingested_at,
                      **({"write_id": write_id} if write_id else {}), "state": STATE_WRITING}  # fmt: skip

    def __call__(self, segment: Segment) -> dict[str, Any]:
        start, end = segment.start_s, segment.end_s
        meta: dict[str, Any] = {
            **self._head,
            "start_s": round(start, 3),
            "end_s": round(end, 3),
            "duration_s": round(end - start, 3),
            "segment_index": segment.index,
            "url": span_url(self._source, start, end),
            **self._tail,
        }
        return {"page_content": page_content(self._title, self._source, start, end), "metadata": meta}


def empty_marker(ref: MediaRef, model_id: str, dim: int, ingested_at: str, write_id: str = "") -> StoredPoint:
    """The point recording that ``ref``'s version holds no speech (state ``"empty"``).

    Its vector is a unit axis (the engines need one); searches never return it.
    """
    extra = {k: v for k, v in _json_safe(ref.metadata).items() if k not in _RESERVED}
    meta: dict[str, Any] = {
        **extra,
        "media_id": ref.media_id,
        "source": ref.uri,
        "title": ref.title,
        "start_s": 0.0,
        "end_s": 0.0,
        "duration_s": 0.0,
        "segment_index": -1,
        "url": ref.uri,
        "version": ref.fingerprint,
        "model": model_id,
        "ingested_at": ingested_at,
        **({"write_id": write_id} if write_id else {}),
        "state": STATE_EMPTY,
    }
    vector = [0.0] * dim
    vector[0] = 1.0
    payload = {"page_content": f"{ref.title or ref.uri} (no speech found)", "metadata": meta}
    return StoredPoint(point_id(ref.media_id, model_id, ref.fingerprint, -1, -1, write_id), payload, vector)


def hit_from_point(point: StoredPoint) -> SpanHit:
    meta = point.payload.get("metadata", {})
    return SpanHit(
        media_id=str(meta.get("media_id", "")),
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        start_s=float(meta.get("start_s", 0.0)),
        end_s=float(meta.get("end_s", 0.0)),
        score=float(point.score),
        url=str(meta.get("url", "")),
        payload=point.payload,
        point_id=point.id,
    )


def point_from_record(record: Any, with_vectors: bool) -> StoredPoint:
    """An engine's record (``id``, ``payload``, ``vector``: a dict by vector name, a sparse one
    with ``indices`` and ``values``) as a :class:`StoredPoint`, with its ``clasp`` vector and
    word vectors when ``with_vectors``."""
    payload = dict(record.payload or {})
    vectors = record.vector if with_vectors and isinstance(record.vector, dict) else {}
    clasp, text, sparse = vectors.get(VECTOR_NAME), vectors.get(TEXT_VECTOR), vectors.get(WORDS_VECTOR)
    return StoredPoint(
        str(record.id),
        payload,
        [float(x) for x in clasp] if clasp is not None else None,
        text_vector=[float(x) for x in text] if text is not None else None,
        sparse=SparseWords(tuple(sparse.indices), tuple(sparse.values)) if sparse is not None else None,
    )


def transcript_of(payload: dict[str, Any]) -> str | None:
    """A point's words (``metadata.transcript``), or None when it has not been transcribed."""
    text = payload.get("metadata", {}).get("transcript")
    return text if isinstance(text, str) else None


def words_metadata(text: str, language: str, model: str, english: str | None = None) -> dict[str, Any]:
    """The ``metadata`` keys a transcribed point gains (``transcript_en``: the English translation)."""
    values: dict[str, Any] = {"transcript": text, "transcript_language": language, "transcript_model": model}
    if english is not None:
        values["transcript_en"] = english
    return values


def with_words(point: StoredPoint, words: SpanWords) -> StoredPoint:
    """``point`` with a span's ingest-time words: the payload keys lazy transcription writes
    (``page_content`` becomes the words when any were heard) and the two word vectors."""
    meta = {**point.payload["metadata"], **words_metadata(words.text, words.language, words.model)}
    payload = {**point.payload, "metadata": meta}
    if words.text:
        payload["page_content"] = words.text
    dense = list(words.dense) if words.dense is not None else None
    return StoredPoint(point.id, payload, point.vector, text_vector=dense, sparse=words.sparse or None)


#: What ``write_media`` takes per batch: segments and their vectors (and, with ingest-time
#: words, each segment's :class:`~clasp_ingest.words.SpanWords`).
Batch = tuple[Sequence[Segment], np.ndarray] | tuple[Sequence[Segment], np.ndarray, Sequence[SpanWords]]


@dataclass(frozen=True)
class HybridQuery:
    """One query for hybrid search: the model's query vector (``clasp``), the text tower's
    query vector of the same text (``text``) and its words (``words``); the fusion's ``k``
    and the ``weights`` of the three rankings (``clasp``, ``text``, ``words``)."""

    clasp: list[float]
    text: list[float]
    words: SparseWords
    k: int = RRF_K
    weights: tuple[float, float, float] = RRF_WEIGHTS

    def __post_init__(self) -> None:
        if self.k < 1 or len(self.weights) != 3 or min(self.weights) <= 0:
            raise ValueError(f"RRF needs k >= 1 and three positive weights, got k={self.k}, {self.weights}")


#: Fused scores this close (relative) are a tie: an engine sums a span's RRF terms in its own
#: precision and order, so 1/4 + 1/4 + 1/5 and 1/5 + 1/6 + 1/3 (both 0.7) came back a bit apart,
#: and Qdrant Edge and qdrant-client ordered the two spans oppositely.
FUSED_TIE = 1e-6


def same_fused(a: float, b: float) -> bool:
    """Whether fused scores ``a`` and ``b`` are equal but for rounding (:data:`FUSED_TIE`)."""
    return math.isclose(a, b, rel_tol=FUSED_TIE)


def _tied_past(points: Sequence[StoredPoint], k: int) -> bool:
    """Whether the last of ``points`` (by fused score, more than ``k``) ties the ``k``-th."""
    last, kth = points[-1].score, points[k - 1].score
    return last >= kth or same_fused(last, kth)


def fused_order(points: Sequence[StoredPoint], clasp: Sequence[float]) -> list[StoredPoint]:
    """``points`` by fused score, ties (:func:`same_fused`) by the cosine of their ``clasp``
    vector to the query's (the model's own judgement), then by id: the same order on every call
    and either engine; tied points get the best score of their tie, so a later sort by score
    keeps the order. The engines break RRF ties in no fixed order, so without this the same
    search on the same store returned its tied spans shuffled from one call to the next."""
    query = np.asarray(clasp, dtype=np.float64)

    def cosine(p: StoredPoint) -> float:
        return float(np.dot(np.asarray(p.vector, dtype=np.float64), query)) if p.vector else -math.inf

    ordered: list[StoredPoint] = []
    for run in tie_runs([p.score for p in points], same_fused):
        best = max(points[i].score for i in run)
        ordered += sorted((replace(points[i], score=best) for i in run), key=lambda p: (-cosine(p), p.id))
    return ordered


def tie_runs(scores: Sequence[float], same: Callable[[float, float], bool]) -> list[list[int]]:
    """The indices of ``scores``, best first, in runs of ties: each run holds the scores that
    ``same(best of the run, score)`` calls equal, its indices in their given order (a caller
    orders a run by its own rule and gives it one score, so a later sort keeps the order)."""
    runs: list[list[int]] = []
    run: list[int] = []
    for i in sorted(range(len(scores)), key=lambda j: -scores[j]):
        if run and not same(scores[run[0]], scores[i]):
            runs.append(sorted(run))
            run = []
        run.append(i)
    return [*runs, sorted(run)] if run else runs


#: How many spans :meth:`QdrantStore.search` fetches past ``k``: enough that a few spans tied at
#: the ``k``-th place (the same audio under two names, as one episode in two feeds) are seen
#: whole in one call, and cheap when nothing ties.
TIE_FETCH = 4
#: At most this many spans past ``k`` are fetched to resolve a tie at the ``k``-th place; past
#: them (the same jingle in thousands of episodes) the engine picks which tied spans make the cut.
TIE_FETCH_MAX = 64


#: How far float32 rounding moves a cosine: Qdrant Edge scored spans against their own vectors
#: 0.99999976 to 1.00000024, qdrant-client 0.99999994 to 1.0000001 (8- to 1024-d vectors; the
#: engines differed by up to 3.2e-7 on one span). ``score_threshold`` is applied this much
#: lower (:func:`engine_threshold`).
SCORE_TOLERANCE = 1e-6


def engine_threshold(threshold: float | None) -> float | None:
    """``threshold`` as the engines are asked to apply it: :data:`SCORE_TOLERANCE` lower, so a
    span scoring the threshold passes on every engine. Compared as given, rounding decided:
    at 1.0 (each span searched with its own vector) Qdrant Edge found 5 of 20 spans and
    qdrant-client 19, and at -1.0 an antipodal span was missing on one engine only."""
    return None if threshold is None else threshold - SCORE_TOLERANCE


def tie_key(score: float) -> float:
    """``score`` at float32 precision, the precision of the stored vectors, as Qdrant Edge and
    the server compute it, and within a cosine's range [-1, 1] (Edge scored a span against its
    own vector up to 1.00000024). qdrant-client's local mode scores in float64, where two copies
    of a span can differ in the last bits (0.0471075454222627 and 0.04710754542226269), so its
    raw scores would order the copies by that noise, unlike the other engines."""
    return min(1.0, max(-1.0, float(np.float32(score))))


def score_order(points: Sequence[StoredPoint]) -> list[StoredPoint]:
    """``points`` by score (:func:`tie_key`), equal scores by point id: the same order at every
    ``k`` and on every engine. The engines order equal scores in no fixed way, and differently
    from each other and from one ``limit`` to the next."""
    return sorted(points, key=lambda p: (-tie_key(p.score), p.id))


def rrf_score(ranks: Sequence[int | None], k: int = RRF_K, weights: Sequence[float] = RRF_WEIGHTS) -> float:
    """The fused score of a point at ``ranks`` (from 0; None: not in that ranking) — what both
    engines compute."""
    return sum(1.0 / ((r + 1) / w + k - 1) for r, w in zip(ranks, weights, strict=True) if r is not None)


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryOptions:
    """Exponential backoff for transient engine errors (connection drops, 429/5xx)."""

    attempts: int = 5
    initial_s: float = 0.2
    max_s: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryOptions.attempts must be >= 1, got {self.attempts}")


@dataclass(frozen=True)
class WriteOptions:
    """How points are written: points per upsert request and the retry policy."""

    batch_size: int = 256
    retry: RetryOptions = field(default_factory=RetryOptions)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"WriteOptions.batch_size must be >= 1, got {self.batch_size}")


def with_retry(
    func: Callable[[], T],
    *,
    options: RetryOptions,
    is_transient: Callable[[BaseException], bool],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    url_option: str = StoreNames.url,
) -> T:
    """Call ``func``; on a transient error wait and try again, up to ``options.attempts``
    (``url_option``: where the user gave the server's URL, named when the attempts run out)."""
    delay = options.initial_s
    for attempt in range(1, options.attempts + 1):
        try:
            return func()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == options.attempts:
                raise StoreError(
                    f"{what} failed {attempt} times ({error_line(exc)}); check that the Qdrant "
                    f"server is reachable and healthy and that the URL is right ({url_option})"
                ) from exc
            log.info("%s failed (%s); retry %d/%d in %.2fs", what, exc, attempt, options.attempts, delay)
            sleep(delay)
            delay = min(delay * options.multiplier, options.max_s)
    raise AssertionError("unreachable")  # pragma: no cover


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------- the store


class QdrantStore(abc.ABC):
    """One Qdrant collection of CLASP span vectors; see the module doc for the write protocol."""

    #: "edge" or "client"; set by subclasses.
    backend: str = ""
    #: Where the store lives, for messages: a directory or a server URL; set by subclasses.
    location: str = ""
    #: The options that named the store, for messages (``open_store(names=...)`` sets others).
    names: StoreNames = StoreNames()

    def __init__(self, collection: str = DEFAULT_COLLECTION, *, write: WriteOptions | None = None) -> None:
        check_collection_name(collection, option=self.names.name)
        self.collection = collection
        self.write_options = write or WriteOptions()
        self._identity: CollectionIdentity | None = None
        self._making = threading.Lock()  # one ensure_collection at a time (threads sharing a store)
        self._bulk_depth = 0
        self._text_indexed = False

    # ----- primitives a backend implements

    @abc.abstractmethod
    def _read_identity(self) -> CollectionIdentity | None:
        """The stored identity, or None when the collection does not exist."""

    @abc.abstractmethod
    def _create(self, identity: CollectionIdentity, query_metric: QueryMetric | None = None) -> None:
        """Create the collection (named cosine vector, payload indexes, identity); a backend
        may use ``query_metric`` for its graph."""

    @abc.abstractmethod
    def _drop(self) -> None:
        """Delete the collection and everything in it."""

    @abc.abstractmethod
    def _upsert(self, points: Sequence[StoredPoint]) -> None: ...

    @abc.abstractmethod
    def _delete(self, where: Where) -> None: ...

    @abc.abstractmethod
    def _set_state(self, where: Where, state: str) -> None:
        """Set ``metadata.state`` on the points matching ``where``."""

    @abc.abstractmethod
    def _set_payload(self, point_ids: Sequence[str], values: dict[str, Any], key: str | None) -> None:
        """Set ``values`` in the payload of the points ``point_ids`` (under ``key``, e.g.
        ``"metadata"``, or at the top level when None); ids of points that no longer exist are
        skipped."""

    @abc.abstractmethod
    def _retrieve(self, point_ids: Sequence[str]) -> list[StoredPoint]:
        """The points with these ids that exist (payloads, no vectors), in any order."""

    @abc.abstractmethod
    def _create_text_index(self, key: str) -> None:
        """Create a full-text payload index on ``key`` (idempotent)."""

    @abc.abstractmethod
    def _count(self, where: Where) -> int: ...

    @abc.abstractmethod
    def _query(
        self, vector: list[float], limit: int, where: Where, score_threshold: float | None
    ) -> list[StoredPoint]: ...

    @abc.abstractmethod
    def _query_hybrid(
        self, query: HybridQuery, limit: int, prefetch: int, where: Where, score_threshold: float | None
    ) -> list[StoredPoint]:
        """One Query API call: ``prefetch`` candidates from each of the ``clasp``, ``text`` and
        ``words`` vectors (``score_threshold`` on the ``clasp`` one; no ``words`` one when the
        query has no words), fused by RRF with ``query.k`` and ``query.weights``."""

    @abc.abstractmethod
    def _scroll(
        self, where: Where, limit: int, offset: str | None, with_vectors: bool
    ) -> tuple[list[StoredPoint], str | None]: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine (flushes an embedded store)."""

    def _is_transient(self, exc: BaseException) -> bool:
        return False

    def _begin_bulk(self) -> None:  # noqa: B027 - optional hook
        """Hook: prepare for a large ingest (defer index building)."""

    def _end_bulk(self) -> None:  # noqa: B027 - optional hook
        """Hook: finish a large ingest (build indexes, flush)."""

    # ----- collection

    @property
    def identity(self) -> CollectionIdentity | None:
        if self._identity is None:
            self._identity = self._read_identity()
        return self._identity

    def exists(self) -> bool:
        return self.identity is not None

    @property
    def has_word_vectors(self) -> bool:
        """True when the collection has the ``text`` and ``words`` vectors (hybrid search)."""
        identity = self.identity
        return identity is not None and identity.text_dim is not None

    def ensure_collection(
        self,
        model_id: str,
        dim: int,
        *,
        recreate: bool = False,
        source: str | None = None,
        text_dim: int | None = None,
        query_metric: QueryMetric | None = None,
    ) -> bool:
        """Create the collection for ``model_id``; raise if it exists for another model or dim.

        ``source`` (the preset name or model directory) is recorded with a new collection.
        ``query_metric`` (the model's, :func:`clasp_ingest.store.metric.QueryMetric.fit` on its
        query bank): a new embedded collection builds its HNSW graph in that query-aware space
        (a server collection, or an existing one, keeps its plain graph).
        ``text_dim``: the collection must have the word vectors (``text``, ``text_dim`` wide,
        and sparse ``words``): a new one gets them, an existing one without them is refused
        (``CollectionMismatchError``; nothing is written). Returns True when the collection
        was created by this call.
        """
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        with self._making:  # a thread would take another's create in progress for a cut-off one
            return self._ensure(model_id, dim, recreate, source, text_dim, query_metric)

    def _ensure(
        self,
        model_id: str,
        dim: int,
        recreate: bool,
        source: str | None,
        text_dim: int | None,
        query_metric: QueryMetric | None,
    ) -> bool:
        wanted = CollectionIdentity(model_id, dim, source, text_dim)
        current = self.identity
        lacks_words = current is not None and text_dim is not None and current.text_dim != text_dim
        if current is not None and (current != wanted or lacks_words) and recreate:
            log.warning("dropping collection %r (%s) to recreate it for %s", self.collection, current, wanted)
            self._drop()
            current = None
        if current is None:
            self._create(wanted, query_metric)
            self._identity = wanted
            log.info("created %s collection %r for %s (%d-d)", self.backend, self.collection, model_id, dim)
            return True
        if current != wanted:
            raise CollectionMismatchError(
                f"collection {self.collection!r} stores {current.dim}-d vectors of model "
                f"{current.model_id!r}, but model {model_id!r} makes {dim}-d vectors; use another "
                f"collection ({self.names.collection}) or recreate it ({self.names.recreate}; deletes its "
                "points) and re-ingest"
            )
        if text_dim is not None and current.text_dim != text_dim:
            raise CollectionMismatchError(
                _no_word_vectors(self.collection, current.text_dim, text_dim, self.names)
            )
        return False

    def drop(self) -> None:
        """Delete the collection with all its points."""
        if self.exists():
            self._drop()
        self._identity = None

    def require_collection(self) -> CollectionIdentity:
        """The collection's identity; ``StoreError`` naming the store when it does not exist."""
        identity = self.identity
        if identity is None:
            raise StoreError(self._no_collection())
        return identity

    def _no_collection(self, aside: str = "") -> str:
        """Why :meth:`require_collection` found no collection (``aside``: what the store holds,
        in parentheses after its name), with the remedy."""
        return (
            f"collection {self.collection!r} does not exist in the {self.backend} store "
            f"{self.location!r}{aside}; ingest some media first, or pass the right {self.names.store}"
        )

    # ----- writing

    def _retry(self, func: Callable[[], T], what: str) -> T:
        where = f"{what} ({self.backend} store {self.location!r})"
        return with_retry(
            func,
            options=self.write_options.retry,
            is_transient=self._is_transient,
            what=where,
            url_option=self.names.url,
        )

    def upsert_points(self, points: Sequence[StoredPoint]) -> None:
        """Upsert ready-made points in batches with retries (used by export and bulk loads)."""
        size = self.write_options.batch_size
        for chunk in _chunks(points, size):
            self._retry(lambda c=chunk: self._upsert(c), f"upsert of {len(chunk)} points")  # type: ignore[misc]

    def _points_for(
        self,
        ref: MediaRef,
        model_id: str,
        segments: Sequence[Segment],
        vectors: np.ndarray,
        now: str,
        words: Sequence[SpanWords] | None = None,
        write_id: str = "",
    ) -> list[StoredPoint]:
        identity = self.require_collection()
        if words is not None and len(words) != len(segments):
            raise ValueError(f"{ref.uri!r}: {len(words)} span words for {len(segments)} segments")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(segments), identity.dim):
            raise ValueError(
                f"{ref.uri!r}: expected vectors of shape ({len(segments)}, {identity.dim}), "
                f"got {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            raise ValueError(f"{ref.uri!r}: the model produced non-finite vectors; check the model and input")
        payload = PayloadMaker(ref, model_id, now, write_id)
        points = []
        for seg, vec in zip(segments, vectors.tolist(), strict=True):
            if seg.media_id != ref.media_id:
                raise ValueError(f"segment of media {seg.media_id!r} passed with media {ref.media_id!r}")
            pid = point_id(ref.media_id, model_id, ref.fingerprint, seg.start_ms, seg.end_ms, write_id)
            points.append(StoredPoint(pid, payload(seg), vec))
        if words is not None:
            points = [with_words(p, w) for p, w in zip(points, words, strict=True)]
        return points

    def write_media(self, ref: MediaRef, model_id: str, batches: Iterable[Batch]) -> int:
        """Write one media item's version ``ref.fingerprint`` and replace any other version.

        A batch is ``(segments, vectors)``, or ``(segments, vectors, words)`` with each
        segment's ingest-time words (the collection must have the word vectors).

        Batches are upserted as they come (memory stays flat); the version becomes visible
        to searches only once complete. No batch at all (no speech) stores the item's
        ``"empty"`` marker instead. Each write has points of its own (``metadata.write_id``),
        also when it rewrites the version stored (``--force``, words added, a new
        segmentation): on any error the points of this write are removed and the error
        re-raised; what was stored of the item, any version, is untouched until this write is
        complete, and then removed. An interruption (Ctrl-C, SIGTERM) while it is removed keeps
        this write: the item is never left with no version. Returns the number of spans written.
        """
        identity = self.require_collection()
        if identity.model_id != model_id:
            raise CollectionMismatchError(
                f"collection {self.collection!r} holds vectors of {identity.model_id!r}, not {model_id!r}; "
                "use another collection or recreate it"
            )
        write_id = uuid.uuid4().hex
        this = meta_equals("media_id", ref.media_id) & meta_equals("write_id", write_id)
        item = meta_equals("media_id", ref.media_id)
        others = item & Where(must_not=meta_equals("write_id", write_id).must)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        written = 0
        ids: list[str] = []  # this write's point ids
        try:
            for segments, vectors, *words in batches:
                if words and identity.text_dim is None:
                    raise CollectionMismatchError(_no_word_vectors(self.collection, None, -1, self.names))
                spoken = words[0] if words else None
                points = self._points_for(ref, model_id, segments, vectors, now, spoken, write_id)
                ids.extend(p.id for p in points)
                self.upsert_points(points)
                written += len(segments)
            if written:
                self._retry(lambda: self._complete_write(this, ids), f"completing {ref.uri!r}")
            else:
                marker = empty_marker(ref, model_id, identity.dim, now, write_id)
                ids.append(marker.id)
                self.upsert_points([marker])
            self._check_whole(ref, this, ids)  # before removing what is stored
        except BaseException:
            self._rollback(ref, this)
            raise
        # This write is complete and whole. An interruption from here keeps it: rolling it back
        # once the delete below had run left no version at all (Ctrl-C during a re-ingest).
        try:
            what = f"deleting what was stored of {ref.uri!r}"
            self._retry(lambda: self._delete_others(ref.media_id, others, ids), what)
            self._check_whole(ref, this, ids)  # two writes completing at once
        except Exception:  # the other write is the whole one (or the old version stays)
            self._rollback(ref, this)
            raise
        log.debug("wrote %d points of %r (version %s, write %s)", written, ref.uri, ref.fingerprint, write_id)
        return written

    def _check_whole(self, ref: MediaRef, this: Where, ids: Sequence[str]) -> None:
        """Raise (a transient :class:`StoreError`: the item is retried) when this write lost
        points: another write of the same item, completing meanwhile, removed them as its
        "others" (two runs or flows ingesting one source into one collection at once)."""
        found, expected = self._count_write(this, ids), len(ids)
        if found != expected:
            raise StoreError(
                f"{ref.uri!r}: {expected - found} of the {expected} points just written were removed "
                "by another write of the same item at the same time; it is written again"
            )

    # One write's steps, by filter; a store that finds points faster by id overrides them.

    def _complete_write(self, this: Where, ids: Sequence[str]) -> None:
        """Mark the points of the write ``this`` (its point ids: ``ids``) complete."""
        self._set_state(this, STATE_COMPLETE)

    def _count_write(self, this: Where, ids: Sequence[str]) -> int:
        """How many points of the write ``this`` (point ids ``ids``) the store holds."""
        return self._count(this)

    def _delete_others(self, media_id: str, others: Where, ids: Sequence[str]) -> None:
        """Delete the points of item ``media_id`` that are not of this write (``others``; its
        point ids: ``ids``)."""
        self._delete(others)

    def _rollback(self, ref: MediaRef, this: Where) -> None:
        try:
            self._delete(this)
        except Exception as exc:
            log.error(
                "could not roll back the partial write of %r (%s); no search returns its points (state "
                "'writing'), and the next ingest of it replaces them (or: clasp-ingest store delete %s)",
                ref.uri, exc, ref.media_id,
            )  # fmt: skip
            log.debug("rollback of %r", ref.uri, exc_info=True)

    @contextmanager
    def bulk(self) -> Iterator[Self]:
        """A large ingest: index building is deferred to the end (nested calls are fine)."""
        self._bulk_depth += 1
        if self._bulk_depth == 1:
            self._begin_bulk()
        try:
            yield self
        finally:
            self._bulk_depth -= 1
            if self._bulk_depth == 0:
                self._end_bulk()

    def set_words(
        self,
        point_ids: Sequence[str],
        text: str,
        *,
        language: str,
        model: str,
        english: str | None = None,
    ) -> None:
        """Store the words of the points ``point_ids`` (the segments of one span).

        ``page_content`` becomes ``text`` (title and times stay in ``metadata``); ``metadata``
        gains ``transcript_from`` (``"search"``), ``transcript``, ``transcript_language``,
        ``transcript_model`` (and ``transcript_en`` with ``english``). ``metadata.transcript``
        is written last, so a point that has it is complete. Points deleted meanwhile (a replaced version) are
        skipped. The full-text index on ``metadata.transcript`` is created on first use.
        """
        if not point_ids:
            return
        self.require_collection()
        if not self._text_indexed:
            self._retry(lambda: self._create_text_index(TRANSCRIPT_KEY), "creating the transcript index")
            self._text_indexed = True
        ids = list(point_ids)
        self._retry(lambda: self._set_payload(ids, {"page_content": text}, None), "storing words")
        # lazy words fill the payload, not the word vectors: marked, so that 'ingest --transcribe'
        # of the item still writes its words whole (has_words)
        meta = {TRANSCRIPT_FROM: FROM_SEARCH, **words_metadata(text, language, model, english)}
        self._retry(lambda: self._set_payload(ids, meta, "metadata"), "storing words")

    def set_translation(self, point_ids: Sequence[str], english: str) -> None:
        """Add ``metadata.transcript_en`` to points that have their words already (their words,
        and who wrote them, stay as they are)."""
        if point_ids:
            ids = list(point_ids)
            self._retry(
                lambda: self._set_payload(ids, {"transcript_en": english}, "metadata"),
                "storing a translation",
            )

    # ----- deleting

    def delete_media(self, media_id: str) -> int:
        """Delete every point of one media item; returns how many there were."""
        return self._delete_counted(meta_equals("media_id", media_id), f"delete of media {media_id!r}")

    def delete_version(self, media_id: str, version: str) -> int:
        """Delete every point of one version of a media item (all its writes); returns how many."""
        return self.delete_write(media_id, version, "")

    def delete_write(self, media_id: str, version: str, write_id: str, *, keep: Sequence[str] = ()) -> int:
        """Delete the points of one write of a media item (``write_id``); with ``write_id`` ""
        (points written before writes had ids), the points of ``version`` of no write in
        ``keep``. Returns how many there were."""
        where = meta_equals("media_id", media_id)
        if write_id:
            where = where & meta_equals("write_id", write_id)
        else:
            where = where & meta_equals("version", version)
            if keep:
                where = where & Where(must_not=(Condition(meta_key("write_id"), any_of=tuple(keep)),))
        return self._delete_counted(where, f"delete of media {media_id!r} version {version!r}")

    def delete_source(self, source: str) -> int:
        """Delete every point whose ``metadata.source`` is ``source``; returns how many."""
        return self._delete_counted(meta_equals("source", source), f"delete of source {source!r}")

    def _delete_counted(self, where: Where, what: str) -> int:
        if self.identity is None:
            return 0
        n = self._count(where)
        if n:
            self._retry(lambda: self._delete(where), what)
        return n

    # ----- reading

    def has_media(self, media_id: str, version: str) -> bool:
        """True when ``media_id`` is stored completely at ``version`` and at no other (skip it).

        Every point of the item must be that version and complete (or the item's ``"empty"``
        marker), of one write (one first segment, ``segment_index`` 0, or one marker, -1): a
        run killed between completing a write and deleting what it replaces, or half-way
        through marking it complete, leaves the item to be written again.
        """
        if self.identity is None:
            return False
        states = (STATE_COMPLETE, STATE_EMPTY)
        item = meta_equals("media_id", media_id)
        where = item & meta_equals("version", version) & Where((Condition(meta_key("state"), any_of=states),))
        done = self._count(where)
        if done == 0 or done != self._count(item):
            return False
        return self._count(item & Where((Condition(meta_key("segment_index"), lte=0),))) == 1

    def has_words(self, media_id: str, version: str) -> bool:
        """True when the complete spans of ``media_id`` at ``version`` have their words
        (``metadata.transcript``, ``""`` where nothing was heard), as ``--transcribe`` stores
        them: judged by its first and last span (a count and one small scroll, not every
        payload). Words a search wrote (``transcript_from`` ``"search"``: the payload only, no
        word vectors) do not count; an item of one or two spans that a search transcribed was
        taken as transcribed, and skipped by ``ingest --transcribe``."""
        where = (
            meta_equals("media_id", media_id)
            & meta_equals("version", version)
            & meta_equals("state", STATE_COMPLETE)
        )
        spans = self._count(where)
        if spans == 0:  # the "empty" marker: nothing to transcribe
            return True
        ends = where & Where((Condition(meta_key("segment_index"), any_of=(0, spans - 1)),))
        points, _ = self._scroll(ends, 2, None, False)
        return bool(points) and all(
            transcript_of(point.payload) is not None
            and point.payload.get("metadata", {}).get(TRANSCRIPT_FROM) != FROM_SEARCH
            for point in points
        )

    def media(self) -> list[StoredMedia]:
        """Every stored media item version, by source: one scroll over the first point of each
        version (its ``segment_index`` 0, or the ``"empty"`` marker's -1) and two counts each."""
        if self.identity is None:
            return []
        firsts = [
            point.payload.get("metadata", {})
            for point in self.iter_points(Where((Condition(meta_key("segment_index"), lte=0),)))
        ]
        writes: dict[tuple[str, str], list[str]] = {}  # (media id, version) -> its writes' ids
        for meta in firsts:
            if meta.get("write_id"):
                writes.setdefault((str(meta.get("media_id", "")), str(meta.get("version", ""))), []).append(
                    str(meta["write_id"])
                )
        found = []
        for meta in firsts:
            media_id, version = str(meta.get("media_id", "")), str(meta.get("version", ""))
            this = meta_equals("media_id", media_id) & meta_equals("version", version)
            if meta.get("write_id"):  # one row per write: a rewrite of the version stored is its own
                this = this & meta_equals("write_id", str(meta["write_id"]))
            elif (media_id, version) in writes:
                # written by a release before write ids, and rewritten since: its own points only
                # (they were counted with the rewrite's, and read as "writing" while it was)
                ids = tuple(writes[media_id, version])
                this = this & Where(must_not=(Condition(meta_key("write_id"), any_of=ids),))
            spans = self._count(this & meta_equals("state", STATE_COMPLETE))
            writing = self._count(this & meta_equals("state", STATE_WRITING))
            found.append(
                StoredMedia(
                    media_id=media_id,
                    source=str(meta.get("source", "")),
                    title=str(meta.get("title") or ""),
                    version=version,
                    model=str(meta.get("model", "")),
                    ingested_at=str(meta.get("ingested_at", "")),
                    state=STATE_WRITING if writing else str(meta.get("state", "")),
                    spans=spans,
                )
            )
        return sorted(found, key=lambda m: (m.source, m.ingested_at, m.version))

    def count(self, filters: FilterLike | None = None) -> int:
        """Points matching ``filters`` (all versions and states)."""
        where = to_where(filters)
        if not self.exists():
            return 0
        return self._count(where)

    def _visible(self, filters: FilterLike | None) -> Where:
        return meta_equals("state", STATE_COMPLETE) & to_where(filters)

    def _query_vector(self, vector: np.ndarray) -> list[float]:
        identity = self.require_collection()
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape[0] != identity.dim:
            raise ValueError(
                f"query vector has {vec.shape[0]} dims but collection {self.collection!r} "
                f"stores {identity.dim}-d vectors of {identity.model_id!r}; query with that model"
            )
        return [float(x) for x in vec]

    def search(
        self,
        vector: np.ndarray,
        *,
        k: int = 10,
        filters: FilterLike | None = None,
        score_threshold: float | None = None,
    ) -> list[SpanHit]:
        """The ``k`` nearest complete spans to ``vector`` (cosine), best first; equal scores
        by point id (:func:`score_order`), so a larger ``k`` returns the same first spans in the
        same order, on every engine.

        ``filters``: a :class:`SearchFilter`, a dict of its fields, a :class:`Where`, or a
        ``qdrant_client.models.Filter`` (see :mod:`clasp_ingest.store.filters`).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        points = self._ranked(
            self._query_vector(vector), k, self._visible(filters), engine_threshold(score_threshold)
        )
        # scores as ordered: a hit's score never rises down the list, so a later sort by score
        # (the retriever's) keeps this order
        return [hit_from_point(replace(p, score=tie_key(p.score))) for p in points]

    def search_hybrid(
        self,
        query: HybridQuery,
        *,
        k: int = 10,
        prefetch: int | None = None,
        filters: FilterLike | None = None,
        score_threshold: float | None = None,
    ) -> list[SpanHit]:
        """Hybrid search: the ``k`` best complete spans by reciprocal rank fusion of three
        rankings, each of ``prefetch`` candidates (default ``max(4 k, 20)``): ``clasp`` (the
        audio vectors), ``text`` (the words' dense vectors) and ``words`` (sparse, IDF).

        One Query API call (prefetch + RRF) on both engines, a second fetching every candidate
        when the spans tied at the ``k``-th place run past ``2 k``. A hit's ``score`` is its fused
        score (:func:`rrf_score`; ``query.k`` and ``query.weights``); equal scores are ordered
        by the ``clasp`` cosine, then the point id (:func:`fused_order`), so a search returns the
        same order every time.
        ``score_threshold`` applies to the ``clasp`` ranking. Spans without words are found
        through ``clasp`` only. Raises ``StoreError`` when the collection has no word vectors.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        identity = self.require_collection()
        if identity.text_dim is None:
            raise StoreError(
                f"collection {self.collection!r} has no word vectors, so it cannot be searched "
                "hybrid; search it without --hybrid (or use --rerank N), or ingest into a new "
                "collection with 'clasp-ingest ingest --transcribe --collection NAME'"
            )
        if len(query.text) != identity.text_dim:
            raise ValueError(
                f"the query's text vector has {len(query.text)} dims but collection "
                f"{self.collection!r} stores {identity.text_dim}-d text vectors"
            )
        clasp = self._query_vector(np.asarray(query.clasp))
        wanted = replace(query, clasp=clasp, text=[float(x) for x in query.text])
        depth = max(prefetch if prefetch is not None else max(4 * k, 20), k)
        # RRF with equal weights ties often (first in one ranking only scores the same in any),
        # so fetch past k until the points tied at the k-th place are all seen
        every, where, limit = depth * (3 if wanted.words else 2), self._visible(filters), 2 * k
        score_threshold = engine_threshold(score_threshold)
        points = self._query_hybrid(wanted, limit, depth, where, score_threshold)
        if limit < every and len(points) == limit and _tied_past(points, k):
            points = self._query_hybrid(wanted, every, depth, where, score_threshold)
        return [hit_from_point(p) for p in fused_order(points, clasp)[:k]]

    def search_groups(
        self,
        vector: np.ndarray,
        *,
        k: int = 10,
        group_size: int = 1,
        filters: FilterLike | None = None,
        score_threshold: float | None = None,
    ) -> list[SpanHit]:
        """Best ``group_size`` spans of each of the ``k`` best media items, grouped, best first
        (scores at float32 precision, as :meth:`search` gives them). Equal scores are ordered as
        :meth:`search` orders them (:func:`score_order`; an item by its best span): the groups
        are the first ``k`` items of the ungrouped ranking, so a larger ``k`` returns the same
        first groups, on every engine. Grouped as the engines returned them, the same audio under
        two names came back in the other order at ``k=1`` than at ``k=8`` on Qdrant Edge, and in
        another on an export of it to qdrant-client.
        """
        if k < 1 or group_size < 1:
            raise ValueError(f"k and group_size must be >= 1, got {k} and {group_size}")
        query, where = self._query_vector(vector), self._visible(filters)
        threshold = engine_threshold(score_threshold)
        # the over-fetch here sees the ranking itself; an engine's own grouping needs probing past ties
        if type(self)._query_groups is QdrantStore._query_groups:
            groups = self._query_groups(query, k, group_size, where, threshold)
        else:
            groups = self._settled_groups(query, k, group_size, where, threshold)
        return [hit_from_point(replace(p, score=tie_key(p.score))) for group in groups for p in group]

    def _query_groups(
        self, vector: list[float], k: int, group_size: int, where: Where, score_threshold: float | None
    ) -> list[list[StoredPoint]]:
        """Grouping by over-fetching (engines without native groups), in :func:`score_order`.

        The best ``k`` groups are the first ``k`` distinct media items of the ranked list, so
        widen the search until ``k`` appear (or the points run out), then on past the spans tied
        with the last one taken (the engine picks which tied spans it returns), at most
        :data:`TIE_FETCH_MAX` further, as :meth:`search` does; then top up each group that is
        short with a search restricted to that media item.
        """
        total = self._count(where)
        limit = min(max(k * group_size * 4, 16), max(total, 1))
        points, groups = self._over_fetch(vector, limit, k, group_size, where, score_threshold)
        while len(groups) < k and len(points) == limit < total:
            limit = min(limit * 4, total)
            points, groups = self._over_fetch(vector, limit, k, group_size, where, score_threshold)
        most = min(limit + TIE_FETCH_MAX, total)
        while len(points) == limit < most and _tied_at_cut(points, groups):
            limit = min(2 * limit, most)
            points, groups = self._over_fetch(vector, limit, k, group_size, where, score_threshold)
        exhausted = len(points) < limit or limit >= total
        # a tie still running past the fetch: a group that ends in it holds the tied spans the
        # engine returned, not the first by id (an item with the same audio twice, in 60
        # episodes: 180 tied spans); its own search settles it
        cut = tie_key(points[-1].score) if points and not exhausted and _tied_at_cut(points, groups) else None
        return [
            group
            if exhausted or (len(group) == group_size and tie_key(group[-1].score) != cut)
            else self._ranked(
                vector, group_size, where & meta_equals("media_id", _media_of(group[0])), score_threshold
            )
            for group in groups
        ]

    def _over_fetch(
        self, vector: list[float], limit: int, k: int, group_size: int, where: Where, threshold: float | None
    ) -> tuple[list[StoredPoint], list[list[StoredPoint]]]:
        """The best ``limit`` points (:func:`score_order`) and the first ``k`` groups they make."""
        points = score_order(self._query(vector, limit, where, threshold))
        return points, _group(points, k, group_size)

    def _ranked(
        self, vector: list[float], n: int, where: Where, score_threshold: float | None
    ) -> list[StoredPoint]:
        """The best ``n`` points in :func:`score_order`. The engine picks which of the points
        tied at the ``n``-th place make its cut, so fetch past them until the last one fetched
        scores below the ``n``-th, or the points run out (at most :data:`TIE_FETCH_MAX` past
        ``n``: a jingle in 2,000 episodes made one search fetch 4,599)."""
        limit = n + TIE_FETCH
        points = score_order(self._query(vector, limit, where, score_threshold))
        while len(points) == limit < n + TIE_FETCH_MAX and _ties(points[-1], points[n - 1]):
            limit = min(2 * limit, n + TIE_FETCH_MAX)
            points = score_order(self._query(vector, limit, where, score_threshold))
        return points[:n]

    def _settled_groups(
        self, vector: list[float], k: int, group_size: int, where: Where, score_threshold: float | None
    ) -> list[list[StoredPoint]]:
        """The groups of an engine that groups natively (it overrides :meth:`_query_groups`),
        in the order of the over-fetch here. The engine breaks ties its own way, so ask it for one
        item and one span per item more than wanted, and for more (up to :data:`TIE_FETCH_MAX`)
        while the last item returned ties the ``k``-th item's best span, or an item's last span
        its ``group_size``-th: then every tied one is seen and the order picks among them.
        """
        items = spans = 1
        while True:
            found = self._query_groups(vector, k + items, group_size + spans, where, score_threshold)
            groups = sorted(
                (score_order(g) for g in found if g), key=lambda g: (-tie_key(g[0].score), g[0].id)
            )
            wider = len(groups) == k + items and _ties(groups[-1][0], groups[k - 1][0])
            top = tie_key(groups[k - 1][0].score) if len(groups) >= k else -math.inf
            deeper = any(
                len(g) == group_size + spans and _ties(g[-1], g[group_size - 1])
                for g in groups
                if tie_key(g[0].score) >= top
            )
            wider, deeper = wider and items < TIE_FETCH_MAX, deeper and spans < TIE_FETCH_MAX
            if not (wider or deeper):
                return [g[:group_size] for g in groups[:k]]
            items, spans = _more(items) if wider else items, _more(spans) if deeper else spans

    def iter_points(
        self, filters: FilterLike | None = None, *, batch_size: int = 256, with_vectors: bool = False
    ) -> Iterator[StoredPoint]:
        """Every point matching ``filters`` (any state), in id order, page by page."""
        where = to_where(filters)
        if self.identity is None:
            return
        offset: str | None = None
        while True:
            points, offset = self._scroll(where, batch_size, offset, with_vectors)
            yield from points
            if offset is None:
                return

    def points(self, point_ids: Sequence[str]) -> list[StoredPoint]:
        """The stored points with these ids (any state; missing ids are left out), in the given order."""
        if not point_ids or self.identity is None:
            return []
        ids = list(point_ids)
        found = {p.id: p for p in self._retry(lambda: self._retrieve(ids), "reading points")}
        return [found[pid] for pid in point_ids if pid in found]

    def segments(
        self,
        media_id: str,
        first_index: int,
        last_index: int,
        *,
        version: str | None = None,
        write_id: str | None = None,
    ) -> list[SpanHit]:
        """Complete spans of ``media_id`` with ``first_index <= segment_index <= last_index``
        (of its ``version`` and ``write_id`` only, when given: a hit's neighbours, even where a
        replace was cut short between completing the new write and deleting the old one)."""
        where = (
            meta_equals("media_id", media_id)
            & meta_equals("state", STATE_COMPLETE)
            & Where((Condition(meta_key("segment_index"), gte=first_index, lte=last_index),))
        )
        if version is not None:
            where = where & meta_equals("version", version)
        if write_id is not None:
            where = where & meta_equals("write_id", write_id)
        points, _ = self._scroll(where, last_index - first_index + 1, None, False)
        hits = [hit_from_point(p) for p in points]
        return sorted(hits, key=lambda h: int(h.payload["metadata"]["segment_index"]))

    # ----- context manager

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _no_word_vectors(collection: str, have: int | None, want: int, names: StoreNames) -> str:
    if have is None:
        return (
            f"collection {collection!r} has no word vectors (it was made without --transcribe), so "
            f"ingest --transcribe cannot store words there; ingest into a new collection "
            f"({names.collection}) or recreate this one ({names.recreate}; deletes its points) and "
            "re-ingest everything with --transcribe. Nothing was written"
        )
    return (
        f"collection {collection!r} stores {have}-d text vectors, but the model's text encoder makes "
        f"{want}-d ones; use another collection ({names.collection}) or recreate it ({names.recreate})"
    )


def _tied_at_cut(points: Sequence[StoredPoint], groups: Sequence[Sequence[StoredPoint]]) -> bool:
    """Whether the last of ``points`` (in :func:`score_order`) ties the lowest span of ``groups``."""
    return tie_key(points[-1].score) == min(tie_key(p.score) for group in groups for p in group)


def _ties(a: StoredPoint, b: StoredPoint) -> bool:
    return tie_key(a.score) == tie_key(b.score)


def _more(extra: int) -> int:
    """How many items or spans past the wanted ones to ask for after a tie ran past ``extra``."""
    return min(max(2 * extra, TIE_FETCH), TIE_FETCH_MAX)


def _group(points: Sequence[StoredPoint], k: int, group_size: int) -> list[list[StoredPoint]]:
    groups: dict[str, list[StoredPoint]] = {}
    for point in points:
        key = _media_of(point)
        if key not in groups:
            if len(groups) == k:
                continue
            groups[key] = []
        if len(groups[key]) < group_size:
            groups[key].append(point)
    return list(groups.values())


def _media_of(point: StoredPoint) -> str:
    return str(point.payload.get("metadata", {}).get("media_id", ""))
