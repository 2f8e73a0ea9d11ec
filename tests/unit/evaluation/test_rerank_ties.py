"""``eval --rerank N`` applies the first stage's tie rule to the fused scores (t4, bug 2)."""

from __future__ import annotations

import numpy as np
import pytest
from clasp_ingest.retriever.rerank import Fusion

from clasp_ingest.evaluation.metrics import TIE_TOLERANCE, hits_at_1, ranks
from clasp_ingest.evaluation.rerank import rank_after_rerank


def _no_words(top: list[int]) -> np.ndarray:
    return np.full(len(top), np.nan)  # no clip has words: each keeps its CLASP score


def _first_stage(sim: np.ndarray, own: int) -> tuple[int, bool]:
    return int(ranks(sim[None], np.array([own]))[0]), hits_at_1(sim[None], np.array([own])) == 1.0


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("own", [0, 1])
def test_a_tie_at_the_top_is_rank_1_and_no_hit(own: int, n: int) -> None:
    sim = np.array([0.3, 0.3, 0.1])  # clips 0 and 1 tie (one audio file under two rows)
    assert rank_after_rerank(sim, own, n, _no_words, Fusion().fuse) == (1, False) == _first_stage(sim, own)


def test_a_clip_tied_with_the_n_th_is_reordered_with_the_top_n() -> None:
    sim = np.array([0.1, 0.25, 0.3, 0.25])  # clips 1 and 3 tie for the 2nd place
    for own in (1, 3):
        assert rank_after_rerank(sim, own, 2, _no_words, Fusion().fuse) == (2, False)
    seen: list[list[int]] = []

    def words(top: list[int]) -> np.ndarray:
        seen.append(top)
        return np.array([{2: 0.0, 1: 0.1, 3: 0.9}[c] for c in top])

    assert rank_after_rerank(sim, 3, 2, words, Fusion().fuse) == (1, True)  # its words lift it
    assert seen == [[2, 1, 3]]  # the cut is not made by clip index


def test_a_fused_tie_at_the_top_is_no_hit() -> None:
    sim = np.array([0.4, 0.2, 0.1])
    text = np.array([0.1, 0.1 + (0.4 - 0.2) * 0.3 / 0.7 + 1e-9, 0.0])  # fused 0 and 1 a hair apart
    rank, first = rank_after_rerank(sim, 1, 2, lambda top: text[top], Fusion().fuse)
    assert (rank, first) == (1, False)
    assert rank_after_rerank(sim, 0, 2, lambda top: text[top], Fusion().fuse) == (1, False)


def test_a_clip_outside_the_top_n_ranks_below_it() -> None:
    sim = np.array([0.5, 0.4, 0.1, 0.4 - 5e-6])
    assert rank_after_rerank(sim, 2, 2, _no_words, Fusion().fuse) == (4, False)
    assert rank_after_rerank(sim, 3, 2, lambda top: np.ones(len(top)), Fusion().fuse) == (3, False)


def _cases(seed: int, count: int) -> list[tuple[np.ndarray, int, int]]:
    """Random first-stage scores with exact ties (a grid of eighths) and near ties (±3e-7)."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        c = int(rng.integers(2, 10))
        sim = rng.integers(-3, 4, c) / 8.0 if rng.random() < 0.6 else rng.uniform(-1, 1, c)
        if rng.random() < 0.4:
            sim = sim + rng.uniform(-3e-7, 3e-7, c)
        cases.append((sim, int(rng.integers(c)), int(rng.integers(1, c + 1))))
    return cases


@pytest.mark.parametrize("weight", [0.7, 0.0], ids=["no-words", "weight-0"])
def test_a_second_stage_that_changes_nothing_gives_the_first_stage(weight: float) -> None:
    rng = np.random.default_rng(3)
    fuse = Fusion(text_weight=weight).fuse
    for sim, own, n in _cases(11, 2000):
        text = rng.uniform(-1, 1, len(sim))  # words that a text weight of 0 ignores
        words = _no_words if weight else (lambda top, t=text: t[top])
        assert rank_after_rerank(sim, own, n, words, fuse) == _first_stage(sim, own), (sim, own, n)


def test_reranked_ranks_follow_the_fused_scores_and_stay_below_the_top_n() -> None:
    rng = np.random.default_rng(4)
    fuse = Fusion().fuse
    for sim, _, n in _cases(12, 1000):
        text = rng.integers(-2, 3, len(sim)) / 4.0  # ties in the words too
        nth = np.sort(sim)[::-1][n - 1]
        top = np.flatnonzero(sim >= nth - TIE_TOLERANCE)
        fused = dict(zip(top.tolist(), fuse(sim[top], text[top]), strict=True))
        hits = 0
        for own in range(len(sim)):
            rank, first = rank_after_rerank(sim, own, n, lambda t, x=text: x[t], fuse)
            hits += first
            if own not in fused:
                assert rank > n and not first
                assert rank == _first_stage(sim, own)[0]
                continue
            assert rank == 1 + sum(f > fused[own] + TIE_TOLERANCE for f in fused.values())
            assert first == all(f < fused[own] - TIE_TOLERANCE for c, f in fused.items() if c != own)
        assert hits <= 1
