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


def default_model_env(tmp_path: Path) -> dict[str, str]:
    """A fresh ``$HOME`` (and Prefect home) under ``tmp_path``, no ``CLASP_*`` or ``PREFECT_*``
    settings, so the default model and store; the machine's model cache (building it from
    nothing is test_default_model's job)."""
    home = tmp_path / "home"
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLASP_", "PREFECT_"))}
    return {
        **clean,
        "HOME": str(home),
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")),
        "PREFECT_HOME": str(home / "prefect"),
    }


def usage_said(stderr: str) -> str:
    """A usage error's text (exit 2) without the box typer draws and its line breaks (its width
    is the terminal's, or 80 columns without one, as under xdist)."""
    return " ".join(stderr.replace("│", " ").split())
