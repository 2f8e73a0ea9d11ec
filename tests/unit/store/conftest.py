"""Fixtures for the store tests: both real engines, and media items with numpy vectors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.store import EdgeOptions, QdrantStore, open_store
from clasp_ingest.types import MediaRef, Segment, media_id_for

DIM = 16
MODEL = "test-model"


@dataclass(frozen=True)
class Media:
    ref: MediaRef
    segments: list[Segment]
    vectors: np.ndarray

    def batches(self, size: int = 7) -> list[tuple[list[Segment], np.ndarray]]:
        return [
            (self.segments[i : i + size], self.vectors[i : i + size])
            for i in range(0, len(self.segments), size)
        ]


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_media(
    uri: str, fingerprint: str, n: int, *, seed: int, offset_s: float = 0.0, language: str | None = None
) -> Media:
    rng = np.random.default_rng(seed)
    media_id = media_id_for(uri)
    meta = {"language": language} if language else {}
    ref = MediaRef(uri, media_id, fingerprint, title=Path(uri).stem, metadata=meta)
    segments = [Segment(media_id, i, offset_s + 2.0 * i, offset_s + 2.0 * i + 1.5) for i in range(n)]
    return Media(ref, segments, unit_rows(rng, n))


def open_backend(kind: str, tmp_path: Path, **kwargs: object) -> QdrantStore:
    if kind == "edge":
        return open_store(path=tmp_path / "qdrant", **kwargs)  # type: ignore[arg-type]
    return open_store(url=":memory:", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["edge", "client"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QdrantStore]:
    with open_backend(request.param, tmp_path, edge=EdgeOptions(index_threshold=10_000)) as s:
        s.ensure_collection(MODEL, DIM)
        yield s


def write_items(store: QdrantStore, vectors: np.ndarray, per_media: int = 300, first: int = 0) -> None:
    """``vectors`` as media items ``file:///m{first + i}.wav`` of ``per_media`` spans each."""
    for i in range(len(vectors) // per_media):
        item = make_media(f"file:///m{first + i}.wav", "v1", per_media, seed=i)
        store.write_media(item.ref, MODEL, [(item.segments, vectors[i * per_media : (i + 1) * per_media])])


def rescored_recall(
    store: QdrantStore, vectors: np.ndarray, queries: np.ndarray, per_media: int = 300
) -> float:
    """Mean recall@10 of ``store``'s searches against exact numpy search over ``vectors`` (written
    by :func:`write_items`), asserting that every hit's score is its full vector's cosine."""
    recall = []
    for q in queries:
        hits = store.search(q, k=10)
        full = vectors @ q
        rows = [int(h.title[1:]) * per_media + h.payload["metadata"]["segment_index"] for h in hits]
        np.testing.assert_allclose([h.score for h in hits], full[rows], atol=1e-5)
        recall.append(len(set(rows) & set(np.argsort(-full)[:10].tolist())) / 10)
    return float(np.mean(recall))
