"""Qdrant Edge specifics: persistence, one process per path, the index policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import EdgeOptions, EdgeStore, open_store
from clasp_ingest.store.base import Where
from tests.unit.store.conftest import DIM, MODEL, make_media


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
        with pytest.raises(StoreError, match=r"open in another process.*--qdrant-url"):
            open_store(path=tmp_path)


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
