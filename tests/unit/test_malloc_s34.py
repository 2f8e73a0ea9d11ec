"""glibc keeps and reuses freed memory in the ``clasp-ingest`` command: a big block freed and
asked for again comes back without new page faults (CTranslate2's per-layer buffers of a 30 s
Whisper window: 155,000 faults and half a second of kernel time each). Each check runs in a
fresh interpreter, since the settings only hold for threads that allocate after them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clasp_ingest.malloc import MALLOC_ENVIRONMENT, is_glibc

pytestmark = pytest.mark.skipif(not is_glibc(), reason="glibc's allocator")

#: 100 MB asked for with malloc, written and freed, then asked for and written again (as
#: CTranslate2 does a layer's buffers), in the main thread and in a thread started afterwards
#: (as CTranslate2's workers are): the page faults of each second time (24,000 where glibc maps
#: the block afresh, as it does for blocks over 32 MiB, and in a thread's own arena always)
_PROBE = """
import ctypes
import resource
import threading
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 100_000_000
def faults_of_second_write():
    def faults():
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    def write_once():
        block = libc.malloc(SIZE)
        ctypes.memset(block, 1, SIZE)
        libc.free(block)
    write_once()
    before = faults()
    write_once()
    return faults() - before
found = {"main": faults_of_second_write()}
worker = threading.Thread(target=lambda: found.update(thread=faults_of_second_write()))
worker.start()
worker.join()
print("faults", found["main"], found["thread"])
"""


def _fresh_min() -> int:
    """The fewest faults of a block mapped afresh: 4 KiB pages, or 2 MiB ones where the kernel
    backs every mapping with huge pages (transparent_hugepage ``always``)."""
    try:
        always = "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        always = False
    return 40 if always else 20_000


def _run(setup: str, **env: str) -> tuple[str, int, int]:
    """The probe after ``setup`` in a fresh interpreter: (what it printed first, or every
    line where it printed ``seen``; the main thread's faults, the worker thread's)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(setup) + _PROBE],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split("\n")
    main, thread = next(map(int, line.split()[1:]) for line in out if line.startswith("faults "))
    return ("\n".join(out) if any(line.startswith("seen ") for line in out) else out[0]), main, thread


_REUSE = "from clasp_ingest.malloc import reuse_freed_memory\nprint(reuse_freed_memory())"


def test_freed_memory_is_reused_without_new_page_faults_in_every_thread() -> None:
    took, main, thread = _run(_REUSE)
    assert took == "True" and main < 1_000 and thread < 1_000


def test_glibcs_own_settings_map_a_big_block_afresh() -> None:
    # the probe can tell: without the settings the second block faults in all its pages
    _, main, thread = _run("print('plain')")
    assert main > _fresh_min() and thread > _fresh_min()


def test_without_one_arena_a_threads_big_blocks_are_mapped_afresh() -> None:
    # no mmap and no trimming alone: the main thread reuses, a worker thread's arena does not
    # (what one arena is for: CTranslate2 allocates in its own threads)
    _, main, thread = _run(
        """
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        print(libc.mallopt(-4, 0), libc.mallopt(-1, 2**31 - 1))
        """
    )
    assert main < 1_000 and thread > _fresh_min()


def test_the_environment_documented_gives_the_same_from_the_start() -> None:
    took, main, thread = _run(_REUSE, **MALLOC_ENVIRONMENT)
    assert took == "False"  # the environment decides; it already has
    assert main < 1_000 and thread < 1_000


@pytest.mark.parametrize(
    "env",
    [
        {"MALLOC_ARENA_MAX": "4"},
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
    ],
)
def test_an_allocator_the_environment_sets_is_left_as_it_is(env: dict[str, str]) -> None:
    took, _, thread = _run(_REUSE, **env)
    assert took == "False" and thread > _fresh_min()


def test_the_console_script_sets_it_before_the_cli_is_imported() -> None:
    # the real entry point, run to its end (--help), with the call it makes watched: one thread
    # and no CLI module (nor numpy) yet when it runs; then the probe in the same process
    took, main, thread = _run(
        """
        import os
        import sys
        import clasp_ingest.console as console
        seen = []
        real = console.reuse_freed_memory
        def watched():
            threads = len(os.listdir("/proc/self/task"))
            seen.append((threads, "clasp_ingest.cli" in sys.modules, "numpy" in sys.modules))
            return real()
        console.reuse_freed_memory = watched
        sys.argv = ["clasp-ingest", "--help"]
        try:
            console.main()
        except SystemExit:
            pass
        sys.stdout.flush()
        print("seen", seen)
        """
    )
    assert "seen [(1, False, False)]" in took
    assert main < 1_000 and thread < 1_000
