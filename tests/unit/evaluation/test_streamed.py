from __future__ import annotations

import numpy as np
import pytest

from clasp_ingest.evaluation.evaluate import retrieval_metrics, sample_candidates, streamed_metrics
from clasp_ingest.evaluation.metrics import Confusion, confusion


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_chunked_metrics_equal_whole_matrix(chunk: int) -> None:
    rng = np.random.default_rng(0)
    text = _unit(rng.standard_normal((50, 8)))
    audio = _unit(text + 0.8 * rng.standard_normal((50, 8)))
    whole = retrieval_metrics(text @ audio.T, None, 0.5)
    assert streamed_metrics(text, audio, None, 0.5, chunk=chunk) == pytest.approx(whole)
    columns = sample_candidates(50, 10, seed=2)
    picked = np.take_along_axis(text @ audio.T, columns, axis=1)
    sampled = retrieval_metrics(picked, np.full(50, 9), 0.5)
    assert streamed_metrics(text, audio, columns, 0.5, chunk=chunk) == pytest.approx(sampled)


def test_confusion_counts_add_up_over_chunks() -> None:
    sim = np.array([[0.9, 0.2, 0.1], [0.6, 0.5, 0.4], [0.3, 0.8, 0.7]])
    assert confusion(sim, 0.5) == Confusion(tp=3, fp=2, fn=0, tn=4)
    top = confusion(sim[:1], 0.5, np.array([0]))
    rest = confusion(sim[1:], 0.5, np.array([1, 2]))
    assert top + rest == confusion(sim, 0.5)
    assert (top + rest).macro_f1() == pytest.approx((0.75 + 0.8) / 2)
