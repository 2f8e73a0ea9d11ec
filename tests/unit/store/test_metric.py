"""The query-aware graph space of embedded collections (``clasp_ingest.store.metric``): the
same ranking as the model's vectors, and a store that walks it and rescores exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import EdgeOptions, EdgeStore, export_collection
from clasp_ingest.store.base import Where
from clasp_ingest.store.edge import GRAPH_VECTOR
from clasp_ingest.store.metric import QueryMetric
from tests.unit.store.conftest import DIM, MODEL, make_media, rescored_recall, write_items


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _queries(n: int, seed: int) -> np.ndarray:
    """Queries that, like text queries of speech, share a direction the points lack and vary
    mostly in a few coordinates."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)) * np.r_[np.full(4, 1.0), np.full(DIM - 4, 0.15)]
    x[:, -1] = 2.0
    return _unit(x)


def _points(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, DIM))
    centres[:, -1] = 0.0
    return _unit(centres[rng.integers(0, 30, n)] + 0.4 * rng.standard_normal((n, DIM)))


def test_the_graph_space_ranks_every_query_exactly_as_the_model_vectors() -> None:
    metric = QueryMetric.fit(_queries(500, seed=1))
    points, queries = _points(400, seed=2), _queries(20, seed=3)
    graph = metric.points(points)
    assert graph.shape == (400, DIM + 1)
    np.testing.assert_allclose(np.linalg.norm(graph, axis=1), 1.0, atol=1e-5)
    for q in queries:
        walk = metric.query(q)
        assert walk.shape == (DIM + 1,) and walk[-1] == 0.0
        scale = float(np.median((graph @ walk) / (points @ q)))  # a constant per query: the same order
        assert scale > 0
        np.testing.assert_allclose(graph @ walk, scale * (points @ q), atol=2e-6)
    # points need not be unit: they are normalised first (the collection's cosine)
    np.testing.assert_allclose(metric.points(3.0 * points[:5]), graph[:5], atol=1e-6)


def test_a_metric_is_saved_and_read_back_and_bad_ones_are_refused(tmp_path: Path) -> None:
    metric = QueryMetric.fit(_queries(300, seed=4), gamma=0.5)
    metric.save(tmp_path / "m.npz")
    again = QueryMetric.load(tmp_path / "m.npz")
    np.testing.assert_allclose(again.root, metric.root)
    assert again.radius == pytest.approx(metric.radius)
    (tmp_path / "bad.npz").write_bytes(b"not a metric")
    with pytest.raises(StoreError, match=r"bad\.npz.*--recreate"):
        QueryMetric.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="positive definite"):
        QueryMetric.from_matrix(-np.eye(3))
    with pytest.raises(ValueError, match="symmetric square"):
        QueryMetric.from_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="gamma > 0"):
        QueryMetric.fit(_queries(10, seed=5), gamma=0.0)


def test_a_collection_with_a_metric_walks_its_graph_and_rescores_with_the_model_vectors(
    tmp_path: Path,
) -> None:
    metric = QueryMetric.fit(_queries(1000, seed=6))
    vectors, queries = _points(2400, seed=7), _queries(30, seed=8)
    opts = EdgeOptions(index_threshold=1500)
    with EdgeStore(tmp_path, options=opts) as store:
        store.ensure_collection(MODEL, DIM, query_metric=metric)
        config = json.loads((tmp_path / store.collection / "shard" / "edge_config.json").read_text())
        assert config["vectors"]["clasp"]["hnsw_config"]["m"] == 0  # no graph of the model vectors
        assert config["vectors"][GRAPH_VECTOR]["size"] == DIM + 1
        with store.bulk():
            write_items(store, vectors[:1200])
        assert not store.indexed
        for q in queries[:5]:  # exact below the threshold
            np.testing.assert_allclose([h.score for h in store.search(q, k=10)],
                                       np.sort(vectors[:1200] @ q)[::-1][:10], atol=1e-5)  # fmt: skip
        with store.bulk():
            write_items(store, vectors[1200:], first=4)
        assert store.indexed and store._search_params(graph=True).hnsw_ef == 512
        recall = rescored_recall(
            store, vectors, queries
        )  # the graph's candidates, rescored: the scores are the model vectors'
        assert recall >= 0.95, recall
        media_hits = store.search(queries[0], k=5, filters={"source": "file:///m2.wav"})
        assert len(media_hits) == 5 and {h.url.split("#")[0] for h in media_hits} == {"file:///m2.wav"}
        exact = store._query_exact(queries[0].tolist(), 5, Where())
        assert [p.id for p in exact] == [h.point_id for h in store.search(queries[0], k=5)]
    identity = json.loads((tmp_path / store.collection / "collection.json").read_text())
    assert identity["graph_vector"] == GRAPH_VECTOR and identity["query_metric"] == "query_metric.npz"
    with EdgeStore(tmp_path, options=opts) as reopened:  # the metric is read back with the collection
        assert reopened.indexed and reopened.query_metric is not None
        np.testing.assert_allclose(reopened.query_metric.root, metric.root)
        hits = reopened.search(queries[1], k=3)
        np.testing.assert_allclose(
            [h.score for h in hits], np.sort(vectors @ queries[1])[::-1][:3], atol=1e-5
        )
        with EdgeStore(tmp_path / "copy", options=opts) as copy:  # an embedded copy keeps the space
            assert export_collection(reopened, copy) == 2400
            assert copy.query_metric is not None and copy.index_config()["graph"] == GRAPH_VECTOR
            np.testing.assert_allclose(copy.query_metric.matrix, metric.matrix)
            hits = copy.search(queries[2], k=3)
            np.testing.assert_allclose(
                [h.score for h in hits], np.sort(vectors @ queries[2])[::-1][:3], atol=1e-5
            )


def test_a_collection_whose_metric_file_is_lost_is_refused_with_the_remedy(tmp_path: Path) -> None:
    with EdgeStore(tmp_path) as store:
        store.ensure_collection(MODEL, DIM, query_metric=QueryMetric.fit(_queries(100, seed=12)))
        lost = tmp_path / store.collection / "query_metric.npz"
    lost.unlink()
    with EdgeStore(tmp_path) as store, pytest.raises(StoreError, match=r"query_metric\.npz.*--recreate"):
        store.identity  # noqa: B018 - opening reads it; using it says what is wrong (drop still works)


def test_a_metric_for_other_vectors_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    with EdgeStore(tmp_path) as store:
        with pytest.raises(ValueError, match="8-d vectors cannot index 16-d"):
            store.ensure_collection(MODEL, DIM, query_metric=QueryMetric.from_matrix(np.eye(8)))
        assert not (tmp_path / store.collection).exists()


def test_hybrid_search_of_an_indexed_collection_with_a_metric_finds_the_span_by_all_three_parts(
    tmp_path: Path,
) -> None:
    from clasp_ingest.store.base import HybridQuery
    from clasp_ingest.words import SpanWords, query_words, sparse_words

    text_dim = 8
    vectors = _points(1800, seed=9)
    dense = _unit(np.random.default_rng(10).standard_normal((1800, text_dim)))
    with EdgeStore(tmp_path, options=EdgeOptions(index_threshold=1500)) as store:
        store.ensure_collection(
            MODEL, DIM, text_dim=text_dim, query_metric=QueryMetric.fit(_queries(500, seed=11))
        )
        with store.bulk():
            for i in range(6):
                item = make_media(f"file:///w{i}.wav", "v1", 300, seed=i)
                rows = slice(i * 300, (i + 1) * 300)
                said = ["galaxy telescope" if (i, j) == (4, 17) else "the weather" for j in range(300)]
                words = [SpanWords(t, "en", "fw:test", tuple(map(float, d)), sparse_words(t))
                         for t, d in zip(said, dense[rows], strict=True)]  # fmt: skip
                store.write_media(item.ref, MODEL, [(item.segments, vectors[rows], words)])
        assert store.indexed
        target = 4 * 300 + 17
        query = HybridQuery(vectors[target].tolist(), dense[target].tolist(), query_words("galaxy"))
        hits = store.search_hybrid(query, k=5)
        top = hits[0].payload["metadata"]
        assert (hits[0].url.split("#")[0], top["segment_index"]) == ("file:///w4.wav", 17)
        assert store.search(vectors[target], k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_the_default_models_metric_comes_from_its_query_bank_without_loading_it() -> None:
    from clasp_ingest.model.deferred import DeferredModel
    from clasp_ingest.model.query import query_sample
    from clasp_ingest.pipeline import query_metric_for

    mini = DeferredModel("clasp-mini")
    metric = query_metric_for(mini)
    assert metric is not None and metric.dim == mini.dim == 385
    assert "not loaded" in repr(mini)  # read from the weights file alone
    sample = query_sample("clasp-mini")
    assert sample is not None and sample.shape[1] == 385
    np.testing.assert_allclose(sample[:, -1], 1 / np.sqrt(5), rtol=1e-3)  # the bank coordinate of queries
    assert query_metric_for(DeferredModel("tiny-random")) is None  # no bank: a plain graph
    assert query_sample("clasp-official") is None  # hub weights: nothing is downloaded for it
