"""The package logger. Library code logs; only the CLI configures handlers."""

from __future__ import annotations

import logging

__all__ = ["get_logger"]


def get_logger(name: str | None = None) -> logging.Logger:
    """``clasp_ingest`` or a child of it (``clasp_ingest.media`` ...)."""
    return logging.getLogger("clasp_ingest" if not name else f"clasp_ingest.{name}")
