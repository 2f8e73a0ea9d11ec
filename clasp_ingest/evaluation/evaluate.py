"""Text → audio retrieval evaluation with the CLASP paper's two protocols.

Every manifest row of the chosen split is one query (its text) and one candidate (its
audio). Each query's true candidate is its own clip.

- ``candidates="all"`` (the paper's "hard" evaluation): every query is ranked against
  every clip of the split.
- ``candidates=N`` (the paper's "soft" evaluation, N = 100 there): every query is ranked
  against its own clip plus ``N - 1`` distractors drawn uniformly without replacement from
  the other clips (numpy ``default_rng(seed)``, one draw per query in manifest order). As in
  the notebook the true clip is placed last, so a tie counts against it for Hits@1.

Scores are cosine similarities of L2-normalised embeddings. Metric definitions:
:mod:`clasp_ingest.evaluation.metrics`; Macro-F1 uses the cosine ``threshold`` (default 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_ingest.errors import ConfigError
from clasp_ingest.evaluation.metrics import Confusion, confusion, hits_at_1, macro_f1, mean_rank, mrr, ranks
from clasp_ingest.log import get_logger
from clasp_ingest.training.features import FeatureCache, ProgressFn, compute_features, load_waveform
from clasp_ingest.training.manifest import ManifestRow, read_manifest, select_split

if TYPE_CHECKING:
    from clasp_ingest.evaluation.rerank import SecondStage

__all__ = ["RESULT_KEYS", "evaluate", "retrieval_metrics", "sample_candidates", "streamed_metrics"]

log = get_logger("evaluation")

#: The keys of :func:`evaluate`'s result, in order.
RESULT_KEYS = ("hits@1", "mrr", "mean_rank", "macro_f1", "threshold", "n_queries", "candidates")


def evaluate(
    model: Any,
    manifest: Path | str,
    candidates: str | int = "all",
    threshold: float = 0.5,
    seed: int = 0,
    split: str = "test",
    *,
    cache_dir: Path | None = None,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
    distractors: Path | str | None = None,
    distractor_split: str | None = None,
    rerank: SecondStage | None = None,
) -> dict[str, Any]:
    """Retrieval metrics of ``model`` (any ``AudioTextEncoder``) on a manifest split.

    A ``ClaspModel`` is run as backbones → (cached, when ``cache_dir`` is given) features →
    fusion; any other ``AudioTextEncoder`` through ``encode_audio``/``encode_text``.

    ``distractors``: another manifest whose clips (its ``distractor_split``, default
    ``split``; clips that are also in ``manifest`` left out) join every query's candidates
    but ask no queries. With speech in several languages it measures what a mixed-language
    collection does to cross-lingual queries (a query in German against English speech then
    also competes with German speech). Needs ``candidates="all"``; the result gains
    ``"distractors"``, their number.

    ``rerank``: a second stage over each query's best ``rerank.n`` clips
    (:mod:`clasp_ingest.evaluation.rerank`); needs ``candidates="all"``. Hits@1, MRR and mean
    rank are then the reranked ones (Macro-F1 stays the first stage's: it thresholds cosines),
    and the result gains ``"rerank"`` (N) and ``"transcribed"`` (clips transcribed).
    """
    if not -1.0 <= threshold <= 1.0:  # also NaN
        raise ConfigError(f"threshold {threshold} is not a cosine; give one in [-1, 1] (--threshold)")
    rows = select_split(read_manifest(manifest), split)
    n_candidates = _check_candidates(candidates, len(rows))
    extra: list[ManifestRow] = []
    if rerank is not None and n_candidates is not None:
        raise ConfigError("rerank needs candidates='all' (the first stage ranks every clip)")
    if distractors is not None:
        if n_candidates is not None:
            raise ConfigError("distractors need candidates='all' (every clip is a candidate)")
        own = {row.audio for row in rows}
        extra = [
            row
            for row in select_split(read_manifest(distractors), distractor_split or split)
            if row.audio not in own
        ]
    text, audio = _embeddings(model, rows + extra, cache_dir, batch_size, progress)
    text = text[: len(rows)]  # the distractors' captions ask nothing
    columns = None if n_candidates is None else sample_candidates(len(rows), n_candidates, seed)
    scores = streamed_metrics(text, audio, columns, threshold)
    second: dict[str, Any] = {}
    if rerank is not None:
        second = _second_stage(text, audio, rows, rows + extra, rerank)
        scores = {**scores, **second.pop("scores")}
    log.info("evaluated %d queries (%s candidates): %s", len(rows), candidates, scores)
    result = {**scores, "threshold": threshold, "n_queries": len(rows), "candidates": n_candidates or "all"}
    if distractors is not None:
        result["distractors"] = len(extra)
    return {**result, **second}


def _second_stage(
    text: np.ndarray,
    audio: np.ndarray,
    rows: Sequence[ManifestRow],
    clips: Sequence[ManifestRow],
    stage: SecondStage,
) -> dict[str, Any]:
    from clasp_ingest.evaluation.rerank import ClipWords, reranked_ranks

    words = ClipWords(stage.transcriber, lambda i: load_waveform(clips[i].audio))
    ranked = reranked_ranks(text, audio, [row.text for row in rows], words, stage)
    scores = {
        "hits@1": float(np.mean(ranked == 1)),
        "mrr": float(np.mean(1.0 / ranked)),
        "mean_rank": float(np.mean(ranked)),
    }
    return {"scores": scores, "rerank": stage.n, "transcribed": words.transcribed}


def _check_candidates(candidates: str | int, n_rows: int) -> int | None:
    if candidates == "all":
        return None
    if isinstance(candidates, str) and candidates.isdigit():
        candidates = int(candidates)
    if not isinstance(candidates, int) or isinstance(candidates, bool):
        raise ConfigError(f"candidates must be 'all' or a number, got {candidates!r}")
    if not 2 <= candidates <= n_rows:
        raise ConfigError(
            f"candidates={candidates} needs 2..{n_rows} (the split has {n_rows} clips); "
            f"give a number in that range or 'all'"
        )
    return candidates


def sample_candidates(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size) column indices: for query ``i``, ``size - 1`` other clips then ``i`` itself."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size), dtype=np.int64)
    for i in range(n):
        others = rng.choice(n - 1, size=size - 1, replace=False)
        out[i, :-1] = others + (others >= i)  # skip the query's own clip
        out[i, -1] = i
    return out


def retrieval_metrics(sim: np.ndarray, labels: np.ndarray | None, threshold: float) -> dict[str, float]:
    """Hits@1, MRR, mean rank and Macro-F1 of one similarity matrix."""
    return {
        "hits@1": hits_at_1(sim, labels),
        "mrr": mrr(sim, labels),
        "mean_rank": mean_rank(sim, labels),
        "macro_f1": macro_f1(sim, threshold, labels),
    }


def streamed_metrics(
    text: np.ndarray, audio: np.ndarray, columns: np.ndarray | None, threshold: float, chunk: int = 1024
) -> dict[str, float]:
    """:func:`retrieval_metrics` of ``text @ audio.T`` (restricted to ``columns`` per query).

    Computed ``chunk`` queries at a time, so memory stays ``chunk × n`` however large the
    split (the paper's 11k-clip test set would need a 1 GB matrix at once).
    """
    all_ranks: list[np.ndarray] = []
    hits, counts = 0, Confusion()
    for start in range(0, len(text), chunk):
        rows = np.arange(start, min(start + chunk, len(text)))
        sim = text[rows] @ audio.T
        if columns is None:
            labels = rows
        else:
            sim = np.take_along_axis(sim, columns[rows], axis=1)
            labels = np.full(len(rows), columns.shape[1] - 1)
        all_ranks.append(ranks(sim, labels))
        hits += round(hits_at_1(sim, labels) * len(rows))
        counts += confusion(sim, threshold, labels)
    ranked = np.concatenate(all_ranks)
    return {
        "hits@1": hits / len(text),
        "mrr": float(np.mean(1.0 / ranked)),
        "mean_rank": float(np.mean(ranked)),
        "macro_f1": counts.macro_f1(),
    }


def _embeddings(
    model: Any,
    rows: Sequence[ManifestRow],
    cache_dir: Path | None,
    batch_size: int,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised (text, audio) embeddings, float64, row ``i`` from manifest row ``i``."""
    texts = [row.text for row in rows]
    if all(
        hasattr(model, part)
        for part in ("speech", "spectrogram", "text", "embed_features", "embed_text_features")
    ):
        cache = FeatureCache(cache_dir)
        features = compute_features(
            model, [row.audio for row in rows], texts, cache=cache, batch_size=batch_size, progress=progress
        )
        audio = model.embed_features(features.speech, features.spectrogram)
        text = model.embed_text_features(features.text)
        return _normalised(np.asarray(text, np.float64)), _normalised(np.asarray(audio, np.float64))
    return _text_embeddings(model, texts, batch_size), _encoded_audio(model, rows, batch_size, progress)


def _encoded_audio(
    model: Any, rows: Sequence[ManifestRow], batch_size: int, progress: ProgressFn | None
) -> np.ndarray:
    chunks = []
    for start in range(0, len(rows), batch_size):
        waves = [load_waveform(row.audio) for row in rows[start : start + batch_size]]
        chunks.append(np.asarray(model.encode_audio(waves), dtype=np.float64))
        if progress is not None:
            progress("audio embeddings", min(start + batch_size, len(rows)), len(rows))
    return _normalised(np.concatenate(chunks))


def _text_embeddings(model: Any, texts: list[str], batch_size: int) -> np.ndarray:
    size = max(batch_size, 32)
    parts = [np.asarray(model.encode_text(texts[i : i + size])) for i in range(0, len(texts), size)]
    return _normalised(np.concatenate(parts).astype(np.float64))


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
