"""Exception hierarchy: every error names the input that caused it and the remedy."""

from __future__ import annotations

__all__ = [
    "BadOptionError",
    "ClaspIngestError",
    "CollectionMismatchError",
    "ConfigError",
    "ConnectorError",
    "FilterError",
    "MediaDecodeError",
    "ModelLoadError",
    "StoreError",
    "TransientConnectorError",
]


class ClaspIngestError(Exception):
    """Base class of every error raised on purpose by clasp-ingest."""


class ConfigError(ClaspIngestError):
    """A setting or argument is invalid."""


class BadOptionError(ConfigError):
    """A value given on the command line (``option``, e.g. ``--min-s``) is invalid: the command
    reports it as bad usage (exit status 2)."""

    def __init__(self, message: str, option: str) -> None:
        self.option = option
        super().__init__(message)


class FilterError(ConfigError, ValueError):
    """A search filter uses unknown keys or something the store cannot express."""


class MediaDecodeError(ClaspIngestError):
    """A media input could not be decoded to audio (missing, corrupt, no audio track...)."""

    def __init__(self, source: str, reason: str, stderr_tail: str = "") -> None:
        self.source = source
        self.reason = reason
        self.stderr_tail = stderr_tail
        message = f"cannot decode {source!r}: {reason}"
        if stderr_tail:
            message += f" (ffmpeg: {stderr_tail})"
        super().__init__(message)


class ModelLoadError(ClaspIngestError):
    """Model files are missing, incompatible, or unsafe to load."""


class StoreError(ClaspIngestError):
    """The vector store refused or failed an operation."""


class CollectionMismatchError(StoreError):
    """An existing collection was made for another model or vector dimension."""


class StoreBusyError(StoreError):
    """The embedded store is open in another process: the same command may succeed once that
    one is done (the CLI exits 75, ``EX_TEMPFAIL``, not 1)."""


class StoreFullError(StoreError):
    """The embedded store's disk is (nearly) full: nothing more can be written there until
    space is freed (retrying does not help)."""


class ConnectorError(ClaspIngestError):
    """A media source could not be listed or opened."""


class IngestInterrupted(ClaspIngestError):
    """The run was interrupted (Ctrl-C) while this item was being ingested; nothing of it was kept."""


class TransientConnectorError(ConnectorError):
    """A source failed in a way that may pass when tried again: the server could not be
    reached, answered 429 or 5xx, or the connection broke off (other connector errors are
    permanent: a missing file, a refused address, a limit that was hit)."""
