"""The ``clasp-ingest`` console script.

Importing the CLI takes about half a second (numpy, typer, the commands' modules), and a
Ctrl-C in that time printed a traceback of the import; it is ``error: interrupted`` (exit 130)
like a Ctrl-C later.

Before that import starts any thread, glibc's allocator is told to keep and reuse freed memory
(:func:`clasp_ingest.malloc.reuse_freed_memory`: Whisper's 30 s windows a third faster).
"""

from __future__ import annotations

import sys

from clasp_ingest.exitcodes import EXIT_INTERRUPTED
from clasp_ingest.malloc import reuse_freed_memory

__all__ = ["main"]


def main() -> None:
    """Console-script entry point: :func:`clasp_ingest.cli.main`, once it is imported."""
    reuse_freed_memory()  # before any library starts a thread (clasp_ingest.malloc)
    try:
        from clasp_ingest.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    run()
