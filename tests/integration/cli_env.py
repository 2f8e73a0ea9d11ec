"""The environment a user's shell gives the installed ``clasp-ingest`` in CLI tests: their own
home, temporary folder, Prefect home and store under ``tmp_path``, no ``CLASP_*`` or
``PREFECT_*`` of the machine running the tests, and the tiny random model."""

from __future__ import annotations

import os
from pathlib import Path


def cli_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "tmp").mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLASP_", "PREFECT_"))}
    return {
        **clean,
        "HOME": str(home),
        "TMPDIR": str(tmp_path / "tmp"),
        "PREFECT_HOME": str(home / "prefect"),
        "CLASP_QDRANT_PATH": str(tmp_path / "qdrant"),
        "CLASP_MODEL": "tiny-random",
    }
