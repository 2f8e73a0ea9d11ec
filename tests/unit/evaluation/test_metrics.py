from __future__ import annotations

import numpy as np
import pytest

from clasp_ingest.evaluation.metrics import hits_at_1, macro_f1, mean_rank, mrr, paired_hits, ranks

# Rows are text queries, columns audio candidates; the true candidate is on the diagonal.
SIM = np.array(
    [
        [0.9, 0.2, 0.1],  # true 0.9 is the best: rank 1
        [0.6, 0.5, 0.4],  # 0.6 beats the true 0.5: rank 2
        [0.3, 0.8, 0.7],  # 0.8 beats the true 0.7: rank 2
    ]
)


def test_ranks_hits_mrr_mean_rank_by_hand() -> None:
    assert ranks(SIM).tolist() == [1, 2, 2]
    assert hits_at_1(SIM) == pytest.approx(1 / 3)
    assert mrr(SIM) == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert mean_rank(SIM) == pytest.approx(5 / 3)


def test_macro_f1_by_hand() -> None:
    # sim >= 0.5 predicted positive: (0,0) (1,0) (1,1) (2,1) (2,2).
    # positive class: TP 3 (diagonal), FP 2 ((1,0), (2,1)), FN 0 -> F1 = 6 / 8
    # negative class: TP 4 ((0,1) (0,2) (1,2) (2,0)), FP 0, FN 2 -> F1 = 8 / 10
    assert macro_f1(SIM, threshold=0.5) == pytest.approx((0.75 + 0.8) / 2)
    # at 0.95 nothing is predicted positive: F1(pos) = 0, F1(neg) = 2*6 / (2*6 + 3) = 0.8
    assert macro_f1(SIM, threshold=0.95) == pytest.approx(0.4)


def test_threshold_is_inclusive() -> None:
    sim = np.array([[0.5, 0.49], [0.2, 0.5]])
    # exactly 0.5 counts as a match: perfect decisions on both classes
    assert macro_f1(sim, threshold=0.5) == pytest.approx(1.0)


def test_ties_count_as_misses_for_hits_but_not_for_rank() -> None:
    sim = np.array([[0.5, 0.5], [0.1, 0.2]])
    assert hits_at_1(sim) == 0.5
    assert ranks(sim).tolist() == [1, 1]
    assert mrr(sim) == 1.0


def test_explicit_labels_sampled_candidates() -> None:
    # the sampled-candidates protocol: the true candidate is the last column
    sim = np.array([[0.1, 0.3, 0.2], [0.4, 0.1, 0.9], [0.8, 0.7, 0.6]])
    labels = np.array([2, 2, 2])
    assert ranks(sim, labels).tolist() == [2, 1, 3]
    assert hits_at_1(sim, labels) == pytest.approx(1 / 3)
    assert mrr(sim, labels) == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    assert mean_rank(sim, labels) == pytest.approx(2.0)


def test_perfect_and_worst_retrieval() -> None:
    eye = np.eye(5)
    assert (hits_at_1(eye), mrr(eye), mean_rank(eye), macro_f1(eye)) == (1.0, 1.0, 1.0, 1.0)
    anti = 1 - eye
    assert hits_at_1(anti) == 0.0
    assert mean_rank(anti) == 5.0


def test_macro_f1_agrees_with_scikit_learn_on_random_matrices() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n, m in [(7, 7), (5, 20), (30, 30)]:
        sim = rng.uniform(-1, 1, size=(n, m))
        labels = rng.integers(0, m, size=n)
        truth = np.zeros((n, m), dtype=int)
        truth[np.arange(n), labels] = 1
        for threshold in (-0.5, 0.0, 0.4, 0.9):
            expected = metrics.f1_score(
                truth.ravel(), (sim >= threshold).astype(int).ravel(), average="macro", zero_division=0
            )
            assert macro_f1(sim, threshold, labels) == pytest.approx(expected)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        hits_at_1(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="2-D"):
        mrr(np.zeros(3))
    with pytest.raises(ValueError, match="labels"):
        ranks(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="diagonal"):
        ranks(np.zeros((3, 2)))


def test_paired_hits_counts_discordant_queries_and_gives_the_exact_sign_test() -> None:
    # 12 queries: both first on 2, A alone on 9, B alone on 1, neither on 0
    a = np.array([1, 1] + [1] * 9 + [3])
    b = np.array([1, 1] + [2] * 9 + [1])
    result = paired_hits(a, b)
    assert (result.n, result.a_only, result.b_only) == (12, 9, 1)
    # P(X <= 1 | n=10, 1/2) = 11/1024, two-sided
    assert result.p_value == pytest.approx(22 / 1024)
    assert paired_hits(b, a).p_value == pytest.approx(result.p_value)
    even = paired_hits(np.array([1, 2, 1, 2]), np.array([2, 1, 2, 1]))
    assert (even.a_only, even.b_only, even.p_value) == (2, 2, 1.0)
    same = paired_hits(np.array([1, 5]), np.array([1, 7]))
    assert (same.a_only, same.b_only, same.p_value) == (0, 0, 1.0)
    assert result.to_dict() == {"n": 12, "a_only": 9, "b_only": 1, "p": pytest.approx(22 / 1024)}
    with pytest.raises(ValueError, match="same queries"):
        paired_hits(np.array([1, 2]), np.array([1]))


def test_scores_within_the_tolerance_are_ties() -> None:
    # the same audio embedded at two batch positions: cosines a few 1e-8 apart (t4, bug 1)
    sim = np.array([[0.5, 0.5 + 3e-8, 0.1], [0.5 + 3e-8, 0.5, 0.1], [0.2, 0.3, 0.3 + 5e-7]])
    assert ranks(sim).tolist() == [1, 1, 1]
    assert hits_at_1(sim) == 0.0  # ties miss, whichever way the noise ran
    apart = np.array([[0.5, 0.5 - 2e-6], [0.5 + 2e-6, 0.5]])  # beyond the tolerance: real order
    assert ranks(apart).tolist() == [1, 2]
    assert hits_at_1(apart) == 0.5


def test_tie_tolerance_is_the_stores() -> None:
    from clasp_ingest.evaluation.metrics import TIE_TOLERANCE
    from clasp_ingest.store.base import SCORE_TOLERANCE

    assert TIE_TOLERANCE == SCORE_TOLERANCE


def test_scores_without_near_ties_rank_as_the_raw_comparisons_did() -> None:
    # a split with one row per clip keeps the numbers it had before the tolerance (HEAD's formulas)
    rng = np.random.default_rng(7)
    for n, m in [(9, 9), (40, 40), (12, 30)]:
        sim = rng.uniform(-1, 1, size=(n, m))
        labels = None if n == m else rng.integers(0, m, size=n)
        true = sim[np.arange(n), np.arange(n) if labels is None else labels][:, None]
        assert np.abs(sim - true)[np.abs(sim - true) > 0].min() > 1e-6  # no near-ties drawn
        assert ranks(sim, labels).tolist() == ((sim > true).sum(axis=1) + 1).tolist()
        assert hits_at_1(sim, labels) == float(np.mean((sim >= true).sum(axis=1) == 1))
