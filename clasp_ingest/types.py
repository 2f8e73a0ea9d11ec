"""Core value types shared by every stage (see ARCHITECTURE.md)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MEDIA_NAMESPACE", "MediaRef", "Segment", "SpanHit", "media_id_for"]

#: Namespace of the uuid5 media ids and point ids of this project.
MEDIA_NAMESPACE = uuid.UUID("5d1f6a9e-3c2b-5b0e-9a57-c1a5b0f1e2d3")


def media_id_for(uri: str) -> str:
    """Stable media id of a canonical source URI."""
    return str(uuid.uuid5(MEDIA_NAMESPACE, uri))


@dataclass(frozen=True)
class MediaRef:
    """One media item found by a connector."""

    uri: str
    media_id: str
    fingerprint: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.uri:
            raise ValueError("MediaRef.uri must not be empty")
        if not self.media_id:
            raise ValueError(f"MediaRef for {self.uri!r} has an empty media_id")


@dataclass(frozen=True)
class Segment:
    """A sentence-like span of a media item, in seconds from its start (ms precision)."""

    media_id: str
    index: int
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"Segment.index must be >= 0, got {self.index}")
        if self.start_s < 0:
            raise ValueError(f"Segment.start_s must be >= 0, got {self.start_s}")
        if self.end_s <= self.start_s:
            raise ValueError(f"Segment needs end_s > start_s, got {self.start_s}..{self.end_s}")

    @property
    def duration_s(self) -> float:
        return round(self.end_s - self.start_s, 3)

    @property
    def start_ms(self) -> int:
        return round(self.start_s * 1000)

    @property
    def end_ms(self) -> int:
        return round(self.end_s * 1000)


@dataclass(frozen=True)
class SpanHit:
    """A search result: one span of one media item (``point_id``: its Qdrant point's id)."""

    media_id: str
    source: str
    title: str
    start_s: float
    end_s: float
    score: float
    url: str
    payload: dict[str, Any] = field(default_factory=dict)
    point_id: str | None = None
