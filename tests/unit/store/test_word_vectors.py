"""Collections with word vectors (``ingest --transcribe``): the ``text`` and sparse ``words``
vectors beside ``clasp``, ingest-time words in the payload, and hybrid search (prefetch + RRF in
one Query API call), on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import CollectionMismatchError, StoreError
from clasp_ingest.pipeline import collection_for
from clasp_ingest.store import QdrantStore, export_collection, open_store
from clasp_ingest.store.base import (
    RRF_K,
    HybridQuery,
    StoredPoint,
    fused_order,
    page_content,
    rrf_score,
    transcript_of,
    words_metadata,
)
from clasp_ingest.words import SpanWords, query_words, sparse_words
from tests.unit.store.conftest import DIM, MODEL, Media, make_media, open_backend, unit_rows

TEXT_DIM = 8
TEXTS = [
    "the bees visit flowers",
    "a train leaves the station",
    "",  # nothing heard in this span
    "a telescope photographed a distant galaxy",
    "the recipe needs flour and eggs",
]


@pytest.fixture(params=["edge", "client"])
def hybrid(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantStore]:
    with open_backend(request.param, tmp_path) as s:
        s.ensure_collection(MODEL, DIM, text_dim=TEXT_DIM)
        yield s


def span_words(texts: list[str], seed: int = 7) -> list[SpanWords]:
    dense = unit_rows(np.random.default_rng(seed), len(texts), TEXT_DIM)
    return [
        SpanWords(
            t, "en", "fw:test", tuple(float(x) for x in v) if t else None, sparse_words(t) if t else None
        )
        for t, v in zip(texts, dense, strict=True)
    ]


def write_with_words(store: QdrantStore) -> tuple[Media, list[SpanWords]]:
    media = make_media("file:///talks/words.wav", "v1", len(TEXTS), seed=3)
    words = span_words(TEXTS)
    store.write_media(media.ref, MODEL, [(media.segments[:2], media.vectors[:2], words[:2]),
                                        (media.segments[2:], media.vectors[2:], words[2:])])  # fmt: skip
    return media, words


def test_a_new_collection_with_text_dim_has_the_word_vectors(hybrid: QdrantStore, tmp_path: Path) -> None:
    identity = hybrid.identity
    assert identity is not None and identity.text_dim == TEXT_DIM and hybrid.has_word_vectors
    if hybrid.backend == "edge":
        hybrid.close()
        with open_store(path=tmp_path / "qdrant") as reopened:
            assert reopened.has_word_vectors and reopened.identity == identity
            assert not reopened.indexed  # sparse vectors are indexed at once; no HNSW was built


def test_ingest_time_words_are_the_payload_keys_lazy_transcription_writes(hybrid: QdrantStore) -> None:
    media, words = write_with_words(hybrid)
    points = sorted(
        hybrid.iter_points(with_vectors=True), key=lambda p: p.payload["metadata"]["segment_index"]
    )
    assert len(points) == len(TEXTS)
    for point, text, seg, made in zip(points, TEXTS, media.segments, words, strict=True):
        meta = point.payload["metadata"]
        assert {k: meta[k] for k in words_metadata(text, "en", "fw:test")} == words_metadata(
            text, "en", "fw:test"
        )
        assert transcript_of(point.payload) == text  # "" too: lazy search sees words present
        named = page_content(media.ref.title, media.ref.uri, seg.start_s, seg.end_s)
        assert point.payload["page_content"] == (text or named)
        if text:
            assert made.dense is not None and point.text_vector is not None
            np.testing.assert_allclose(point.text_vector, made.dense, atol=1e-5)
            assert point.sparse is not None and point.sparse.indices == made.sparse.indices  # type: ignore[union-attr]
            np.testing.assert_allclose(point.sparse.values, made.sparse.values, rtol=1e-5)  # type: ignore[union-attr]
        else:
            assert point.text_vector is None and point.sparse is None


def _rank(order: list[int], i: int) -> int | None:
    return order.index(i) if i in order else None


@pytest.mark.parametrize("k, weights", [(RRF_K, (1.0, 1.0, 1.0)), (5, (2.0, 1.0, 0.5))])
def test_hybrid_score_is_rrf_of_the_three_rankings(
    hybrid: QdrantStore, k: int, weights: tuple[float, float, float]
) -> None:
    media, words = write_with_words(hybrid)
    # the clasp and text parts point at span 0; the words part names a word spoken only in span 3
    text_query = np.asarray(words[0].dense) + 0.3 * np.asarray(words[4].dense)
    text_query /= np.linalg.norm(text_query)
    query = HybridQuery(media.vectors[0].tolist(), text_query.tolist(), query_words("galaxy"), k, weights)
    hits = hybrid.search_hybrid(query, k=5)

    clasp_order = [int(h.payload["metadata"]["segment_index"]) for h in hybrid.search(media.vectors[0], k=5)]
    spoken = [i for i, t in enumerate(TEXTS) if t]
    cos = {i: float(np.dot(words[i].dense, text_query)) for i in spoken}  # type: ignore[arg-type]
    text_order = sorted(spoken, key=lambda i: -cos[i])
    word_order = [3]
    by_index = {int(h.payload["metadata"]["segment_index"]): h.score for h in hits}
    assert set(by_index) == set(range(len(TEXTS)))
    for i, score in by_index.items():
        ranks = [_rank(order, i) for order in (clasp_order, text_order, word_order)]
        assert score == pytest.approx(rrf_score(ranks, k, weights), rel=1e-5), (i, ranks)
        if weights == (1.0, 1.0, 1.0):
            assert score == pytest.approx(sum(1.0 / (k + r) for r in ranks if r is not None), rel=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {int(h.payload["metadata"]["segment_index"]) for h in hits[:2]} == {0, 3}


def test_spans_tied_in_the_fusion_come_in_the_same_order_every_time(hybrid: QdrantStore) -> None:
    # one candidate per ranking: span 0 first by clasp, span 1 by text, span 3 by words, so all
    # three score 1/k; the engines order such ties arbitrarily, call by call, so a search for
    # the best one returned any of the three
    media, words = write_with_words(hybrid)
    query = HybridQuery(media.vectors[0].tolist(), list(words[1].dense or ()), query_words("galaxy"))
    for _ in range(12):
        hits = hybrid.search_hybrid(query, k=1, prefetch=1)
        assert len(hits) == 1 and hits[0].score == pytest.approx(1.0 / RRF_K)
        assert int(hits[0].payload["metadata"]["segment_index"]) == 0  # the clasp-closest of the tie


def test_fused_order_breaks_ties_by_clasp_cosine_then_id() -> None:
    def point(pid: str, score: float, vector: list[float] | None) -> StoredPoint:
        return StoredPoint(pid, {}, vector, score)

    points = [
        point("b", 0.5, [0.0, 1.0]),
        point("a", 0.5, [0.0, 1.0]),  # same score and cosine as "b": the id decides
        point("c", 0.5, [1.0, 0.0]),  # closest to the query
        point("d", 0.9, [-1.0, 0.0]),  # best fused score, whatever its cosine
        point("e", 0.5, None),  # no vector: after the tied ones that have one
    ]
    assert [p.id for p in fused_order(points, [1.0, 0.0])] == ["d", "c", "a", "b", "e"]


def test_hybrid_search_sees_complete_spans_only_and_honours_filters(hybrid: QdrantStore) -> None:
    write_with_words(hybrid)
    other = make_media("file:///talks/other.wav", "v1", 3, seed=9)
    hybrid.write_media(
        other.ref, MODEL, [(other.segments, other.vectors, span_words(["galaxy"] * 3, seed=1))]
    )
    query = HybridQuery(other.vectors[0].tolist(), [1.0] + [0.0] * (TEXT_DIM - 1), query_words("galaxy"))
    hits = hybrid.search_hybrid(query, k=10, filters={"source": "file:///talks/words.wav"})
    assert hits and {h.source for h in hits} == {"file:///talks/words.wav"}
    assert all(h.payload["metadata"]["state"] == "complete" for h in hits)


def test_spans_without_word_vectors_are_found_through_clasp(hybrid: QdrantStore) -> None:
    media = make_media("file:///talks/plain.wav", "v1", 4, seed=4)
    hybrid.write_media(media.ref, MODEL, media.batches())  # no words: an ingest without --transcribe
    query = HybridQuery(media.vectors[2].tolist(), [1.0] + [0.0] * (TEXT_DIM - 1), query_words("anything"))
    hits = hybrid.search_hybrid(query, k=2)
    assert int(hits[0].payload["metadata"]["segment_index"]) == 2
    assert hits[0].score == pytest.approx(1.0 / RRF_K)


def test_a_collection_without_word_vectors_is_refused_before_anything_is_written(
    store: QdrantStore,
) -> None:
    media = make_media("file:///talks/old.wav", "v1", 3, seed=5)
    store.write_media(media.ref, MODEL, media.batches())
    remedy = r"open_store\(collection=NAME\).*store\.drop\(\)"  # a Python caller's store
    with pytest.raises(CollectionMismatchError, match=rf"no word vectors.*{remedy}"):
        store.ensure_collection(MODEL, DIM, text_dim=TEXT_DIM)
    with (
        pytest.raises(CollectionMismatchError, match="no word vectors"),
        collection_for(store, MODEL, DIM, text_dim=TEXT_DIM),
    ):
        pytest.fail("the run must not start")  # pragma: no cover
    new = make_media("file:///talks/new.wav", "v1", 2, seed=6)
    with pytest.raises(CollectionMismatchError, match="no word vectors"):
        store.write_media(new.ref, MODEL, [(new.segments, new.vectors, span_words(["a", "b"]))])
    assert store.count() == 3 and store.count({"media_id": new.ref.media_id}) == 0
    query = HybridQuery(media.vectors[0].tolist(), [0.0] * TEXT_DIM, query_words("a"))
    with pytest.raises(StoreError, match=r"no word vectors.*ingest --transcribe"):
        store.search_hybrid(query, k=1)


def test_recreate_gives_an_old_collection_the_word_vectors(store: QdrantStore) -> None:
    media = make_media("file:///talks/old.wav", "v1", 3, seed=5)
    store.write_media(media.ref, MODEL, media.batches())
    assert store.ensure_collection(MODEL, DIM, text_dim=TEXT_DIM, recreate=True)
    assert store.has_word_vectors and store.count() == 0


def test_export_keeps_the_word_vectors(hybrid: QdrantStore) -> None:
    media, words = write_with_words(hybrid)
    query = HybridQuery(media.vectors[1].tolist(), list(words[3].dense or ()), query_words("flour eggs"))
    with open_store(url=":memory:") as target:
        assert export_collection(hybrid, target) == len(TEXTS)
        assert target.has_word_vectors
        ours = [(h.point_id, round(h.score, 5)) for h in hybrid.search_hybrid(query, k=5)]
        theirs = [(h.point_id, round(h.score, 5)) for h in target.search_hybrid(query, k=5)]
        assert ours == theirs
