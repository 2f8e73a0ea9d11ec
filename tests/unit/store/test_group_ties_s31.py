"""Grouped search orders equal scores as ungrouped search does (by point id; an item by its best
span): the groups are the first ``k`` items of :meth:`QdrantStore.search`'s ranking, so a larger
``k`` returns the same first groups, on Qdrant Edge and on qdrant-client alike. The engines'
own grouping put the same audio under two names in another order for each ``k`` and engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.store.base import STATE_COMPLETE, TIE_FETCH_MAX, StoredPoint, build_payload
from clasp_ingest.types import MediaRef, Segment, SpanHit, media_id_for
from tests.unit.store.conftest import DIM, MODEL, unit_rows

COPIES = 20  # one item under 20 names: a tie past the first fetch of k * group_size * 4 (at least 16)
SPANS = 4


def _point(number: int, uri: str, index: int, vector: np.ndarray) -> StoredPoint:
    ref = MediaRef(uri, media_id_for(uri), "v1", title=Path(uri).stem)
    segment = Segment(ref.media_id, index, 2.0 * index, 2.0 * index + 1.5)
    payload = build_payload(ref, MODEL, segment, "2026-12-06T00:00:00+00:00")
    payload["metadata"]["state"] = STATE_COMPLETE
    return StoredPoint(str(uuid.UUID(int=number)), payload, [float(x) for x in vector])


def _points() -> tuple[list[StoredPoint], np.ndarray]:
    """``COPIES`` copies of one item whose point ids rank the copies in another order for each
    span; an item holding the copies' first span twice (its two spans tie); three other items.
    Shuffled, so the engines hold them in no id order."""
    rng = np.random.default_rng(31)
    same = unit_rows(rng, SPANS)
    points = []
    for span in range(SPANS):
        for copy, rank in enumerate(rng.permutation(COPIES)):
            points.append(
                _point(1000 * (span + 1) + int(rank), f"file:///feed{copy:02d}/talk.wav", span, same[span])
            )
    points += [_point(900, "file:///jingle.wav", 0, same[0]), _point(7, "file:///jingle.wav", 1, same[0])]
    points += [_point(9000 + 10 * i + s, f"file:///other{i}.wav", s, v)
               for i in range(3) for s, v in enumerate(unit_rows(rng, SPANS))]  # fmt: skip
    return [points[i] for i in rng.permutation(len(points))], same


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[QdrantStore, QdrantStore, np.ndarray]]:
    points, same = _points()
    with open_store(path=tmp_path / "edge") as edge, open_store(url=":memory:") as client:
        for store in (edge, client):
            store.ensure_collection(MODEL, DIM)
            store.upsert_points(points)
        yield edge, client, same


def _ids(hits: list[SpanHit]) -> list[str]:
    return [str(h.point_id) for h in hits]


def _expected(store: QdrantStore, query: np.ndarray, k: int, group_size: int) -> list[str]:
    """The first ``k`` items of the ungrouped ranking, ``group_size`` spans each, grouped."""
    groups: dict[str, list[str]] = {}
    for hit in store.search(query, k=store.count()):
        if hit.media_id in groups or len(groups) < k:
            groups.setdefault(hit.media_id, [])
            if len(groups[hit.media_id]) < group_size:
                groups[hit.media_id].append(str(hit.point_id))
    return [pid for ids in groups.values() for pid in ids]


def _queries(same: np.ndarray) -> np.ndarray:
    return np.vstack([same[:2], unit_rows(np.random.default_rng(5), 2)])


def test_groups_are_the_first_items_of_the_ranking_at_every_k(
    engines: tuple[QdrantStore, QdrantStore, np.ndarray],
) -> None:
    edge, client, same = engines
    items = COPIES + 4
    for store in (edge, client):
        for q in _queries(same):
            for group_size in (1, 2, 3):
                full = store.search_groups(q, k=items, group_size=group_size)
                assert _ids(full) == _expected(store, q, items, group_size)
                for k in range(1, items):
                    want = _expected(store, q, k, group_size)
                    assert _ids(store.search_groups(q, k=k, group_size=group_size)) == want, (k, group_size)


def test_both_engines_group_ties_alike(engines: tuple[QdrantStore, QdrantStore, np.ndarray]) -> None:
    edge, client, same = engines
    for q in _queries(same):
        for k, group_size in ((1, 1), (2, 1), (3, 2), (7, 1), (21, 2)):
            on_edge = edge.search_groups(q, k=k, group_size=group_size)
            on_client = client.search_groups(q, k=k, group_size=group_size)
            assert _ids(on_edge) == _ids(on_client), (k, group_size)
            np.testing.assert_allclose([h.score for h in on_edge], [h.score for h in on_client], atol=1e-6)


def test_the_tied_spans_of_one_item_come_by_point_id(
    engines: tuple[QdrantStore, QdrantStore, np.ndarray],
) -> None:
    edge, client, same = engines
    jingle = media_id_for("file:///jingle.wav")
    for store in (edge, client):
        one = store.search_groups(same[0], k=1, group_size=1, filters={"media_id": jingle})
        two = store.search_groups(same[0], k=1, group_size=2, filters={"media_id": jingle})
        assert _ids(one) == [str(uuid.UUID(int=7))] and _ids(two) == [
            str(uuid.UUID(int=7)),
            str(uuid.UUID(int=900)),
        ]


def test_a_tie_of_thousands_is_grouped_from_a_bounded_fetch(tmp_path: Path) -> None:
    # the same jingle opening thousands of episodes: past TIE_FETCH_MAX the engine picks again
    copies = TIE_FETCH_MAX * 3
    same = unit_rows(np.random.default_rng(3), 1)[0]
    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(MODEL, DIM)
        edge.upsert_points([_point(i + 1, f"file:///feed{i:03d}/a.wav", 0, same) for i in range(copies)])
        limits: list[int] = []
        query = edge._query

        def counted(vector: Any, limit: int, *args: Any) -> Any:
            limits.append(limit)
            return query(vector, limit, *args)

        edge._query = counted  # type: ignore[method-assign]
        hits = edge.search_groups(same, k=2, group_size=1)
    assert len(hits) == 2 and max(limits) == 16 + TIE_FETCH_MAX < copies


def test_an_item_whose_spans_tie_past_the_fetch_gets_its_first_spans_by_id(tmp_path: Path) -> None:
    """60 episodes, each with a jingle at its start and the same audio as its 2nd and 3rd span:
    searched with the jingle, the over-fetch stops in the 180 tied spans, and the group of the
    first item held the tied span the engine returned (reviewer 2); its own search settles it."""
    a, b = unit_rows(np.random.default_rng(7), 2)
    points = [_point(100000 * (span + 1) + 3 * copy + span, f"file:///feed{copy:03d}/ep.wav", span,
                     (a, b, b)[span]) for copy in range(60) for span in range(3)]  # fmt: skip
    points = [points[i] for i in np.random.default_rng(1).permutation(len(points))]
    with open_store(path=tmp_path / "edge") as edge, open_store(url=":memory:") as client:
        for store in (edge, client):
            store.ensure_collection(MODEL, DIM)
            store.upsert_points(points)
        ranking = edge.search(a, k=len(points))
        first = ranking[0].media_id
        want = [str(h.point_id) for h in ranking if h.media_id == first][:2]
        for store in (edge, client):
            assert [str(h.point_id) for h in store.search_groups(a, k=1, group_size=2)] == want
