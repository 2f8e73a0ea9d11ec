"""clasp-ingest: spoken media → sentence-level CLASP vectors in Qdrant → text queries in ~100 languages."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from clasp_ingest.config import Settings
    from clasp_ingest.types import MediaRef, Segment, SpanHit

#: Imported when first used: the package itself imports fast (pydantic and numpy take 0.2 s),
#: so a Ctrl-C while ``clasp-ingest`` starts is caught by its entry point (``console``).
_LAZY = {"Settings": "clasp_ingest.config", "MediaRef": "clasp_ingest.types",
         "Segment": "clasp_ingest.types", "SpanHit": "clasp_ingest.types"}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clasp_ingest' has no attribute {name!r}")


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
