"""Post-processing of hits into answer spans: widen by neighbouring segments, merge neighbours."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from clasp_ingest.store.base import transcript_of
from clasp_ingest.types import SpanHit

__all__ = ["Span", "merge_spans", "span_from_hit"]


@dataclass(frozen=True)
class Span:
    """A stretch of one media item answering a query, made of one or more stored segments.

    ``point_id``: the Qdrant point of its best-scoring segment; ``point_ids[i]`` is the point
    of segment ``segment_indices[i]`` (empty when the hits carried no ids), and ``texts[i]``
    its words (None where that segment has not been transcribed).
    """

    media_id: str
    source: str
    title: str
    start_s: float
    end_s: float
    score: float
    segment_indices: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)
    point_id: str | None = None
    point_ids: tuple[str, ...] = ()
    texts: tuple[str | None, ...] = ()

    @property
    def transcript(self) -> str | None:
        """The span's words in time order, once every segment of it is transcribed; None before
        (a neighbour's words alone would pass for the whole span's) or when none has words."""
        if not self.texts or any(text is None for text in self.texts):
            return None
        words = [text for text in self.texts if text]
        return " ".join(words) if words else None

    @property
    def transcript_language(self) -> str | None:
        """The language Whisper found in the best-scoring segment, where the span has its words
        (:attr:`transcript`): a span widened over segments without words had none, and said
        ``"en"`` beside ``transcript`` None."""
        language = self.extra.get("transcript_language")
        return str(language) if language is not None and self.transcript is not None else None

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError(f"Span needs end_s > start_s, got {self.start_s}..{self.end_s}")
        if self.point_ids and len(self.point_ids) != len(self.segment_indices):
            raise ValueError(
                f"Span has {len(self.point_ids)} point ids for {len(self.segment_indices)} segments"
            )
        if self.texts and len(self.texts) != len(self.segment_indices):
            raise ValueError(f"Span has {len(self.texts)} texts for {len(self.segment_indices)} segments")


def _index(hit: SpanHit) -> int:
    return int(hit.payload.get("metadata", {}).get("segment_index", -1))


def _ids_in_order(ids_by_index: dict[int, str | None]) -> tuple[str, ...]:
    if any(pid is None for pid in ids_by_index.values()):
        return ()
    return tuple(str(ids_by_index[i]) for i in sorted(ids_by_index))


def span_from_hit(hit: SpanHit, neighbours: Sequence[SpanHit] = ()) -> Span:
    """The span of ``hit``, widened to cover ``neighbours`` (its context segments)."""
    members = [hit, *neighbours]
    ids_by_index = {_index(m): m.point_id for m in reversed(members)}  # the hit's own id wins
    texts_by_index = {_index(m): transcript_of(m.payload) for m in reversed(members)}
    meta = dict(hit.payload.get("metadata", {}))
    return Span(
        media_id=hit.media_id,
        source=hit.source,
        title=hit.title,
        start_s=min(m.start_s for m in members),
        end_s=max(m.end_s for m in members),
        score=hit.score,
        segment_indices=tuple(sorted(ids_by_index)),
        extra=meta,
        point_id=hit.point_id,
        point_ids=_ids_in_order(ids_by_index),
        texts=tuple(texts_by_index[i] for i in sorted(texts_by_index)),
    )


def _join(a: Span, b: Span) -> Span:
    best = a if a.score >= b.score else b
    ids: dict[int, str | None] = dict.fromkeys((*a.segment_indices, *b.segment_indices))
    if a.point_ids and b.point_ids:
        ids.update(zip(b.segment_indices, b.point_ids, strict=True))
        ids.update(zip(a.segment_indices, a.point_ids, strict=True))
    texts = {**_texts_by_index(b), **_texts_by_index(a)}
    return Span(
        media_id=a.media_id,
        source=a.source,
        title=a.title,
        start_s=min(a.start_s, b.start_s),
        end_s=max(a.end_s, b.end_s),
        score=best.score,
        segment_indices=tuple(sorted(ids)),
        extra=best.extra,
        point_id=best.point_id,
        point_ids=_ids_in_order(ids),
        texts=tuple(texts.get(i) for i in sorted(ids)),
    )


def _texts_by_index(span: Span) -> dict[int, str | None]:
    texts = span.texts or (None,) * len(span.segment_indices)
    return dict(zip(span.segment_indices, texts, strict=True))


def merge_spans(spans: Sequence[Span], *, max_gap_s: float = 0.5) -> list[Span]:
    """Merge spans of the same media item that overlap or lie within ``max_gap_s`` of each other.

    A merged span keeps the best score of its parts. Returns spans best first.
    """
    by_media: dict[str, list[Span]] = {}
    for span in spans:
        by_media.setdefault(span.media_id, []).append(span)
    merged: list[Span] = []
    for group in by_media.values():
        group = sorted(group, key=lambda s: s.start_s)
        current = group[0]
        for span in group[1:]:
            if span.start_s <= current.end_s + max_gap_s:
                current = _join(current, span)
            else:
                merged.append(current)
                current = span
        merged.append(current)
    return sorted(merged, key=_by_score)


_by_score: Callable[[Span], tuple[float, str, float]] = lambda s: (-s.score, s.media_id, s.start_s)  # noqa: E731
