"""The ``clasp-ingest`` console script.

Importing the CLI takes about half a second (numpy, typer, the commands' modules), and a
Ctrl-C in that time printed a traceback of the import; it is ``error: interrupted`` (exit 130)
like a Ctrl-C later.
"""

from __future__ import annotations

import sys

from clasp_ingest.exitcodes import EXIT_INTERRUPTED

__all__ = ["main"]


def main() -> None:
    """Console-script entry point: :func:`clasp_ingest.cli.main`, once it is imported."""
    try:
        from clasp_ingest.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    run()
