"""A qdrant-client store that this process opened (a folder, ``:memory:``) makes a write's steps
by point id (mark complete, count, delete the item's other versions) instead of by filter, which
qdrant-client checks on every point in Python: an ingest of N items took O(N^2) (1,000 items of
8 spans: 0.53 s a write at the end, 77 ms at the start; now 13-16 ms throughout). The points
stored must be the ones the filters leave, whatever the order of writes, rewrites and deletes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.store.server import ServerStore
from tests.unit.store.conftest import DIM, MODEL, make_media


@contextmanager
def _by_filter(monkeypatch: pytest.MonkeyPatch, on: bool) -> Iterator[None]:
    if on:
        monkeypatch.setattr(ServerStore, "_by_id", property(lambda self: False))
    try:
        yield
    finally:
        monkeypatch.undo()


def _stored(store: QdrantStore) -> list[tuple[Any, ...]]:
    """Every point, by what it is (point ids hold each write's random id)."""
    return sorted(
        (
            p.payload["metadata"]["media_id"],
            p.payload["metadata"]["version"],
            p.payload["metadata"].get("segment_index"),
            p.payload["metadata"].get("state"),
        )
        for p in store.iter_points()
    )


def _operations(store: QdrantStore, seed: int, reopen: Any = None) -> QdrantStore:
    rng = np.random.default_rng(seed)
    for step in range(40):
        item = int(rng.integers(6))
        uri = f"file:///talks/{item}.wav"
        if rng.random() < 0.2:
            store.delete_media(make_media(uri, "v", 1, seed=0).ref.media_id)
        else:
            version = f"v{int(rng.integers(3))}"
            media = make_media(uri, version, int(rng.integers(0, 5)), seed=step)
            store.write_media(media.ref, MODEL, media.batches())
        if reopen is not None and rng.random() < 0.15:  # a new store object: the table read anew
            store = reopen(store)
    return store


@pytest.mark.parametrize("seed", range(6))
def test_writes_by_point_id_leave_what_writes_by_filter_leave(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = []
    for by_filter in (True, False):
        with _by_filter(monkeypatch, by_filter), open_store(url=":memory:") as store:
            store.ensure_collection(MODEL, DIM)
            _operations(store, seed)
            results.append(_stored(store))
    assert results[0] == results[1]
    assert results[1], "the operations left nothing to compare"
    assert all(state in ("complete", "empty") for *_, state in results[1])


def test_a_folder_reopened_between_writes_reads_its_items_again(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    folder = tmp_path / "client"
    QdrantClient(path=str(folder)).close()  # a qdrant-client folder

    reopened = []

    def reopen(store: QdrantStore) -> QdrantStore:
        store.close()
        reopened.append(1)
        return open_store(path=folder)

    store = open_store(path=folder)
    assert isinstance(store, ServerStore) and store._by_id
    store.ensure_collection(MODEL, DIM)
    store = _operations(store, 7, reopen)
    got = _stored(store)
    store.close()
    assert len(reopened) >= 3
    with open_store(url=":memory:") as reference:
        reference.ensure_collection(MODEL, DIM)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ServerStore, "_by_id", property(lambda self: False))
            _operations(reference, 7, lambda same: same)  # the same draws, no reopen
        assert got == _stored(reference)
    # one version per item: no rewrite left an older one behind
    items = [media for media, *_ in got]
    versions = {media: {v for m, v, *_ in got if m == media} for media in items}
    assert all(len(v) == 1 for v in versions.values())


def test_a_write_whose_upsert_runs_while_another_reads_the_table_is_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # thread A's upsert is slow; meanwhile a write of another item reads the table (the first
    # write of the opened store): A's points were missing from it, and A's next version was
    # written beside the old one, both complete (review of 2026-12-07)
    import threading
    import time

    with open_store(url=":memory:") as store:
        store.ensure_collection(MODEL, DIM)
        assert isinstance(store, ServerStore) and store._by_id
        real = store.client.upsert

        def upsert(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "slow":
                time.sleep(0.3)
            return real(*args, **kwargs)

        monkeypatch.setattr(store.client, "upsert", upsert)
        a1, b1 = make_media("file:///a.wav", "v1", 3, seed=1), make_media("file:///b.wav", "v1", 3, seed=2)
        slow = threading.Thread(target=lambda: store.write_media(a1.ref, MODEL, a1.batches()), name="slow")
        slow.start()
        time.sleep(0.1)
        store.write_media(b1.ref, MODEL, b1.batches())
        slow.join()
        a2 = make_media("file:///a.wav", "v2", 4, seed=3)
        store.write_media(a2.ref, MODEL, a2.batches())
        stored = _stored(store)
    versions = sorted({(media, version) for media, version, *_ in stored})
    assert versions == sorted({(a2.ref.media_id, "v2"), (b1.ref.media_id, "v1")})
