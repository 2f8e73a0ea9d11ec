"""The package logger. Library code logs; only the CLI configures handlers."""

from __future__ import annotations

import logging
import unicodedata

__all__ = ["get_logger", "one_line"]


def get_logger(name: str | None = None) -> logging.Logger:
    """``clasp_ingest`` or a child of it (``clasp_ingest.media`` ...)."""
    return logging.getLogger("clasp_ingest" if not name else f"clasp_ingest.{name}")


def one_line(text: str) -> str:
    """``text`` safe to print on one terminal line: control characters (a newline or tab in a file
    name, a terminal escape sequence) and line separators are written as escapes (``\\n``,
    ``\\x1b``, ``\\u2028``); every other character, any script's, is kept."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in text
    )
