"""glibc's allocator, set up for Whisper on the CPU: freed memory is kept and reused.

CTranslate2 allocates each layer's buffers afresh. glibc serves a block over 32 MiB (a 30 s
window's attention scores: 8 heads x 1500 x 1500 floats, 72 MB) with its own ``mmap`` and
returns it on ``free``, so every layer of every 30 s encoding touched new pages: measured on
Whisper-base int8 (2-core AMD EPYC, 2026-12-07), 155,000 page faults and 0.5 s of kernel time
per 30 s window, a third of its 1.1 s. With one arena (CTranslate2's worker threads allocate in
the main heap), no ``mmap`` for big blocks and no trimming of the heap's top, the second window
reuses the first's pages: 0 faults, 0.7 s a window. The same run: a first ``search --rerank 6``
with lazy words over a fresh 10-minute store 23.5 s → 18.1 s (peak memory 892 → 899 MB);
``ingest --transcribe`` of the 614 s file 102 s → 86 s (1.24 → 1.45 GB); ``ingest`` of three
such files 32-34 s → 31-32 s (676-701 → 614-628 MB).

The one-arena setting only holds for threads that allocate for the first time after it (a
thread already using an arena of its own keeps it, and there big blocks are mapped afresh
whatever the other settings say), so :func:`reuse_freed_memory` runs first thing in the
``clasp-ingest`` command (:mod:`clasp_ingest.console`), before any library starts a thread. A
program that uses the retriever or the flows can call it first thing too, or set
:data:`MALLOC_ENVIRONMENT` (``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=2147483647``, README), which glibc reads at the process's start.
Where the environment sets glibc's allocator (any ``MALLOC_*`` variable, a ``glibc.malloc``
tunable) it decides and nothing is changed; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["MALLOC_ENVIRONMENT", "is_glibc", "reuse_freed_memory"]

#: The environment that gives a process these settings from its start (README).
MALLOC_ENVIRONMENT = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "2147483647",
}

# mallopt's parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def reuse_freed_memory() -> bool:
    """Keep and reuse freed memory (module docstring); True where glibc took the settings.

    Nothing is changed off Linux, under another C library, or where the environment sets
    glibc's allocator itself (any ``MALLOC_*`` variable, a ``glibc.malloc`` tunable).
    """
    if not is_glibc() or _chosen_by_environment():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))
    return all(mallopt(param, value) == 1 for param, value in settings)


def is_glibc() -> bool:
    """Whether this process runs on glibc (Linux's usual C library; not musl, macOS or Windows)."""
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):  # no such name here (musl)
        return False


def _chosen_by_environment() -> bool:
    """Whether the environment sets glibc's allocator (any ``MALLOC_*`` variable, or a
    ``glibc.malloc`` tunable)."""
    return any(name.startswith("MALLOC_") for name in os.environ) or "glibc.malloc" in os.environ.get(
        "GLIBC_TUNABLES", ""
    )
