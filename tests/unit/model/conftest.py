"""Fixtures of the model tests: one tiny-random model per session, synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest

from clasp_ingest.model import ClaspModel, load_model

SR = 16_000


@pytest.fixture(scope="session")
def tiny() -> ClaspModel:
    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def clips() -> list[np.ndarray]:
    """Four clips of different lengths and content (noise, tones, a chirp, a very short one)."""
    rng = np.random.default_rng(7)
    t = np.arange(2 * SR) / SR
    chirp = np.sin(2 * np.pi * (200 + 900 * t) * t)
    return [
        (0.1 * rng.standard_normal(SR)).astype(np.float32),
        (0.5 * np.sin(2 * np.pi * 440 * t[: int(1.5 * SR)])).astype(np.float32),
        (0.3 * chirp).astype(np.float32),
        (0.2 * rng.standard_normal(300)).astype(np.float32),
    ]
