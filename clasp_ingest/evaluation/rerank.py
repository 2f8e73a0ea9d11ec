"""``eval --rerank N``: the eval protocol with a second stage over each query's top N clips.

The first stage ranks every candidate clip by the model's cosine (as :func:`evaluate` does);
each query's best ``N`` clips are then reordered by the retriever's fused score
(:class:`clasp_ingest.retriever.rerank.Fusion` of the CLASP cosine and the text score of the
clip's Whisper transcript, :class:`~clasp_ingest.retriever.rerank.TextScorer`). Ties follow
the first stage's rule (:mod:`clasp_ingest.evaluation.metrics`): scores within
:data:`~clasp_ingest.evaluation.metrics.TIE_TOLERANCE` are equal, a rank counts only the
clips scoring higher beyond it, and a query is a hit only when its clip is first alone. The
top ``N`` takes in every clip that ties the ``N``-th, so the cut is never made by float noise
or clip index; a query whose clip is outside it keeps its first-stage rank, which is then
> ``N``. Each clip is transcribed at most once per run (an in-memory cache), only when some
query's top ``N`` holds it; ``transcribed`` counts those clips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from clasp_ingest.evaluation.metrics import TIE_TOLERANCE
from clasp_ingest.log import get_logger
from clasp_ingest.transcribe import Transcriber

__all__ = ["ClipWords", "SecondStage", "rank_after_rerank", "reranked_ranks"]

log = get_logger("evaluation.rerank")


@dataclass(frozen=True)
class SecondStage:
    """What ``eval --rerank`` needs: ``n`` clips per query, a transcriber, a text scorer
    (query, texts → cosines, NaN for no words) and a fusion (CLASP, text → fused)."""

    n: int
    transcriber: Transcriber
    score_texts: Callable[[str, Sequence[str]], np.ndarray]
    fuse: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"rerank={self.n} must be >= 1 (clips reranked per query)")


@dataclass
class ClipWords:
    """The words of clips by index, transcribed on first need and kept for the run."""

    transcriber: Transcriber
    load: Callable[[int], np.ndarray]
    _cache: dict[int, str] = field(default_factory=dict)

    @property
    def transcribed(self) -> int:
        return len(self._cache)

    def texts(self, indices: Sequence[int]) -> list[str]:
        for i in indices:
            if i not in self._cache:
                self._cache[i] = self.transcriber.transcribe(self.load(i)).text
        return [self._cache[i] for i in indices]


def reranked_ranks(
    text: np.ndarray,
    audio: np.ndarray,
    queries: Sequence[str],
    words: ClipWords,
    stage: SecondStage,
    own: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's rank of its own clip after the second stage, and whether that clip is first
    alone (a Hits@1). Query ``i``'s clip is ``own[i]`` (default ``i``: one query per clip)."""
    ranked = np.empty(len(queries), dtype=np.int64)
    first = np.empty(len(queries), dtype=bool)
    for i, query in enumerate(queries):

        def scores(top: list[int], query: str = query) -> np.ndarray:
            return stage.score_texts(query, words.texts(top))

        clip = i if own is None else int(own[i])
        ranked[i], first[i] = rank_after_rerank(audio @ text[i], clip, stage.n, scores, stage.fuse)
    return ranked, first


def rank_after_rerank(
    sim: np.ndarray,
    own: int,
    n: int,
    text_scores: Callable[[list[int]], np.ndarray],
    fuse: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[int, bool]:
    """The 1-based rank of candidate ``own`` when the best ``n`` of first-stage scores ``sim`` are
    reordered by ``fuse(clasp, text)`` (``text_scores(top)``: NaN = no words, which keeps the
    CLASP score), and whether it is first alone (a Hits@1).

    The first stage's tie rule on the fused scores: the rank is 1 + the number of reordered
    clips whose fused score is higher beyond :data:`TIE_TOLERANCE`, and a hit needs every other
    one lower beyond it. The reordered clips are the best ``n`` plus every clip that ties the
    ``n``-th, so a clip left out scores below the best ``n`` beyond the tolerance and keeps its
    first-stage rank, which is then > ``n``. A second stage that changes nothing thus gives the
    first stage's ranks and hits.
    """
    top = _top(sim, n)
    if own not in top:
        return 1 + int(np.sum(sim - sim[own] > TIE_TOLERANCE)), False
    found = np.asarray(text_scores([int(c) for c in top]), dtype=np.float64)
    fused = fuse(sim[top], np.where(np.isnan(found), sim[top], found))
    mine = fused[int(np.flatnonzero(top == own)[0])]
    return 1 + int(np.sum(fused - mine > TIE_TOLERANCE)), int(np.sum(mine - fused <= TIE_TOLERANCE)) == 1


def _top(sim: np.ndarray, n: int) -> np.ndarray:
    """The indices of the best ``n`` scores and of any that tie the ``n``-th, best first."""
    order = np.argsort(-sim, kind="stable")
    nth = sim[order[min(n, len(order)) - 1]]
    return order[sim[order] >= nth - TIE_TOLERANCE]
