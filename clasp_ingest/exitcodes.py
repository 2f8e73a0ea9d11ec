"""Exit statuses of every ``clasp-ingest`` command (also in ``--help`` and the README)."""

from __future__ import annotations

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_BUSY",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
]

EXIT_OK = 0
#: The command could not do its work: bad input, unknown model, wrong collection, unreachable store...
EXIT_ERROR = 1
#: A bad option or argument (click's usage errors).
EXIT_USAGE = 2
#: ``ingest`` ran, but some items or sources failed (they are listed in its output).
EXIT_PARTIAL = 3
#: The embedded store is open in another process (another ingest, a search): try again later
#: (sysexits' ``EX_TEMPFAIL``), where 1 would say something is wrong.
EXIT_BUSY = 75
#: Interrupted (Ctrl-C).
EXIT_INTERRUPTED = 130
#: The reader of the output went away (``| head``): 128 + SIGPIPE, as a shell reports it.
EXIT_BROKEN_PIPE = 141
#: Stopped by SIGTERM (``timeout``, ``systemctl stop``, ``docker stop``): 128 + SIGTERM.
EXIT_TERMINATED = 143
