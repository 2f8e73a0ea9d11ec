"""An embedded store gives back the space of deleted points (tester 3, session 31): a store of
1,500 points, one item of 500 rewritten 100 times, grew 7.8 -> 143.6 MB and never shrank, since
Edge's vacuum ran only with the HNSW build (150k points and more). The vacuum now runs below the
threshold too, building no graph: searches there stay exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import StoreFullError
from clasp_ingest.store import EdgeOptions, EdgeStore, SearchFilter
from clasp_ingest.store.edge import _disk_bytes
from tests.unit.store.conftest import MODEL, Media, make_media, unit_rows

DIM = 128  # a deleted point leaves its vector (512 bytes) and payload behind
#: Exact below 1,500 points, where segments of 1,500 or more (``segment_index_points``) would get
#: a graph: the vacuum of 1,400 live points among 800 deleted ones made one with an int8 copy
#: while that threshold was in force.
OPTIONS = EdgeOptions(index_threshold=1500)


def _item(name: str, version: str, n: int, seed: int) -> Media:
    media = make_media(f"file:///{name}.wav", version, n, seed=seed)
    return Media(media.ref, media.segments, unit_rows(np.random.default_rng(seed), n, DIM))


def _write(store: EdgeStore, media: Media) -> None:
    with store.bulk():  # as one ingest run does
        store.write_media(media.ref, MODEL, media.batches(100))


def _segments_bytes(store: EdgeStore) -> int:
    return _disk_bytes(store.path / store.collection / "shard" / "segments")


def _stable(store: EdgeStore) -> list[Media]:
    store.ensure_collection(MODEL, DIM)
    items = [_item(f"s{i}", "v1", 250, seed=i) for i in range(4)]
    for media in items:
        _write(store, media)
    return items


def test_rewriting_an_item_again_and_again_keeps_the_store_the_size_of_its_contents(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "churned", options=OPTIONS) as store:
        _stable(store)
        for version in range(11):  # ingest --force, a changed file: a new write each time
            _write(store, _item("churn", f"v{version}", 300, seed=100 + version))
        assert store.count() == 1300
        churned = _segments_bytes(store)
    with EdgeStore(tmp_path / "fresh", options=OPTIONS) as fresh:
        _stable(fresh)
        _write(fresh, _item("churn", "v10", 300, seed=110))
        same_contents = _segments_bytes(fresh)
    # without the vacuum: 4.3 MB against 2.1 (3,300 dead points); with it at most the engine's
    # 20 % of deleted points (and a segment file's growth step)
    assert churned < 1.5 * same_contents, (churned, same_contents)


def test_store_delete_gives_the_space_back_when_the_store_closes(tmp_path: Path) -> None:
    with EdgeStore(tmp_path, options=OPTIONS) as store:
        items = _stable(store)
        before = _segments_bytes(store)
        for media in items[:2]:  # store delete: outside a bulk ingest
            assert store.delete_media(media.ref.media_id) == 250
    with EdgeStore(tmp_path, options=OPTIONS) as store:
        assert store.count() == 500 and not store.indexed
        after = _segments_bytes(store)
    assert after < 0.75 * before, (after, before)


def _top(
    store: EdgeStore, queries: np.ndarray, flt: SearchFilter | None = None
) -> list[list[tuple[str, int, float]]]:
    hits = [store.search(q, k=10, filters=flt) for q in queries]
    return [[(h.media_id, h.payload["metadata"]["segment_index"], h.score) for h in found] for found in hits]


def test_the_space_comes_back_without_a_graph_and_searches_stay_exact(tmp_path: Path) -> None:
    queries = unit_rows(np.random.default_rng(7), 12, DIM)
    store = EdgeStore(tmp_path, options=OPTIONS)
    items = _stable(store)
    for run in range(3):  # 3 runs, each writing 3 versions of an item: 800-1,200 dead points a run
        with store.bulk():
            for version in range(3 * run, 3 * run + 3):
                churn = _item("churn", f"v{version}", 400, seed=200 + version)
                store.write_media(churn.ref, MODEL, churn.batches(100))
        info = store._require_shard().info()
        assert info.indexed_vectors_count == 0 and not store.indexed  # no graph, no int8 copy
        live = [*items, churn]
        vectors = np.concatenate([m.vectors for m in live])
        spans = [(m.ref.media_id, s.index) for m in live for s in m.segments]
        for q, hits in zip(queries, _top(store, queries), strict=True):
            scores = vectors @ q  # a brute-force oracle: the same spans, with their full scores
            best = np.argsort(-scores)[:10]
            assert [hit[:2] for hit in hits] == [spans[i] for i in best]
            np.testing.assert_allclose([hit[2] for hit in hits], scores[best], atol=1e-5)
    assert _segments_bytes(store) < 2_500_000, _segments_bytes(store)  # 4.5 MB where nothing was given back
    one_item = SearchFilter(media_id=items[1].ref.media_id)
    filtered = _top(store, queries, one_item)
    store.close()
    with EdgeStore(tmp_path, options=OPTIONS) as reopened:
        assert not reopened.indexed and reopened._search_params().exact
        assert _top(reopened, queries, one_item) == filtered
        # grown past the threshold: the graphs are built after all, with the collection's own
        # threshold back in the engine's settings
        _write(reopened, _item("more", "v1", 200, seed=300))
        assert reopened.indexed and reopened._require_shard().info().indexed_vectors_count > 0
    config = json.loads((tmp_path / store.collection / "shard" / "edge_config.json").read_text())
    assert config["optimizers"]["indexing_threshold"] == config["hnsw_config"]["full_scan_threshold"]


def test_what_a_cut_off_optimization_left_is_removed_before_the_next(tmp_path: Path) -> None:
    # a vacuum killed part-way leaves its half-built segment in temp_segments, which Edge
    # never removes (138 MB after a vacuum of 70k points was killed)
    with EdgeStore(tmp_path, options=OPTIONS) as store:
        items = _stable(store)
    leftover = tmp_path / store.collection / "shard" / "temp_segments" / "segment_builder_Xy12Ab"
    leftover.mkdir(parents=True)
    (leftover / "vector_storage").write_bytes(b"\0" * 100_000)
    with EdgeStore(tmp_path, options=OPTIONS) as store:
        store.delete_media(items[0].ref.media_id)
    assert not leftover.exists()
    with EdgeStore(tmp_path, options=OPTIONS) as store:
        assert store.count() == 750


def test_a_store_made_before_gets_its_space_back_too_without_a_graph(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EdgeStore(tmp_path, options=OPTIONS) as store:
        items = _stable(store)
    file = tmp_path / store.collection / "shard" / "edge_config.json"
    config = json.loads(file.read_text())
    made_before = config["hnsw_config"]["full_scan_threshold"]  # the graphs' threshold, as written then
    config["optimizers"]["indexing_threshold"] = made_before
    file.write_text(json.dumps(config))
    with EdgeStore(tmp_path, options=OPTIONS) as store, caplog.at_level("INFO", "clasp_ingest.store.edge"):
        with store.bulk():
            for version in range(3):  # 800 dead points beside 1,400 live
                churn = _item("churn", f"v{version}", 400, seed=200 + version)
                store.write_media(churn.ref, MODEL, churn.batches(100))
        assert "gave back the space of deleted points of 'clasp_segments'" in caplog.text
        assert store._require_shard().info().indexed_vectors_count == 0 and store.count() == 1400
        assert store.search(items[2].vectors[5], k=1)[0].score == pytest.approx(1.0, abs=1e-5)
    assert json.loads(file.read_text())["optimizers"]["indexing_threshold"] > made_before


def test_searches_in_other_threads_wait_while_the_engine_settings_change(tmp_path: Path) -> None:
    """The shard is closed and opened again to change the engine's indexing threshold (an index
    build, a store of an earlier release giving back its space): searches in other threads must
    not find the store closed meanwhile (they did: 42,000 errors over 20 changes)."""
    import threading

    with EdgeStore(tmp_path / "q", options=OPTIONS) as store:
        items = _stable(store)
        query = items[0].vectors[0]
        errors: list[BaseException] = []
        done = threading.Event()

        def search() -> None:
            while not done.is_set():
                try:
                    assert store.search(query, k=3)
                except BaseException as exc:  # every failure is the finding
                    errors.append(exc)

        threads = [threading.Thread(target=search) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            for turn in range(12):
                store._use_indexing_kb(12345 if turn % 2 else 2**40)
        finally:
            done.set()
            for thread in threads:
                thread.join()
        assert errors == []


def test_a_search_that_has_the_shard_when_the_settings_change_is_not_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search that took the shard just before another thread closed it to change the engine's
    settings read "Shard is not initialized", and called the intact collection damaged, with
    ``--recreate`` as the remedy (reviewer 3): the change waits for the call, and the call uses
    the shard opened again."""
    import threading

    with EdgeStore(tmp_path / "q", options=OPTIONS) as store:
        items = _stable(store)
        took, go = threading.Event(), threading.Event()
        require = EdgeStore._require_shard

        def paused(self: EdgeStore) -> object:
            shard = require(self)
            if threading.current_thread().name == "searcher":
                took.set()
                go.wait()  # preempted right after taking the shard
            return shard

        monkeypatch.setattr(EdgeStore, "_require_shard", paused)
        found: list[object] = []

        def search() -> None:
            try:
                found.append(len(store.search(items[0].vectors[0], k=3)))
            except BaseException as exc:
                found.append(exc)

        searcher = threading.Thread(target=search, name="searcher")
        searcher.start()
        took.wait()
        store._use_indexing_kb(12345)  # closed and opened again while the search holds the shard
        go.set()
        searcher.join()
        assert found == [3]
        assert store.count() == 1000 and len(store.search(items[0].vectors[0], k=3)) == 3


def test_the_engines_own_room_check_is_a_full_disk_not_a_damaged_collection(tmp_path: Path) -> None:
    """With the disk filled by another program just before a vacuum, the engine refuses it before
    writing anything; that was reported as a damaged collection, with ``--recreate`` (reviewer 3)."""
    from clasp_ingest.store.edge import _ENGINE_SERVICE_ERROR

    with EdgeStore(tmp_path / "q", options=OPTIONS) as store:
        _stable(store)
        refused = Exception(
            f"{_ENGINE_SERVICE_ERROR}Not enough space available for optimization, needed: 245.66 MiB, "
            "available: 292.00 KiB"
        )
        said = store._engine_error("optimize", refused)
        assert isinstance(said, StoreFullError) and "is full" in str(said) and "--recreate" not in str(said)


class _FlushFails:
    """An engine shard whose flush fails once the data is flushed (a full disk, a Ctrl-C)."""

    def __init__(self, engine: object, error: BaseException) -> None:
        self._engine, self._error = engine, error

    def flush(self) -> None:
        self._engine.flush()  # type: ignore[attr-defined]
        raise self._error

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)


@pytest.mark.parametrize(
    ("error", "raised"),
    [(KeyboardInterrupt(), KeyboardInterrupt), (OSError(28, "No space left on device"), StoreFullError)],
)
def test_a_switch_whose_flush_fails_opens_the_shard_again(
    tmp_path: Path, error: BaseException, raised: type[BaseException]
) -> None:
    """The shard was closed and never opened again, and every later call of the intact store,
    ``close`` included, said "damaged, ingest again with --recreate" (reviewer 5)."""
    with EdgeStore(tmp_path / "q", options=OPTIONS) as store:
        items = _stable(store)
        assert store._shard is not None
        store._shard.swap(_FlushFails(store._shard.engine, error))
        with pytest.raises(raised):
            store._use_indexing_kb(12345)
        assert store.count() == 1000 and len(store.search(items[0].vectors[0], k=3)) == 3
