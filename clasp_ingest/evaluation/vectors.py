"""Synthetic vector sets for store benchmarks and recall checks.

:func:`expand_vectors` grows a few thousand real embeddings into N points spread like them
(the store bench's and the recall test's "model-like" vectors); :func:`sphere_vectors` gives
the worst case, points uniform on the unit sphere (no structure for an HNSW graph to use).
"""

from __future__ import annotations

import numpy as np

__all__ = ["audio_windows", "expand_vectors", "sphere_vectors"]


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def audio_windows(clips: list[np.ndarray], count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` seeded windows of 1.5-8 s (or the whole clip when shorter) from random ``clips``
    (16 kHz): the span lengths ingestion cuts, for model-like audio vectors."""
    out = []
    for _ in range(count):
        clip = clips[int(rng.integers(len(clips)))]
        length = min(len(clip), int(rng.uniform(1.5, 8.0) * 16_000))
        start = int(rng.integers(0, len(clip) - length + 1))
        out.append(clip[start : start + length])
    return out


def sphere_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` unit float32 vectors uniform on the sphere in ``dim`` dimensions."""
    return _unit(np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32))


_BLOCK = 8192  # rows drawn per seeded block (every block drawn whole, then cut)


def expand_vectors(
    base: np.ndarray, n: int, *, seed: int = 0, mix: float = 0.5, noise: float = 0.5
) -> np.ndarray:
    """``n`` unit vectors spread like the unit rows of ``base``.

    Each is a random row of ``base`` mixed with a second random row (weight uniform in
    ``[0, mix)``), plus isotropic Gaussian noise of expected norm ``noise`` (relative to the unit
    rows), renormalised: new points lie between and around real ones, so the set keeps the
    real embeddings' directions, anisotropy and clusters while no two points are equal.
    Deterministic for a ``seed``; the first rows do not depend on ``n``.
    """
    if base.ndim != 2 or len(base) < 2:
        raise ValueError(f"base must be a (rows >= 2, dim) array, got shape {base.shape}")
    if n < 0 or not 0.0 <= mix <= 1.0 or noise < 0.0:
        raise ValueError(f"invalid expand_vectors arguments: n={n}, mix={mix}, noise={noise}")
    rows = _unit(np.asarray(base, dtype=np.float32))
    dim = rows.shape[1]
    parts = []
    for block, start in enumerate(range(0, n, _BLOCK)):
        rng = np.random.default_rng([seed, block])
        first, second = rng.integers(0, len(rows), _BLOCK), rng.integers(0, len(rows), _BLOCK)
        weight = rng.uniform(0.0, mix, (_BLOCK, 1)).astype(np.float32)
        x = (1 - weight) * rows[first] + weight * rows[second]
        x += (noise / np.sqrt(dim)) * rng.standard_normal((_BLOCK, dim), dtype=np.float32)
        parts.append(_unit(x[: n - start]))
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
