"""clasp-ingest: spoken media → sentence-level CLASP vectors in Qdrant → text queries in ~100 languages."""

from __future__ import annotations

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

    __version__: str

#: Imported when first used: the package itself imports fast (pydantic and numpy take 0.2 s),
#: so a Ctrl-C while ``clasp-ingest`` starts is caught by its entry point (``console``). The
#: modules too: ``clasp_ingest.config`` after ``import clasp_ingest`` worked when it imported them.
_LAZY = {"Settings": "clasp_ingest.config", "MediaRef": "clasp_ingest.types",
         "Segment": "clasp_ingest.types", "SpanHit": "clasp_ingest.types"}  # fmt: skip
_MODULES = frozenset({"config", "types"})

if not TYPE_CHECKING:  # type checkers see the imports above, and report unknown names

    def __getattr__(name: str) -> Any:
        import importlib

        if name in _LAZY:
            return getattr(importlib.import_module(_LAZY[name]), name)
        if name == "__version__":  # importlib.metadata alone took 30 ms of the 40 at start
            return _version()
        if name in _MODULES:
            return importlib.import_module(f"clasp_ingest.{name}")
        raise AttributeError(f"module 'clasp_ingest' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY, *_MODULES, "__version__"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clasp-ingest")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


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
