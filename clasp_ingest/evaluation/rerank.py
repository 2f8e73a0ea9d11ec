"""``eval --rerank N``: the eval protocol with a second stage over each query's top N clips.

The first stage ranks every candidate clip by the model's cosine (as :func:`evaluate` does);
each query's best ``N`` clips are then reordered by the retriever's fused score
(:class:`clasp_ingest.retriever.rerank.Fusion` of the CLASP cosine and the text score of the
clip's Whisper transcript, :class:`~clasp_ingest.retriever.rerank.TextScorer`). A query whose
clip is outside its top ``N`` keeps its first-stage rank (which is then > ``N``). Each clip is
transcribed at most once per run (an in-memory cache), only when some query's top ``N``
holds it; ``transcribed`` counts those clips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

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
) -> np.ndarray:
    """The rank of each query's own clip (query ``i`` ↔ clip ``i``) after the second stage."""
    out = np.empty(len(queries), dtype=np.int64)
    for i, query in enumerate(queries):

        def scores(top: list[int], query: str = query) -> np.ndarray:
            return stage.score_texts(query, words.texts(top))

        out[i] = rank_after_rerank(audio @ text[i], i, stage.n, scores, stage.fuse)
    return out


def rank_after_rerank(
    sim: np.ndarray,
    own: int,
    n: int,
    text_scores: Callable[[list[int]], np.ndarray],
    fuse: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> int:
    """The 1-based rank of candidate ``own`` when the best ``n`` of first-stage scores ``sim`` are
    reordered by ``fuse(clasp, text)`` (``text_scores(top)``: NaN = no words, which keeps the
    CLASP score); outside the top ``n`` its first-stage rank."""
    top = np.argsort(-sim, kind="stable")[:n]
    if own not in top:
        return 1 + int(np.sum(sim > sim[own]))
    found = np.asarray(text_scores([int(c) for c in top]), dtype=np.float64)
    fused = fuse(sim[top], np.where(np.isnan(found), sim[top], found))
    order = top[np.argsort(-fused, kind="stable")]
    return 1 + int(np.flatnonzero(order == own)[0])
