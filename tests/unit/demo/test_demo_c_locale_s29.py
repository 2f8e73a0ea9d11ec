"""``python -m clasp_ingest.demo`` in an ASCII locale (``LC_ALL=C`` with ``PYTHONUTF8=0``): it
ingested, then ended with a ``UnicodeDecodeError`` reading ``demo.json`` and, past that, a
``UnicodeEncodeError`` printing a result's ✓ (tester 2 of session 29). The tiny model: only the
files and the output matter here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the whole demo, ~15 s on 2 cores


def test_the_demo_runs_to_its_end_in_an_ascii_locale(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONUTF8", "CLASP_"))}
    done = subprocess.run(
        [sys.executable, "-m", "clasp_ingest.demo", "--model", "tiny-random", "--k", "1",
         "--store", str(tmp_path / "q")],
        env={**env, "LC_ALL": "C", "PYTHONUTF8": "0", "CLASP_DEVICE": "cpu", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ingested 4 files" in done.stdout and "right span first for" in done.stdout
    assert "\\u2713" in done.stdout or "\\u2717" in done.stdout  # the marks, as escapes
    assert "Les p\\xeacheurs" in done.stdout  # the French query, as CLI output escapes it
