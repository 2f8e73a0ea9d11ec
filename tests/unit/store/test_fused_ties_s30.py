"""Hybrid search's fused ties on both engines: spans whose RRF terms differ but sum to the same
score (1/4 + 1/4 + 1/5 and 1/5 + 1/6 + 1/3) came back a rounding apart, so Qdrant Edge and its
qdrant-client export ordered them oppositely instead of by the ``clasp`` cosine."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clasp_ingest.store import export_collection, open_store
from clasp_ingest.store.base import HybridQuery, StoredPoint, fused_order
from clasp_ingest.words import SpanWords, query_words, sparse_words
from tests.unit.store.conftest import DIM, MODEL, make_media, unit_rows

TEXT_DIM = 8
WORDS = ["cat", "dog", "bird", "telescope", "galaxy", "flour", "train", "river"]


def test_scores_a_rounding_apart_are_a_tie_ordered_by_the_clasp_cosine() -> None:
    query = [1.0, 0.0]
    near, far = (
        StoredPoint("b", {}, [0.9, 0.1], score=0.69999999),
        StoredPoint("a", {}, [0.1, 0.9], score=0.70000001),
    )
    first = StoredPoint("c", {}, [0.0, 1.0], score=0.8)
    ordered = fused_order([far, first, near], query)
    assert [p.id for p in ordered] == ["c", "b", "a"]
    assert [p.score for p in ordered] == [0.8, 0.70000001, 0.70000001]  # a later sort keeps it


def test_edge_and_its_export_order_hybrid_ties_alike(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    with open_store(path=tmp_path / "qdrant") as edge:
        edge.ensure_collection(MODEL, DIM, text_dim=TEXT_DIM)
        for i in range(4):
            item = make_media(f"file:///talks/t{i}.wav", "v1", 6, seed=i)
            # a filler word of its own, i + 1 times: no two spans tie in the words ranking
            texts = [" ".join([*rng.choice(WORDS, 2), *[f"u{i}x{j}"] * (6 * i + j + 1)]) for j in range(6)]
            dense = unit_rows(rng, len(texts), TEXT_DIM)
            words = [
                SpanWords(t, "en", "fw:test", tuple(map(float, v)), sparse_words(t))
                for t, v in zip(texts, dense, strict=True)
            ]
            edge.write_media(item.ref, MODEL, [(item.segments, item.vectors, words)])
        with open_store(url=":memory:") as export:
            export_collection(edge, export)
            for _ in range(300):  # 3 of them tie a rounding apart on Edge
                text = " ".join(rng.choice(WORDS, 2))
                query = HybridQuery(
                    unit_rows(rng, 1)[0].tolist(), unit_rows(rng, 1, TEXT_DIM)[0].tolist(), query_words(text)
                )
                ours = [(h.point_id, round(h.score, 5)) for h in edge.search_hybrid(query, k=24)]
                theirs = [(h.point_id, round(h.score, 5)) for h in export.search_hybrid(query, k=24)]
                assert ours == theirs, text
