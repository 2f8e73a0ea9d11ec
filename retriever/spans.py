"""Post-processing of hits into answer spans: widen by neighbouring segments, merge neighbours."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from clasp_ingest.types import SpanHit

__all__ = ["Span", "merge_spans", "span_from_hit"]


@dataclass(frozen=True)
class Span:
    """A stretch of one media item answering a query; ``hits`` are the segments it covers."""

    media_id: str
    source: str
    title: str
    start_s: float
    end_s: float
    score: float
    segment_indices: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError(f"Span needs end_s > start_s, got {self.start_s}..{self.end_s}")


def _index(hit: SpanHit) -> int:
    return int(hit.payload.get("metadata", {}).get("segment_index", -1))


def span_from_hit(hit: SpanHit, neighbours: Sequence[SpanHit] = ()) -> Span:
    """The span of ``hit``, widened to cover ``neighbours`` (its context segments)."""
    members = [hit, *neighbours]
    meta = dict(hit.payload.get("metadata", {}))
    return Span(
        media_id=hit.media_id,
        source=hit.source,
        title=hit.title,
        start_s=min(m.start_s for m in members),
        end_s=max(m.end_s for m in members),
        score=hit.score,
        segment_indices=tuple(sorted({_index(m) for m in members})),
        extra=meta,
    )


def _join(a: Span, b: Span) -> Span:
    best = a if a.score >= b.score else b
    return Span(
        media_id=a.media_id,
        source=a.source,
        title=a.title,
        start_s=min(a.start_s, b.start_s),
        end_s=max(a.end_s, b.end_s),
        score=best.score,
        segment_indices=tuple(sorted(set(a.segment_indices) | set(b.segment_indices))),
        extra=best.extra,
    )


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
