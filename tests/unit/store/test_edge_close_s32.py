"""Closing an embedded store while another thread uses it, and copies of it (session 32).

``close()`` closed the engine under a search another thread was running (the search then failed
on a closed shard), and ``copy.copy(store)``, once garbage-collected, closed the original's lock
file descriptor: the folder's lock was gone while the original still wrote, and the original's
own close later closed whatever file had been given that descriptor number since."""

from __future__ import annotations

import copy
import fcntl
import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import EdgeStore
from clasp_ingest.store.edge import _edge, lock_name
from tests.unit.store.conftest import DIM, MODEL, Media, make_media


def _stored(path: Path) -> tuple[EdgeStore, Media]:
    store = EdgeStore(path)
    store.ensure_collection(MODEL, DIM)
    media = make_media("file:///talk.wav", "v1", 40, seed=3)
    store.write_media(media.ref, MODEL, media.batches(20))
    return store, media


class _PausedQuery:
    """The real engine shard, whose ``query`` waits for ``go`` once it has begun (a long search)."""

    def __init__(self, engine: object) -> None:
        self._engine = engine
        self.began, self.go = threading.Event(), threading.Event()

    def query(self, request: object) -> object:
        self.began.set()
        self.go.wait(timeout=30)
        return self._engine.query(request)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)


def test_close_waits_for_a_search_running_in_another_thread(tmp_path: Path) -> None:
    store, media = _stored(tmp_path)
    assert store._shard is not None
    paused = _PausedQuery(store._shard.engine)
    store._shard.swap(paused)
    events: list[object] = []

    def search() -> None:
        try:
            events.append(len(store.search(media.vectors[0], k=3)))
        except BaseException as exc:  # every failure is the finding
            events.append(exc)

    def close() -> None:
        store.close()
        events.append("closed")

    searcher = threading.Thread(target=search)
    searcher.start()
    assert paused.began.wait(timeout=30)
    closer = threading.Thread(target=close)
    closer.start()
    closer.join(timeout=1.0)  # it closed the engine under the search at once
    waited = closer.is_alive()
    paused.go.set()
    searcher.join(timeout=30)
    closer.join(timeout=30)
    assert (waited, events) == (True, [3, "closed"])
    with EdgeStore(tmp_path) as again:  # closed whole: the folder's lock and the engine's are free
        assert again.count() == 40


def test_calls_after_close_say_the_store_is_closed(tmp_path: Path) -> None:
    store, media = _stored(tmp_path)
    store.close()
    store.close()  # twice is fine
    folder = str(tmp_path / store.collection)
    calls: dict[str, Callable[[], object]] = {
        "count": store.count,
        "search": lambda: store.search(media.vectors[0], k=3),
        "write_media": lambda: store.write_media(media.ref, MODEL, media.batches(20)),
        "ensure_collection": lambda: store.ensure_collection(MODEL, DIM),  # returned False
        "drop": store.drop,  # removed the folder without holding its lock
        "require_collection": store.require_collection,  # the cached identity
        "optimize": store.optimize,  # returned False
    }
    for name, call in calls.items():
        with pytest.raises(StoreError, match=f"the embedded store {folder!r} is closed; open it again"):
            call()
        assert store._lock_fd is None, name  # nothing opened the store again
    with EdgeStore(tmp_path) as again:
        assert again.count() == 40


def test_a_call_waiting_for_close_is_told_the_store_is_closed(tmp_path: Path) -> None:
    """A call that took the shard before close, and runs after it: not "damaged, --recreate"."""
    store, _ = _stored(tmp_path)
    held = store._require_shard()
    store.close()
    with pytest.raises(StoreError, match="is closed; open it again") as caught:
        held.count(_edge().CountRequest(exact=True))
    assert "recreate" not in str(caught.value)


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy])
def test_a_store_cannot_be_copied_and_keeps_its_lock(tmp_path: Path, copier: object) -> None:
    store, media = _stored(tmp_path)
    lock = tmp_path / lock_name(store.collection)
    with pytest.raises(TypeError, match="an embedded store cannot be copied"):
        copier(store)  # type: ignore[operator]
    gc.collect()  # the copy's __del__ closed the original's lock descriptor
    other = os.open(lock, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # the folder is still locked by the original
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
    assert store.count() == 40
    store.close()
    with EdgeStore(tmp_path) as again:
        assert np.isclose(again.search(media.vectors[0], k=1)[0].score, 1.0, atol=1e-5)


def test_a_write_after_close_warns_of_no_partial_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # it got past the cached identity, failed at its first point, and its rollback warned of a
    # partial write with `store delete` (which deletes the intact version) as the remedy
    store, media = _stored(tmp_path)
    store.close()
    with pytest.raises(StoreError, match="is closed; open it again"):
        store.write_media(media.ref, MODEL, media.batches(20))
    assert "could not roll back" not in caplog.text
