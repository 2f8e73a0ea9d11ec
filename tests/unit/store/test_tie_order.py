"""Spans with equal scores (the same audio under two names, as one episode in two feeds) come
back ordered by point id: the same first spans at every ``k``, and on every engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.store import QdrantStore, export_collection, open_store
from clasp_ingest.store.base import StoredPoint, score_order
from clasp_ingest.types import SpanHit
from tests.unit.store.conftest import DIM, MODEL, make_media, unit_rows

SPANS = 12
COPIES = 3


def _write_copies(store: QdrantStore) -> np.ndarray:
    """One item's spans under ``COPIES`` names (equal vectors, other point ids), and one other item."""
    store.ensure_collection(MODEL, DIM)
    copies = [make_media(f"file:///feed{i}/episode.wav", "v1", SPANS, seed=5) for i in range(COPIES)]
    for item in [*copies, make_media("file:///other.wav", "v1", SPANS, seed=6)]:
        store.write_media(item.ref, MODEL, item.batches())
    return copies[0].vectors


def _ids(hits: list[SpanHit]) -> list[str]:
    return [h.point_id for h in hits]


def _assert_prefixes_in_tie_order(store: QdrantStore, queries: np.ndarray) -> list[list[str]]:
    every = (COPIES + 1) * SPANS
    orders = []
    for q in queries:
        full = store.search(q, k=every)
        scores = [h.score for h in full]
        assert scores == sorted(scores, reverse=True)
        assert [(-h.score, h.point_id) for h in full] == sorted((-h.score, h.point_id) for h in full)
        for k in range(1, every):
            assert _ids(store.search(q, k=k)) == _ids(full)[:k], f"k={k}"
        orders.append(_ids(full))
    return orders


def test_equal_scores_come_back_by_point_id_at_every_k_on_both_engines(tmp_path: Path) -> None:
    with open_store(path=tmp_path / "edge") as edge, open_store(url=":memory:", collection="copy") as copy:
        vectors = _write_copies(edge)
        queries = np.vstack([vectors[:3], unit_rows(np.random.default_rng(11), 3)])
        assert export_collection(edge, copy) == (COPIES + 1) * SPANS
        on_edge = _assert_prefixes_in_tie_order(edge, queries)
        on_copy = _assert_prefixes_in_tie_order(copy, queries)
    assert on_edge == on_copy


def test_a_tie_at_the_kth_place_longer_than_the_first_fetch_is_fetched_whole(tmp_path: Path) -> None:
    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(MODEL, DIM)
        same = make_media("file:///a.wav", "v1", 1, seed=3).vectors[0]
        for i in range(20):  # 20 copies of one span: a tie far past k + TIE_FETCH
            item = make_media(f"file:///feed{i:02d}/a.wav", "v1", 1, seed=3)
            edge.write_media(item.ref, MODEL, [(item.segments, same[None, :])])
        everyone = sorted(h.point_id for h in edge.search(same, k=20))
        assert len(everyone) == 20
        for k in (1, 2, 5, 9):
            assert _ids(edge.search(same, k=k)) == everyone[:k]


def test_a_tie_of_thousands_is_fetched_only_so_far(tmp_path: Path) -> None:
    # the same jingle opening 2,000 episodes: one search fetched 4,599 points in 9 calls
    from clasp_ingest.store.base import TIE_FETCH_MAX

    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(MODEL, DIM)
        same = make_media("file:///a.wav", "v1", 1, seed=3).vectors[0]
        copies = TIE_FETCH_MAX * 3
        for i in range(copies):
            item = make_media(f"file:///feed{i:03d}/a.wav", "v1", 1, seed=3)
            edge.write_media(item.ref, MODEL, [(item.segments, same[None, :])])
        limits: list[int] = []
        query = edge._query

        def counted(vector: Any, limit: int, *args: Any) -> Any:
            limits.append(limit)
            return query(vector, limit, *args)

        edge._query = counted  # type: ignore[method-assign]
        hits = edge.search(same, k=5)
    assert len(hits) == 5 and max(limits) == 5 + TIE_FETCH_MAX < copies


def test_scores_that_differ_in_float64_noise_only_are_a_tie() -> None:
    # qdrant-client's local mode gave two copies of one span these scores
    points = [StoredPoint("b", {}, score=0.0471075454222627), StoredPoint("a", {}, score=0.04710754542226269),
              StoredPoint("c", {}, score=0.0471076)]  # fmt: skip
    assert [p.id for p in score_order(points)] == ["c", "a", "b"]
