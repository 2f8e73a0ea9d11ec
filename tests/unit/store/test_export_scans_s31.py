"""An export to a qdrant-client folder marks the items it copied complete by point id: local mode
checks a filter on every point it holds, in Python, and one filtered update per 256 item writes
made the export quadratic (16,000 one-span items: 66 CPU-s of 74; tester 3 of session 31, bug 3).
The crash-safety design stays: items new to the target are hidden until all their points are in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clasp_ingest.store import QdrantStore, export_collection, open_store
from clasp_ingest.store.base import STATE_COMPLETE, STATE_WRITING
from clasp_ingest.store.filters import meta_equals
from tests.unit.store.conftest import DIM, MODEL, Media, make_media


def _source(path: Path, items: list[Media]) -> QdrantStore:
    edge = open_store(path=path)
    edge.ensure_collection(MODEL, DIM)
    with edge.bulk():
        for item in items:
            edge.write_media(item.ref, MODEL, item.batches())
    return edge


def _count_filtered_scans(target: QdrantStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one each time the target's qdrant-client local collection checks a
    filter on every point it holds (the real method runs; it is only counted)."""
    local = target.client._client.collections[target.collection]  # type: ignore[attr-defined]
    scans: list[int] = []
    mask: Callable[..., Any] = local._payload_and_non_deleted_mask

    def counted(payload_filter: Any, *args: Any, **kwargs: Any) -> Any:
        if payload_filter is not None:  # no filter: numpy's ones, not a look at each point
            scans.append(1)
        return mask(payload_filter, *args, **kwargs)

    monkeypatch.setattr(local, "_payload_and_non_deleted_mask", counted)
    return scans


def _states(target: QdrantStore) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for point in target.iter_points():
        meta = point.payload["metadata"]
        states.setdefault(meta["media_id"], set()).add(meta["state"])
    return states


def test_an_export_to_a_qdrant_client_folder_checks_no_filter_on_every_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [make_media(f"file:///s{i}.wav", "v1", 1, seed=i) for i in range(600)]  # 600 writes
    copy = tmp_path / "copy"
    with _source(tmp_path / "edge", items) as edge, open_store(path=copy, backend="client") as target:
        target.ensure_collection(MODEL, DIM)
        scans = _count_filtered_scans(target, monkeypatch)
        assert export_collection(edge, target, batch_size=128) == 600
        assert len(scans) == 0  # was 3: one per 256 writes, each reading all 600 points
        assert _states(target) == {i.ref.media_id: {STATE_COMPLETE} for i in items}


def test_words_on_a_qdrant_client_store_are_set_by_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = make_media("file:///w.wav", "v1", 5, seed=1)
    with open_store(path=tmp_path / "client", backend="client") as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(item.ref, MODEL, item.batches())
        ids = [p.id for p in store.iter_points()]
        scans = _count_filtered_scans(store, monkeypatch)
        gone = "00000000-0000-0000-0000-000000000000"  # a point that no longer exists is skipped
        store.set_words([gone, ids[0]], "some words", language="en", model="m")
        assert len(scans) == 0
        assert [p.payload["page_content"] == "some words" for p in store.points(ids)] == [True] + [False] * 4
        assert store.points([gone]) == []


@pytest.mark.parametrize("kind", ["folder", "edge"])
def test_items_new_to_the_target_are_hidden_until_whole_and_a_half_written_write_is_not_marked(
    tmp_path: Path, kind: str
) -> None:
    items = [make_media(f"file:///n{i}.wav", "v1", 12, seed=i) for i in range(4)]
    half = make_media("file:///half.wav", "v1", 6, seed=9)  # one write: some points complete, some not

    def interrupt(read: int, total: int) -> None:
        if read >= 20:  # Ctrl-C amid the items' points
            raise KeyboardInterrupt

    with _source(tmp_path / "edge", items) as edge:
        points = edge._points_for(half.ref, MODEL, half.segments, half.vectors, "2026-01-01", write_id="w1")
        edge.upsert_points(points)  # state "writing"
        edge._set_payload([p.id for p in points[:3]], {"state": STATE_COMPLETE}, "metadata")
        target = open_store(path=tmp_path / "copy", backend="client" if kind == "folder" else "edge")
        with target:
            with pytest.raises(KeyboardInterrupt):
                export_collection(edge, target, batch_size=8, on_progress=interrupt)
            assert target.count() > 0 and {s for v in _states(target).values() for s in v} == {STATE_WRITING}
            assert target.count(meta_equals("state", STATE_COMPLETE)) == 0  # searches return none of them
            assert export_collection(edge, target, batch_size=8) == 48 + 3
            # every point of the whole items is in and complete; the half-written write was
            # copied as "writing", never marked, and removed with the other versions
            assert _states(target) == {i.ref.media_id: {STATE_COMPLETE} for i in items}
            assert target.count() == 48


def test_each_marking_request_holds_whole_item_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export stopped between two marking requests leaves each item wholly complete or wholly
    hidden: ids cut into plain slices of 1,024 split items across requests, and a kill after the
    first left an item complete but for one span, returned by searches (reviewer 4)."""
    items = [make_media(f"file:///s{i}.wav", "v1", 5, seed=i) for i in range(300)]
    items.append(make_media("file:///long.wav", "v1", 1500, seed=999))  # longer than a request
    with _source(tmp_path / "edge", items) as edge, open_store(path=tmp_path / "copy") as target:
        target.ensure_collection(MODEL, DIM)
        requests: list[list[str]] = []
        mark = target._set_payload

        def recorded(ids: Any, *args: Any, **kwargs: Any) -> Any:
            requests.append(list(ids))
            return mark(ids, *args, **kwargs)

        monkeypatch.setattr(target, "_set_payload", recorded)
        export_collection(edge, target)
        item_of = {p.id: p.payload["metadata"]["media_id"] for p in target.iter_points()}
        sizes: dict[str, int] = {}
        for media_id in item_of.values():
            sizes[media_id] = sizes.get(media_id, 0) + 1
    assert len(requests) > 2 and sum(map(len, requests)) == len(item_of) == 300 * 5 + 1500
    for ids in requests:  # every item of a request is in it whole
        held: dict[str, int] = {}
        for point_id in ids:
            held[item_of[point_id]] = held.get(item_of[point_id], 0) + 1
        assert all(held[media_id] == sizes[media_id] for media_id in held), held
