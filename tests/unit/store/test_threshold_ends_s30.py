"""``score_threshold`` at a cosine's ends: a span searched with its own vector scores 1.0 give or
take float32 rounding (Qdrant Edge 0.99999976 to 1.00000024, qdrant-client 0.99999994 to
1.0000001), so a threshold of 1.0 found 5 of 20 spans on Edge and 19 on qdrant-client."""

from __future__ import annotations

import numpy as np
import pytest

from clasp_ingest.store import QdrantStore
from tests.unit.store.conftest import MODEL, make_media

N = 20


@pytest.fixture
def spans(store: QdrantStore) -> np.ndarray:
    item = make_media("file:///talks/a.wav", "v1", N, seed=2)
    store.write_media(item.ref, MODEL, item.batches())
    return item.vectors


def test_each_span_is_found_at_the_threshold_of_its_own_vector(store: QdrantStore, spans: np.ndarray) -> None:
    for i, vector in enumerate(spans):
        (hit,) = store.search(vector, k=1, score_threshold=1.0)
        assert hit.payload["metadata"]["segment_index"] == i
        assert 1.0 - 1e-6 <= hit.score <= 1.0  # within a cosine's range (Edge scored up to 1.00000024)


def test_every_span_is_found_at_the_threshold_minus_one(store: QdrantStore, spans: np.ndarray) -> None:
    """The span opposite the query scores -1.0 give or take rounding: it is above -1.0."""
    for vector in spans:
        hits = store.search(-vector, k=N, score_threshold=-1.0)
        assert len(hits) == N and hits[-1].score >= -1.0


def test_groups_apply_the_threshold_alike(store: QdrantStore, spans: np.ndarray) -> None:
    found = [bool(store.search_groups(v, k=1, score_threshold=1.0)) for v in spans]
    assert all(found), found
