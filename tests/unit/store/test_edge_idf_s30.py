"""Hybrid search on an embedded store after deletes and re-ingests: the ``words`` ranking's IDF
counts the points that are there, as the store's export does, in a new process and in the one
that deleted them (Qdrant Edge 0.9 counts deleted points until it opens the shard again, so the
first search with words after a delete reopens it: README, *Hybrid search*)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.store import QdrantStore, export_collection, open_store
from clasp_ingest.store.base import HybridQuery
from clasp_ingest.words import SpanWords, query_words, sparse_words
from tests.unit.store.conftest import DIM, MODEL, make_media, unit_rows

TEXT_DIM = 8
#: Distinct lengths and words: no two spans tie in any ranking of the query below.
LIVE = ["telescope", "cat", "a cat sleeping on the mat", "dog", "the dog barks at night"]
QUERY = "telescope cat"


def write_item(store: QdrantStore, name: str, text: str, fingerprint: str = "v1", seed: int = 0) -> str:
    media = make_media(f"file:///talks/{name}.wav", fingerprint, 1, seed=seed)
    dense = unit_rows(np.random.default_rng(seed + 100), 1, TEXT_DIM)[0]
    words = [SpanWords(text, "en", "fw:test", tuple(float(x) for x in dense), sparse_words(text))]
    store.write_media(media.ref, MODEL, [(media.segments, media.vectors, words)])
    return media.ref.media_id


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[QdrantStore]:
    with open_store(path=tmp_path / "qdrant") as store:
        store.ensure_collection(MODEL, DIM, text_dim=TEXT_DIM)
        for i, text in enumerate(LIVE):
            write_item(store, f"live{i}", text, seed=i)
        yield store


def _hits(store: QdrantStore) -> list[tuple[str | None, float]]:
    rng = np.random.default_rng(5)
    clasp, text = unit_rows(rng, 1)[0].tolist(), unit_rows(rng, 1, TEXT_DIM)[0].tolist()
    # unequal weights: no two spans tie in the fused list (swapped ranks score apart)
    query = HybridQuery(clasp, text, query_words(QUERY), weights=(1.0, 0.5, 2.0))
    return [(h.point_id, round(h.score, 5)) for h in store.search_hybrid(query, k=len(LIVE))]


def _deleted(store: QdrantStore) -> None:
    for i in range(6):  # items that said the query's rare word, gone again
        store.delete_media(write_item(store, f"gone{i}", "telescope", seed=10 + i))


def _replaced(store: QdrantStore) -> None:
    for i in range(6):  # items whose new version (a re-ingest) says other words
        write_item(store, f"changed{i}", "telescope", seed=10 + i)
        write_item(store, f"changed{i}", "the weather today", fingerprint="v2", seed=10 + i)


@pytest.mark.parametrize("change", [_deleted, _replaced], ids=["delete_media", "re-ingest"])
def test_hybrid_search_of_a_reopened_store_after_deletes_ranks_as_the_export_does(
    edge: QdrantStore, change: Callable[[QdrantStore], None], tmp_path: Path
) -> None:
    change(edge)
    with open_store(url=":memory:") as export:
        export_collection(edge, export)
        expected, count = _hits(export), export.count()
    edge.close()
    with open_store(path=tmp_path / "qdrant") as reopened:
        assert _hits(reopened) == expected
        assert reopened.count() == count


@pytest.mark.parametrize("change", [_deleted, _replaced], ids=["delete_media", "re-ingest"])
def test_hybrid_search_of_the_open_store_after_deletes_ranks_as_the_export_does(
    edge: QdrantStore, change: Callable[[QdrantStore], None]
) -> None:
    # the same process, the store not closed: its first search with words after the deletes
    # opens the shard again (the engine counted the deleted points' words until then)
    before = _hits(edge)
    change(edge)
    with open_store(url=":memory:") as export:
        export_collection(edge, export)
        expected = _hits(export)
    assert _hits(edge) == expected
    if change is _deleted:  # the live points are the ones there before
        assert expected == before
    write_item(edge, "late", "a dog at night", seed=40)  # added after (no tie with a live span)
    with open_store(url=":memory:") as export:
        export_collection(edge, export)
        assert _hits(edge) == _hits(export)
