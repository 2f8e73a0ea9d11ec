"""A query-aware graph space for the embedded store's HNSW index.

Text queries sit far from the speech vectors they look for (the model's text-speech gap:
cosine ~0.27 to their nearest point, where a point's own nearest neighbour is at ~0.77), and
a graph built on the points' own geometry links points that no query tells apart: the walk
needs a very wide beam (ef 4096-6144) to find a query's top 10.

:class:`QueryMetric` builds the graph in another space instead, with the same ranking. With
``M = Q / (tr Q / d) + gamma·I`` (``Q``: the second moment of a sample of the model's query
vectors), a point ``x`` becomes ``[M^½ x / r, √(1 − |M^½ x|² / r²)]`` and a query ``q``
becomes ``[M^-½ q, 0]`` (then unit): their dot product is ``q · x / r`` (``r`` = √λmax(M)
bounds ``|M^½ x|`` for unit ``x``), so every query ranks the points exactly as before, while
the distance between two points is now how differently typical queries score them
(``(x − y)ᵀ M (x − y)``, as in query-aware graph indexes). The extra coordinate makes every
point unit-length, so the graph is an ordinary cosine graph.

Measured (2 cores, clasp-mini-like vectors and text queries, 2026-12-04; README *Search at
scale*): a prototype (its sample: the query side's vectors of 2,500 training-split captions
of the fillets and festvox sets) at 100k points in one segment reached recall@10 0.96 at ef 256
in 0.9 ms, where the plain graph needed ef 2048 (5.9 ms) for 0.95; ``gamma`` 0.3 gave 0.968, 3
gave 0.943 (1 is kept: a milder reweighting for queries unlike the sample); a metric from the
points' own second moment gave nothing (0.77, as the plain graph). In the store (``bench/bench_store.py``)
at 1M points: recall@10 0.98 at ef 512 and 0.993 at ef 1024 (13 ms), against 0.956 at ef 6144
(22 ms) for the plain graph.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clasp_ingest.errors import StoreError

__all__ = ["DEFAULT_GAMMA", "QueryMetric"]

#: Weight of the identity in ``M`` (the sample's second moment scaled to unit mean eigenvalue).
DEFAULT_GAMMA = 1.0

_VERSION = 1


@dataclass(frozen=True, eq=False)
class QueryMetric:
    """``M`` and what a store needs of it: ``root`` (M^½), ``inv_root`` (M^-½), ``radius``."""

    matrix: np.ndarray
    root: np.ndarray
    inv_root: np.ndarray
    radius: float

    @property
    def dim(self) -> int:
        """Width of the model vectors it maps (the graph vectors have one more coordinate)."""
        return int(self.matrix.shape[0])

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> QueryMetric:
        m = np.asarray(matrix, np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1] or not np.allclose(m, m.T, atol=1e-9):
            raise ValueError(f"a query metric needs a symmetric square matrix, got shape {m.shape}")
        values, vectors = np.linalg.eigh(m)
        if values.min() <= 0:
            raise ValueError("a query metric needs a positive definite matrix")
        root = (vectors * np.sqrt(values)) @ vectors.T
        inv_root = (vectors / np.sqrt(values)) @ vectors.T
        return cls(m, root, inv_root, float(np.sqrt(values.max())) * (1 + 1e-6))

    @classmethod
    def fit(cls, queries: np.ndarray, gamma: float = DEFAULT_GAMMA) -> QueryMetric:
        """From a sample of the model's query vectors (rows; the more, the better: thousands)."""
        q = np.asarray(queries, np.float64)
        if q.ndim != 2 or len(q) < 2 or gamma <= 0:
            raise ValueError(
                f"fit needs a 2-d sample of at least 2 queries and gamma > 0, got {q.shape}, {gamma}"
            )
        second = q.T @ q / len(q)
        second /= max(float(np.trace(second)) / q.shape[1], 1e-12)
        return cls.from_matrix(second + gamma * np.eye(q.shape[1]))

    def points(self, vectors: np.ndarray) -> np.ndarray:
        """Graph vectors of model vectors (rows, normalised first): unit rows, ``dim + 1`` wide."""
        x = np.asarray(vectors, np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        y = x @ self.root / self.radius  # root is symmetric
        rest = np.sqrt(np.clip(1.0 - np.einsum("ij,ij->i", y, y), 0.0, None))
        return np.concatenate([y, rest[:, None]], axis=1).astype(np.float32)

    def query(self, vector: np.ndarray) -> np.ndarray:
        """The graph-space query of one model query vector: unit, ``dim + 1`` wide."""
        y = np.asarray(vector, np.float64) @ self.inv_root
        out = np.append(y, 0.0)
        return (out / max(float(np.linalg.norm(out)), 1e-12)).astype(np.float32)

    def save(self, path: Path) -> None:
        np.savez(path, matrix=self.matrix, version=np.array(_VERSION))

    @classmethod
    def load(cls, path: Path) -> QueryMetric:
        """The metric :meth:`save` wrote; ``StoreError`` when the file is missing or damaged."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["version"]) != _VERSION:
                    raise ValueError(f"version {int(data['version'])}, this clasp-ingest reads {_VERSION}")
                return cls.from_matrix(data["matrix"])
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise StoreError(
                f"cannot read the query metric {str(path)!r} of an embedded collection: {exc}; "
                "re-ingest into a new collection (--recreate)"
            ) from exc
