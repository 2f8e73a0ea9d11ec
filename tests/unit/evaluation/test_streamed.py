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


@pytest.mark.parametrize("chunk", [1, 2, 3, 1024])
def test_a_duplicated_audio_vector_ties_at_every_chunking(chunk: int) -> None:
    # t4's dup_clip_noise.py: clips 3 and 5 one vector; BLAS chunking moved their cosines apart
    rng = np.random.default_rng(5)
    text, audio = _unit(rng.normal(size=(7, 384))), rng.normal(size=(7, 384))
    audio[3] = audio[5]
    audio = _unit(audio)
    got = streamed_metrics(text, audio, None, 0.5, chunk=chunk)
    assert got == streamed_metrics(text, audio, None, 0.5, chunk=7)
    assert got["hits@1"] == pytest.approx(1 / 7)  # query 2; query 3 ties its clip's copy: a miss


def test_one_row_per_clip_keeps_the_draws_and_numbers() -> None:
    rng = np.random.default_rng(3)
    text = _unit(rng.standard_normal((30, 16)))
    audio = _unit(text + 0.9 * rng.standard_normal((30, 16)))
    own = np.arange(30)
    assert (sample_candidates(30, 6, seed=4, own=own) == _head_sample_candidates(30, 6, seed=4)).all()
    columns = sample_candidates(30, 6, seed=4)
    for cols in (None, columns):
        assert streamed_metrics(text, audio, cols, 0.5, own=own) == streamed_metrics(text, audio, cols, 0.5)
    sim = text @ audio.T
    true = np.diag(sim)[:, None]
    raw_ranks = (sim > true).sum(axis=1) + 1
    assert streamed_metrics(text, audio, None, 0.5, own=own) == {
        "hits@1": float(np.mean((sim >= true).sum(axis=1) == 1)),
        "mrr": float(np.mean(1.0 / raw_ranks)),
        "mean_rank": float(np.mean(raw_ranks)),
        "macro_f1": confusion(sim, 0.5).macro_f1(),
    }


def _head_sample_candidates(n: int, size: int, seed: int) -> np.ndarray:
    """``sample_candidates`` as it was before rows could share a clip."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size), dtype=np.int64)
    for i in range(n):
        others = rng.choice(n - 1, size=size - 1, replace=False)
        out[i, :-1] = others + (others >= i)
        out[i, -1] = i
    return out


def test_sampled_candidates_of_shared_clips_skip_the_query_s_own_clip() -> None:
    own = np.array([0, 1, 0, 2, 1, 3])  # 6 queries, 4 clips
    columns = sample_candidates(4, 3, seed=1, own=own)
    assert columns.shape == (6, 3) and (columns[:, -1] == own).all()
    for clip, row in zip(own, columns, strict=True):
        assert len(set(row.tolist())) == 3 and clip not in row[:-1] and row.max() < 4
