"""Synthetic vector sets for the store bench and the recall test."""

from __future__ import annotations

import numpy as np
import pytest

from clasp_ingest.evaluation.vectors import expand_vectors, sphere_vectors


def test_expanded_vectors_are_unit_seeded_and_stay_near_their_base() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    x = expand_vectors(base, 1000, seed=3)
    assert x.shape == (1000, 32) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(x[:400], expand_vectors(base, 400, seed=3))
    assert not np.array_equal(x, expand_vectors(base, 1000, seed=4))
    nearest = (x @ base.T).max(axis=1)
    assert nearest.mean() > 0.7 and len(np.unique(x, axis=0)) == 1000  # near a base row, no duplicates
    copies = expand_vectors(base, 20, seed=0, mix=0.0, noise=0.0)  # no mixing, no noise: base rows
    assert np.allclose((copies @ base.T).max(axis=1), 1.0, atol=1e-5)


def test_bad_arguments_and_sphere_vectors() -> None:
    with pytest.raises(ValueError, match="base must be"):
        expand_vectors(np.zeros((1, 4)), 3)
    with pytest.raises(ValueError, match="invalid"):
        expand_vectors(np.ones((3, 4)), 3, mix=2.0)
    s = sphere_vectors(500, 16, seed=1)
    assert np.allclose(np.linalg.norm(s, axis=1), 1.0, atol=1e-5) and abs(float(s.mean())) < 0.05
