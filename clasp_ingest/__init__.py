"""clasp-ingest: spoken media → sentence-level CLASP vectors in Qdrant → text queries in ~100 languages."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from clasp_ingest.config import Settings
from clasp_ingest.errors import (
    ClaspIngestError,
    CollectionMismatchError,
    ConfigError,
    ConnectorError,
    FilterError,
    MediaDecodeError,
    ModelLoadError,
    StoreError,
)
from clasp_ingest.types import MediaRef, Segment, SpanHit

try:
    __version__ = version("clasp-ingest")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ClaspIngestError",
    "CollectionMismatchError",
    "ConfigError",
    "ConnectorError",
    "FilterError",
    "MediaDecodeError",
    "MediaRef",
    "ModelLoadError",
    "Segment",
    "Settings",
    "SpanHit",
    "StoreError",
    "__version__",
]
