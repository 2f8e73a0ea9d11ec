"""The package logger. Library code logs; only the CLI configures handlers."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["error_line", "get_logger", "one_line", "warnings_as_lines"]


def get_logger(name: str | None = None) -> logging.Logger:
    """``clasp_ingest`` or a child of it (``clasp_ingest.media`` ...)."""
    return logging.getLogger("clasp_ingest" if not name else f"clasp_ingest.{name}")


#: Bidirectional embeddings, overrides and isolates: one in a title turns the rest of the
#: line around on the terminal (U+202E shows "3pm.exe" as "exe.mp3").
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def one_line(text: str) -> str:
    """``text`` safe to print on one terminal line: control characters (a newline or tab in a file
    name, a terminal escape sequence), line separators and bidirectional controls are written as
    escapes (``\\n``, ``\\x1b``, ``\\u2028``, ``\\u202e``); every other character, any
    script's, is kept (joiners too: emoji and Indic scripts need them)."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS
        else ch
        for ch in text
    )


def error_line(exc: BaseException) -> str:
    """An error's text on one line (the Hub's errors span several); a gRPC error's details (its
    text is a multi-line report whose address is the gRPC port dialled, not the URL's)."""
    details = getattr(exc, "details", None)
    text = str(details() if callable(details) else "") or str(exc) or repr(exc)
    return " ".join(text.split())


@contextmanager
def warnings_as_lines(*names: str) -> Iterator[None]:
    """Warnings logged on the loggers ``names`` shown as ``warning: ...`` lines on stderr instead
    of log records: how every command words its warnings."""
    import click

    def echo(record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        click.echo(f"warning: {one_line(record.getMessage())}", err=True)
        return False

    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(echo)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(echo)
