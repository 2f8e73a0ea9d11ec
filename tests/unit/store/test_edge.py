"""Qdrant Edge specifics: persistence, one process per path, the index policy."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import EdgeOptions, EdgeStore, open_store
from clasp_ingest.store.base import CLI_NAMES, Where
from clasp_ingest.types import Segment
from tests.unit.store.conftest import DIM, MODEL, make_media, rescored_recall, write_items


def test_reopen_keeps_points_and_identity(tmp_path: Path) -> None:
    a = make_media("file:///a.wav", "v1", 12, seed=1)
    with open_store(path=tmp_path) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(a.ref, MODEL, a.batches())
    with open_store(path=tmp_path) as store:
        assert store.identity is not None and (store.identity.model_id, store.identity.dim) == (MODEL, DIM)
        assert store.count() == 12 and store.has_media(a.ref.media_id, "v1")
        assert store.search(a.vectors[4], k=1)[0].start_s == 8.0


def test_second_open_of_a_path_is_refused_with_a_remedy(tmp_path: Path) -> None:
    with open_store(path=tmp_path) as store:
        store.ensure_collection(MODEL, DIM)
        with pytest.raises(StoreError, match=r"open in another process.*\(open_store\(url=\.\.\.\)\)"):
            open_store(path=tmp_path)  # a Python caller: open_store's arguments
        with pytest.raises(StoreError, match=r"open in another process.*--qdrant-url"):
            open_store(path=tmp_path, names=CLI_NAMES)


def test_a_store_dropped_unclosed_lets_the_next_open_in_without_the_garbage_collector(
    tmp_path: Path,
) -> None:
    # ClaspRetriever.from_path(...).invoke(q) twice in a row: the first store, dropped unclosed,
    # held its lock through a cycle (its shard wrapper kept a bound method of it) until gc ran
    a = make_media("file:///a.wav", "v1", 3, seed=1)
    with open_store(path=tmp_path) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(a.ref, MODEL, a.batches())
    gc.disable()
    try:
        for _ in range(2):
            store = open_store(path=tmp_path)
            assert store.search(a.vectors[1], k=1)[0].start_s == 2.0
            del store
    finally:
        gc.enable()


def test_two_stores_making_one_collection_at_once_the_second_is_refused(tmp_path: Path) -> None:
    with open_store(path=tmp_path / "q") as first, open_store(path=tmp_path / "q") as second:
        # neither found the collection; the first makes it, the second then finds it being made
        first.ensure_collection(MODEL, DIM)
        with pytest.raises(StoreError, match=r"open in another process.*open_store\(url="):
            second.ensure_collection(MODEL, DIM)
    with open_store(path=tmp_path / "q") as again:  # closed: open to the next one
        assert again.identity is not None and again.identity.model_id == MODEL
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [".clasp_segments.lock", "clasp_segments"]


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))
    x = centres[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_small_collections_are_exact_and_large_ones_get_hnsw_with_good_recall(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, options=EdgeOptions(index_threshold=1500, hnsw_ef=128))
    store.ensure_collection(MODEL, DIM)
    vectors = _clustered(3000, seed=3)
    with store.bulk():
        for i in range(10):
            item = make_media(f"file:///m{i}.wav", "v1", 300, seed=i)
            store.write_media(item.ref, MODEL, [(item.segments, vectors[i * 300 : (i + 1) * 300])])
            if i == 0:
                assert not store.indexed  # below the threshold: exact
    assert store.indexed and store._require_shard().info().indexed_vectors_count > 0
    queries = _clustered(50, seed=4)
    recall = []
    for q in queries:
        approx = {h.url for h in store.search(q, k=10)}
        exact = {p.payload["metadata"]["url"] for p in store._query_exact(q.tolist(), 10, Where())}
        recall.append(len(approx & exact) / 10)
    assert np.mean(recall) >= 0.95, np.mean(recall)
    store.close()
    with EdgeStore(tmp_path) as reopened:
        assert reopened.indexed and reopened.count() == 3000


def test_default_policy_is_exact_up_to_150k_then_a_wide_hnsw_without_payload_graphs() -> None:
    opts = EdgeOptions()
    assert (opts.index_threshold, opts.hnsw_m, opts.hnsw_ef_construct, opts.hnsw_ef) == (
        150_000,
        32,
        200,
        None,
    )
    assert (opts.search_ef(200_000), opts.search_ef(299_999), opts.search_ef(1_000_000)) == (4096, 4096, 6144)
    assert (opts.search_ef(200_000, graph=True), opts.search_ef(1_000_000, graph=True)) == (512, 512)
    assert EdgeOptions(hnsw_ef=96).search_ef(1_000_000) == 96  # a number sets one beam for every size
    assert opts.payload_m == 0 and opts.optimize_every == 50_000
    assert (opts.quantization, opts.oversampling) == ("int8", 8.0)
    assert opts.segment_index_points == 20_000
    assert EdgeOptions(index_threshold=1500).segment_index_points == 1500
    bad_options = ({"payload_m": -1}, {"quantization": "binary"}, {"oversampling": 0.5},
                   {"optimize_every": 0}, {"hnsw_ef": 0}, {"wide_ef_points": 0})  # fmt: skip
    for bad in bad_options:
        with pytest.raises(ValueError, match="invalid EdgeOptions"):
            EdgeOptions(**bad)  # type: ignore[arg-type]


def test_a_new_collection_is_written_with_the_options_hnsw_and_quantization(tmp_path: Path) -> None:
    opts = EdgeOptions(index_threshold=1500, hnsw_m=12, hnsw_ef_construct=64, quantization="int8")
    with EdgeStore(tmp_path, options=opts) as store:
        store.ensure_collection(MODEL, DIM)
        config = store.index_config()
    assert config["hnsw"]["m"] == 12 and config["hnsw"]["ef_construct"] == 64
    assert config["hnsw"]["payload_m"] == 0
    assert config["quantization"]["scalar"]["type"] == "int8"
    assert config["graph"] == "clasp"  # no query metric: the graph of the model's vectors
    with EdgeStore(tmp_path) as plain:  # other options later: the collection keeps its own
        assert plain.index_config() == config


def test_search_params_follow_the_size_policy(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, options=EdgeOptions(index_threshold=1500, hnsw_ef=96, oversampling=3.0))
    store.ensure_collection(MODEL, DIM)
    with store.bulk():
        write_items(store, _clustered(1200, seed=5), per_media=300)
    assert not store.indexed and store._search_params().exact  # below the threshold: exact
    with store.bulk():
        write_items(store, _clustered(600, seed=6)[:300], per_media=300)  # same media ids: replaced
        item = make_media("file:///extra.wav", "v1", 600, seed=9)
        store.write_media(item.ref, MODEL, [(item.segments, _clustered(600, seed=7))])
    params = store._search_params()
    assert store.indexed and not params.exact and params.hnsw_ef == 96
    assert params.quantization.rescore and params.quantization.oversampling == 3.0
    store.close()


def test_optimize_every_builds_the_index_during_a_bulk_ingest(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path, options=EdgeOptions(index_threshold=1500, optimize_every=900))
    store.ensure_collection(MODEL, DIM)
    vectors = _clustered(3000, seed=8)
    with store.bulk():
        write_items(store, vectors[:1800])
        assert store.indexed  # built at 1,800 points, before the ingest ends
        assert store._require_shard().info().indexed_vectors_count > 0
        write_items(store, vectors[1800:], first=6)
    assert store.indexed and store.count() == 3000
    store.close()


def test_a_collection_made_with_other_hnsw_settings_keeps_them_and_stays_searchable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the defaults before int8 quantization, with another graph
    old = EdgeOptions(index_threshold=1500, hnsw_m=16, hnsw_ef_construct=128, payload_m=16, quantization=None)
    store = EdgeStore(tmp_path, options=old)
    store.ensure_collection(MODEL, DIM)
    vectors = _clustered(1800, seed=10)
    with store.bulk():
        write_items(store, vectors)
    assert store.indexed
    store.close()
    with caplog.at_level("INFO", logger="clasp_ingest.store.edge"):
        reopened = EdgeStore(tmp_path, options=EdgeOptions(index_threshold=1500))
    assert "keeps the index settings it was made with" in caplog.text and "--recreate" in caplog.text
    assert "'quantization': None" in caplog.text
    with reopened:
        assert reopened.indexed and reopened.index_config()["hnsw"]["m"] == 16
        assert reopened.index_config()["quantization"] is None
        assert reopened.search(vectors[7], k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_int8_collections_search_exactly_below_the_threshold_and_rescore_above(tmp_path: Path) -> None:
    vectors = _clustered(2400, seed=12)
    queries = _clustered(30, seed=13)
    with EdgeStore(tmp_path, options=EdgeOptions(index_threshold=1500, hnsw_ef=256)) as store:
        store.ensure_collection(MODEL, DIM)
        assert store.index_config()["quantization"]["scalar"]["type"] == "int8"  # the default
        with store.bulk():
            write_items(store, vectors[:1200])
        assert not store.indexed
        for q in queries[:10]:  # exact: the full vectors' scores, not the int8 copy's
            exact = np.sort(vectors[:1200] @ q)[::-1][:10]
            np.testing.assert_allclose([h.score for h in store.search(q, k=10)], exact, atol=1e-5)
        with store.bulk():
            write_items(store, vectors[1200:], first=4)
        assert store.indexed
        recall = rescored_recall(
            store, vectors, queries
        )  # graph walk on int8, the best 80 rescored: the scores are the full vectors'
        assert recall >= 0.95, recall


def test_the_beam_widens_with_the_collection_and_is_read_again_on_reopening(tmp_path: Path) -> None:
    opts = EdgeOptions(index_threshold=1500, wide_ef_points=2000)
    with EdgeStore(tmp_path, options=opts) as store:
        store.ensure_collection(MODEL, DIM)
        with store.bulk():
            write_items(store, _clustered(1800, seed=14))
        assert store.indexed and store._search_params().hnsw_ef == 4096  # 1,800 points
        with store.bulk():
            write_items(store, _clustered(600, seed=15), first=6)
        assert store._search_params().hnsw_ef == 6144  # 2,400 points
    with EdgeStore(tmp_path, options=opts) as reopened:
        assert reopened._search_params().hnsw_ef == 6144


@pytest.mark.parametrize("length", [249, 250, 255])
def test_collection_names_up_to_255_characters_work_and_stay_locked(tmp_path: Path, length: int) -> None:
    name = "c" * length
    a = make_media("file:///a.wav", "v1", 4, seed=1)
    with open_store(path=tmp_path, collection=name) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(a.ref, MODEL, a.batches())
        with pytest.raises(StoreError, match="open in another process"):
            open_store(path=tmp_path, collection=name)
    with open_store(path=tmp_path, collection=name) as store:
        assert store.count() == 4
    locks = [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")]
    assert len(locks) == 1 and len(locks[0]) <= 255
    assert locks == [f".{name}.lock"] if length <= 249 else locks[0].startswith(".ccc")


def test_a_nearly_full_disk_refuses_writes_with_a_remedy_and_keeps_what_was_stored(tmp_path: Path) -> None:
    # on a full disk the engine's memory-mapped files cannot grow: SIGBUS killed the process
    # (exit 135, no message). Here the disk is "full" because the threshold is above its free space.
    from dataclasses import replace

    from clasp_ingest.errors import StoreFullError
    from clasp_ingest.pipeline import is_transient

    huge = 2**62
    with open_store(path=tmp_path / "q", edge=EdgeOptions(min_free_bytes=huge)) as store:
        full = r"disk of the embedded store .* is full \(\d+ MiB free, under"
        with pytest.raises(StoreFullError, match=full):
            store.ensure_collection(MODEL, DIM)
        assert not store.exists()
    a, b = make_media("file:///a.wav", "v1", 12, seed=1), make_media("file:///b.wav", "v1", 12, seed=2)
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(a.ref, MODEL, a.batches())

        def filling_up() -> Iterator[tuple[list[Segment], np.ndarray]]:
            first, *rest = b.batches(size=4)
            yield first  # written; then the disk fills
            store.options = replace(store.options, min_free_bytes=huge)
            yield from rest

        with pytest.raises(StoreFullError, match="--qdrant-path") as failed:
            store.write_media(b.ref, MODEL, filling_up())
        assert not is_transient(failed.value)  # retrying does not free the disk
        assert store.count() == 12 and not store.has_media(b.ref.media_id, "v1")  # b's batch rolled back
        assert store.search(a.vectors[3], k=1)[0].start_s == 6.0


def test_an_index_build_without_room_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # the end of every bulk ingest builds the index: a disk with room for the points but not for
    # the rebuild failed the whole run (no summary), though nothing was wrong with what it wrote
    import logging

    from clasp_ingest.store import edge

    a = make_media("file:///a.wav", "v1", 12, seed=1)
    with open_store(path=tmp_path, edge=EdgeOptions(index_threshold=5)) as store:
        store.ensure_collection(MODEL, DIM)
        monkeypatch.setattr(edge, "_disk_bytes", lambda folder: 2**62)  # the rebuild needs more than is free
        with caplog.at_level(logging.WARNING, logger="clasp_ingest"), store.bulk():
            store.write_media(a.ref, MODEL, a.batches())
        assert "not building the HNSW index" in caplog.text and "rewrite its segments" in caplog.text
        assert not store.indexed and store.search(a.vectors[4], k=1)[0].start_s == 8.0
