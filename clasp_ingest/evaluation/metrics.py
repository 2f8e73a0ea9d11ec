"""Retrieval metrics on a similarity matrix (pure numpy).

``sim[q, c]`` is the cosine similarity of query ``q`` (a text) and candidate ``c`` (an
audio clip); ``labels[q]`` is the column of the query's one true candidate (default: the
diagonal, ``labels = arange(n_queries)``). Definitions follow the CLASP paper's evaluation
notebook:

- **rank** of a query: ``1 + #{c : sim[q, c] > sim[q, labels[q]] + TIE_TOLERANCE}`` —
  candidates scoring strictly higher than the true one push it down; ties do not.
- **Hits@1**: fraction of queries whose true candidate scores *strictly* higher than every
  other candidate. (The notebook takes ``argmax == label`` with the true candidate placed
  last among the sampled candidates, so a tie counts as a miss; we use that rule for both
  protocols.)
- **Ties**: scores within :data:`TIE_TOLERANCE` of each other are equal. The same audio
  embedded at another batch position, or scored by another BLAS chunking, comes out a few
  1e-8 apart, and compared raw that noise decided ranks and hits.
- **MRR**: mean of ``1 / rank``. **Mean rank**: mean of ``rank``.
- **Paired Hits@1** (:func:`paired_hits`): two methods ranked on the same queries; the
  queries only one of them gets first, and the exact two-sided sign test (McNemar's exact
  test) of whether those discordant queries split evenly — how likely a Hits@1 gap this large
  is when neither method is better.
- **Macro-F1** at a cosine ``threshold``: every (query, candidate) pair is one binary
  decision, predicted positive when ``sim >= threshold`` and truly positive when the
  candidate is the query's own. Over all pairs of all queries pooled together, F1 is
  computed for the positive class and for the negative class (each ``2TP / (2TP + FP + FN)``
  with that class as "positive", 0 when undefined) and the two are averaged (a class that
  occurs neither in the truth nor in the predictions is left out) — scikit-learn's
  ``f1_score(labels, predictions, average="macro")`` on the flattened pairs, as in the
  notebook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "TIE_TOLERANCE",
    "Confusion",
    "PairedHits",
    "confusion",
    "hits_at_1",
    "macro_f1",
    "mean_rank",
    "mrr",
    "paired_hits",
    "ranks",
]


#: Scores this close are a tie: the store's ``SCORE_TOLERANCE`` (:mod:`clasp_ingest.store.base`),
#: how far float32 rounding moves a cosine. Kept here so the metrics stay pure numpy (importing
#: the store package loads its engines); a test pins the two equal.
TIE_TOLERANCE = 1e-6


def _checked(sim: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] == 0:
        raise ValueError(f"similarity matrix must be 2-D and non-empty, got shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix contains NaN or infinite values; check the embeddings")
    if labels is None:
        if sim.shape[1] < sim.shape[0]:
            raise ValueError(f"diagonal labels need at least as many candidates as queries, got {sim.shape}")
        labels = np.arange(sim.shape[0])
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (sim.shape[0],) or labels.min() < 0 or labels.max() >= sim.shape[1]:
        raise ValueError(f"labels must be {sim.shape[0]} column indices in [0, {sim.shape[1]})")
    return sim, labels


def _true_scores(sim: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return sim[np.arange(sim.shape[0]), labels]


def ranks(sim: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each query's true candidate (int64, shape (n_queries,))."""
    sim, labels = _checked(sim, labels)
    true = _true_scores(sim, labels)[:, None]
    return (sim - true > TIE_TOLERANCE).sum(axis=1).astype(np.int64) + 1


def hits_at_1(sim: np.ndarray, labels: np.ndarray | None = None) -> float:
    """Fraction of queries whose true candidate beats every other one by more than a tie."""
    sim, labels = _checked(sim, labels)
    true = _true_scores(sim, labels)[:, None]
    at_least = (true - sim <= TIE_TOLERANCE).sum(axis=1)  # includes the true candidate itself
    return float(np.mean(at_least == 1))


def mrr(sim: np.ndarray, labels: np.ndarray | None = None) -> float:
    """Mean reciprocal rank of the true candidates."""
    return float(np.mean(1.0 / ranks(sim, labels)))


def mean_rank(sim: np.ndarray, labels: np.ndarray | None = None) -> float:
    """Mean rank of the true candidates (1 is best)."""
    return float(np.mean(ranks(sim, labels)))


@dataclass(frozen=True)
class PairedHits:
    """Hits@1 of methods A and B on the same queries, compared query by query."""

    n: int
    a_only: int  # queries A ranks first and B does not
    b_only: int  # queries B ranks first and A does not
    p_value: float  # exact two-sided sign test on the a_only + b_only discordant queries

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "a_only": self.a_only, "b_only": self.b_only, "p": self.p_value}


def paired_hits(a_ranks: np.ndarray, b_ranks: np.ndarray) -> PairedHits:
    """Compare two methods' 1-based ranks of the same queries' true candidates (McNemar's exact
    test: under "neither is better" each discordant query is A's with probability 1/2)."""
    a = np.asarray(a_ranks).reshape(-1) == 1
    b = np.asarray(b_ranks).reshape(-1) == 1
    if a.shape != b.shape:
        raise ValueError(f"ranks of {a.size} and {b.size} queries: compare the same queries")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    n, low = a_only + b_only, min(a_only, b_only)
    tail = sum(math.comb(n, k) for k in range(low + 1)) / 2.0**n if n else 1.0
    return PairedHits(int(a.size), a_only, b_only, min(1.0, 2.0 * tail))


def confusion(sim: np.ndarray, threshold: float = 0.5, labels: np.ndarray | None = None) -> Confusion:
    """Counts of the pooled (query, candidate) decisions ``sim >= threshold`` vs "is the true one"."""
    sim, labels = _checked(sim, labels)
    predicted = sim >= threshold
    truth = np.zeros_like(predicted)
    truth[np.arange(sim.shape[0]), labels] = True
    return Confusion(
        tp=int(np.sum(predicted & truth)),
        fp=int(np.sum(predicted & ~truth)),
        fn=int(np.sum(~predicted & truth)),
        tn=int(np.sum(~predicted & ~truth)),
    )


def macro_f1(sim: np.ndarray, threshold: float = 0.5, labels: np.ndarray | None = None) -> float:
    """Macro-F1 of "``sim >= threshold`` means match" over all (query, candidate) pairs."""
    return confusion(sim, threshold, labels).macro_f1()


@dataclass(frozen=True)
class Confusion:
    """Pooled binary confusion counts; they add up over chunks of queries."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def macro_f1(self) -> float:
        """Mean F1 of the classes that occur (in the truth or the predictions)."""
        scores = [_f1(self.tp, self.fp, self.fn)]
        if self.tn + self.fp > 0 or self.tn + self.fn > 0:
            scores.append(_f1(self.tn, self.fn, self.fp))  # "no match" as the positive class
        return float(np.mean(scores))


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 0.0 if denominator == 0 else 2 * tp / denominator
