"""Text → audio retrieval evaluation with the CLASP paper's two protocols.

Every manifest row of the chosen split is one query (its text) and names its true candidate
clip (its audio). Rows that name one audio file (the same resolved path: several captions of
one clip, as caption datasets have) share one candidate clip, the true one of each of their
queries (:func:`distinct_clips`).

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
from dataclasses import dataclass
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

__all__ = [
    "RESULT_KEYS",
    "Clips",
    "distinct_clips",
    "evaluate",
    "retrieval_metrics",
    "sample_candidates",
    "streamed_metrics",
]

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
    cache_dir: Path | str | None = None,
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
    ``"distractors"``, their number of clips (rows that share an audio file are one).

    ``rerank``: a second stage over each query's best ``rerank.n`` clips
    (:mod:`clasp_ingest.evaluation.rerank`); needs ``candidates="all"``. Hits@1, MRR and mean
    rank are then the reranked ones (Macro-F1 stays the first stage's: it thresholds cosines),
    and the result gains ``"rerank"`` (N) and ``"transcribed"`` (clips transcribed).

    When rows share audio files the result gains ``"n_clips"``, the split's number of distinct
    clips (with one row per clip it equals ``"n_queries"`` and is left out).
    """
    if not -1.0 <= threshold <= 1.0:  # also NaN
        raise ConfigError(f"threshold {threshold} is not a cosine; give one in [-1, 1] (--threshold)")
    rows = select_split(read_manifest(manifest), split)
    clips = distinct_clips(rows)
    n_clips = len(clips.rows)
    n_candidates = _check_candidates(candidates, n_clips, len(rows))
    if rerank is not None and n_candidates is not None:
        raise ConfigError("rerank needs candidates='all' (the first stage ranks every clip)")
    if distractors is not None and n_candidates is not None:
        raise ConfigError("distractors need candidates='all' (every clip is a candidate)")
    extra = [] if distractors is None else _distractor_clips(distractors, distractor_split or split, rows)
    text, audio = _embeddings(model, rows + extra, cache_dir, batch_size, progress)
    text = text[: len(rows)]  # the distractors' captions ask nothing
    audio = np.concatenate([audio[list(clips.first)], audio[len(rows) :]])  # one vector per clip
    columns = None if n_candidates is None else sample_candidates(n_clips, n_candidates, seed, clips.own)
    scores = streamed_metrics(text, audio, columns, threshold, own=clips.own)
    second: dict[str, Any] = {}
    if rerank is not None:
        second = _second_stage(text, audio, rows, clips.rows + extra, rerank, clips.own)
        scores = {**scores, **second.pop("scores")}
    log.info("evaluated %d queries (%s candidates): %s", len(rows), candidates, scores)
    result = {**scores, "threshold": threshold, "n_queries": len(rows), "candidates": n_candidates or "all"}
    if n_clips != len(rows):
        result["n_clips"] = n_clips
    if distractors is not None:
        result["distractors"] = len(extra)
    return {**result, **second}


def _distractor_clips(manifest: Path | str, split: str, rows: Sequence[ManifestRow]) -> list[ManifestRow]:
    """One row per distinct audio file of ``manifest``'s ``split`` that ``rows`` do not hold."""
    own = {row.audio for row in rows}
    others = select_split(read_manifest(manifest), split)
    return distinct_clips([row for row in others if row.audio not in own]).rows


@dataclass(frozen=True)
class Clips:
    """A split's distinct audio files: ``first[c]`` is the row that first names clip ``c``,
    ``rows[c]`` that row, and ``own[i]`` the clip of row ``i``."""

    first: tuple[int, ...]
    rows: list[ManifestRow]
    own: np.ndarray


def distinct_clips(rows: Sequence[ManifestRow]) -> Clips:
    """The candidate clips of ``rows``: one per distinct audio file, in manifest order.

    Rows with one audio file are several captions of one clip. As separate candidates their
    vectors (the same audio embedded at two batch positions) differ by float noise, and that
    noise, changing with the row order, decided which caption's query got the clip first.
    """
    index: dict[Path, int] = {}
    own = np.array([index.setdefault(row.audio, len(index)) for row in rows], dtype=np.int64)
    first = tuple(int(i) for i in np.unique(own, return_index=True)[1])
    return Clips(first, [rows[i] for i in first], own)


def _second_stage(
    text: np.ndarray,
    audio: np.ndarray,
    rows: Sequence[ManifestRow],
    clips: Sequence[ManifestRow],
    stage: SecondStage,
    own: np.ndarray,
) -> dict[str, Any]:
    from clasp_ingest.evaluation.rerank import ClipWords, reranked_ranks

    words = ClipWords(stage.transcriber, lambda i: load_waveform(clips[i].audio))
    ranked, first = reranked_ranks(text, audio, [row.text for row in rows], words, stage, own)
    scores = {
        "hits@1": float(np.mean(first)),
        "mrr": float(np.mean(1.0 / ranked)),
        "mean_rank": float(np.mean(ranked)),
    }
    return {"scores": scores, "rerank": stage.n, "transcribed": words.transcribed}


def _check_candidates(candidates: str | int, n_clips: int, n_rows: int) -> int | None:
    if candidates == "all":
        return None
    if isinstance(candidates, str) and candidates.isdigit():
        candidates = int(candidates)
    if not isinstance(candidates, int) or isinstance(candidates, bool):
        raise ConfigError(f"candidates must be 'all' or a number, got {candidates!r}")
    if not 2 <= candidates <= n_clips:
        rows = "" if n_clips == n_rows else f" in {n_rows} rows: rows with one audio file are one clip"
        raise ConfigError(
            f"candidates={candidates} needs 2..{n_clips} (the split has {n_clips} clips{rows}); "
            f"give a number in that range or 'all'"
        )
    return candidates


def sample_candidates(n: int, size: int, seed: int, own: np.ndarray | None = None) -> np.ndarray:
    """(queries, size) column indices among ``n`` clips: for query ``i``, ``size - 1`` clips other
    than its own ``own[i]`` (default ``i``, one query per clip) then ``own[i]`` itself."""
    rng = np.random.default_rng(seed)
    clips = np.arange(n) if own is None else np.asarray(own, dtype=np.int64)
    out = np.empty((len(clips), size), dtype=np.int64)
    for i, clip in enumerate(clips):
        others = rng.choice(n - 1, size=size - 1, replace=False)
        out[i, :-1] = others + (others >= clip)  # skip the query's own clip
        out[i, -1] = clip
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
    text: np.ndarray,
    audio: np.ndarray,
    columns: np.ndarray | None,
    threshold: float,
    chunk: int = 1024,
    *,
    own: np.ndarray | None = None,
) -> dict[str, float]:
    """:func:`retrieval_metrics` of ``text @ audio.T`` (restricted to ``columns`` per query, whose
    last is the query's own clip); query ``i``'s clip is ``own[i]`` (default ``i``).

    Computed ``chunk`` queries at a time, so memory stays ``chunk × n`` however large the
    split (the paper's 11k-clip test set would need a 1 GB matrix at once).
    """
    all_ranks: list[np.ndarray] = []
    hits, counts = 0, Confusion()
    for start in range(0, len(text), chunk):
        rows = np.arange(start, min(start + chunk, len(text)))
        sim = text[rows] @ audio.T
        if columns is None:
            labels = rows if own is None else np.asarray(own)[rows]
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
    cache_dir: Path | str | None,
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
