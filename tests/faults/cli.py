"""Run ``python -m clasp_ingest`` as a user would, in a fresh ``$HOME``, and read the store it left.

:class:`Cli` runs whole commands in new processes (peak memory of each from ``os.wait4``);
:func:`points` reads an Edge store folder after the command has closed it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cli", "Run", "StoredPoint", "kill_at", "payloads", "points", "store_bytes"]

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


@dataclass(frozen=True)
class Run:
    """One finished command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self, prefix: str) -> list[str]:
        """stderr lines starting with ``prefix`` (``error:``, ``warning:``)."""
        return [line for line in self.stderr.splitlines() if line.startswith(prefix)]

    def failed(self) -> dict[str, str]:
        """``ingest --json``'s ``media_failed`` as ``{uri: error}``."""
        return {f["uri"]: f["error"] for f in self.json()["media_failed"]}

    def tail(self) -> str:
        return f"exit {self.returncode}\nstdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-3000:]}"


@dataclass
class Cli:
    """``python -m clasp_ingest`` with ``home`` as ``$HOME`` and a model cache shared by a session."""

    home: Path
    cache: Path
    tmpdir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLASP_", "PREFECT_"))}
        env = {**clean, "HOME": str(self.home), "XDG_CACHE_HOME": str(self.cache),
               "PREFECT_HOME": str(self.home / "prefect"), "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200", **self.extra_env}  # fmt: skip
        if self.tmpdir is not None:
            env["TMPDIR"] = str(self.tmpdir)
        return env

    def command(self, *args: str | bytes) -> list[str | bytes]:
        return [PYTHON, "-m", "clasp_ingest", *args]

    def start(self, *args: str | bytes, **popen: Any) -> subprocess.Popen[str]:
        """Start a command (stdout/stderr piped, text) in its own session; the caller waits."""
        self.home.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            self.command(*args), env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True, **popen,
        )  # fmt: skip

    def run(self, *args: str | bytes, timeout_s: float = 300) -> Run:
        """Run a command to the end (killed after ``timeout_s``); measures its wall time and peak RSS."""
        self.home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.monotonic()
            process = subprocess.Popen(
                self.command(*args), env=self.env, cwd=ROOT, stdout=out, stderr=err, start_new_session=True
            )
            timer = threading.Timer(timeout_s, os.killpg, (process.pid, signal.SIGKILL))
            timer.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                timer.cancel()
            process.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - started
            out.seek(0)
            err.seek(0)
            shown = tuple(a if isinstance(a, str) else os.fsdecode(a) for a in args)
            return Run(shown, process.returncode, _text(out.read()), _text(err.read()), wall,
                       usage.ru_maxrss / 1024)  # fmt: skip


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class StoredPoint:
    """What the fault suite compares of one stored point."""

    media_id: str
    version: str
    state: str
    start_s: float
    end_s: float
    source: str


def points(store: Path, collection: str = "clasp_segments") -> dict[str, StoredPoint]:
    """Every point of an Edge store folder (any state), by id; empty when there is no collection."""
    from clasp_ingest.store import open_store

    with open_store(path=store, collection=collection) as opened:
        if not opened.exists():
            return {}
        return {
            str(p.id): StoredPoint(
                m["media_id"], m["version"], m["state"], m["start_s"], m["end_s"], str(m.get("source", ""))
            )
            for p in opened.iter_points()
            for m in (p.payload["metadata"],)
        }


def payloads(store: Path, collection: str = "clasp_segments") -> list[dict[str, Any]]:
    """Every payload of a store (to look for what must never be stored)."""
    from clasp_ingest.store import open_store

    with open_store(path=store, collection=collection) as opened:
        return [dict(p.payload) for p in opened.iter_points()] if opened.exists() else []


def store_bytes(store: Path) -> bytes:
    """Every file of a store folder, concatenated (to grep for secrets)."""
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


# Loaded by the CLI's interpreter (PYTHONPATH): when the pipeline logs the batch named by
# CLASP_TEST_STOP_AT (a -vv debug line, logged after the batch is embedded and before it is
# written), the process says so and stops itself, so the SIGKILL lands at that moment.
_STOP_HOOK = """
import logging, os, signal, sys

class _StopHere(logging.Filter):
    def filter(self, record):
        if os.environ["CLASP_TEST_STOP_AT"] in record.getMessage():
            sys.stderr.write("stopped for the kill\\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSTOP)
        return True

logging.getLogger("clasp_ingest.pipeline").addFilter(_StopHere())
"""


def kill_at(cli: Cli, marker: str, *args: str, hook_dir: Path) -> list[str]:
    """Run ``-vv ingest ARGS``; SIGKILL it when the pipeline logs ``marker``. Returns its stderr."""
    hook_dir.mkdir()
    (hook_dir / "sitecustomize.py").write_text(_STOP_HOOK, encoding="utf-8")
    killer = Cli(cli.home, cli.cache, cli.tmpdir, {"PYTHONPATH": str(hook_dir), "CLASP_TEST_STOP_AT": marker})
    process = killer.start("-vv", "ingest", *args)
    assert process.stderr is not None
    seen: list[str] = []
    try:
        for line in process.stderr:
            seen.append(line)
            if line.startswith("stopped for the kill"):
                break
        else:
            raise RuntimeError(f"the run ended before {marker!r}:\n" + "".join(seen[-20:]))
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    return seen
