"""A model that cannot load for lack of address space (``ulimit -v``) stops an ingest with one
error naming the model and the remedy (tester 1 of session 29, bug 6: every item failed with
"ImportError: libtorch_cpu.so: failed to map segment from shared object", exit 3).

The limit is set inside a child Python, 300 MB above what it has mapped once the pipeline is
imported: no room for torch's libraries. ffmpeg, a child of that child, would inherit it (and
could not start its threads on some machines: the clean-clone CI run failed so), so it runs
through a wrapper that lifts the soft limit again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("resource")
if not Path("/proc/self/status").exists():
    pytest.skip("reads the mapped size from /proc", allow_module_level=True)

SAMPLE = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_en.opus"

_INGEST = """
import resource, sys
from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.deferred import DeferredModel
from clasp_ingest.pipeline import ingest_source
from clasp_ingest.store import open_store

assert "torch" not in sys.modules
store = open_store(url=":memory:")
model = DeferredModel("clasp-mini", device="cpu", engine=sys.argv[2])
mapped_kib = int(next(line for line in open("/proc/self/status") if line.startswith("VmSize:")).split()[1])
limit = (mapped_kib + 300_000) * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    summary = ingest_source(sys.argv[1], model, store)
except ModelLoadError as exc:
    print("stopped:", exc)
    print("collection left:", store.exists())
else:
    print("ran:", [(r.status, r.error) for r in summary.results])
"""


def test_an_ingest_whose_model_cannot_map_torch_stops_with_one_error(tmp_path: Path) -> None:
    import os

    from clasp_ingest.media.decode import find_ffmpeg

    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\nulimit -S -v unlimited\nexec "{find_ffmpeg()}" "$@"\n')
    wrapper.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-c", _INGEST, str(SAMPLE), "torch"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "CLASP_FFMPEG": str(wrapper)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("stopped: "), done.stdout  # not "ran: [('failed', 'ImportError: ...')]"
    stopped, left = done.stdout.splitlines()
    assert stopped.startswith("stopped: not enough memory to load model 'clasp-mini-v1.1' (ImportError: "), (
        stopped
    )
    assert (
        "failed to map segment from shared object" in stopped or "cannot allocate memory" in stopped.lower()
    )
    assert stopped.endswith(" KiB; e.g. ulimit -v unlimited)") and "(ulimit -v, now " in stopped
    assert left == "collection left: False"  # the run created it and stored nothing
