"""Run ``python -m clasp_ingest`` as a user would, in a fresh ``$HOME``, and read the store it left.

:class:`Cli` runs whole commands in new processes (peak memory of each from ``os.wait4``);
:func:`points` reads an Edge store folder after the command has closed it.
"""

from __future__ import annotations

import contextlib
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
    killed: str = ""  # why the runner killed it ("" when it ended by itself)

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self, prefix: str) -> list[str]:
        """stderr lines starting with ``prefix`` (``error:``, ``warning:``)."""
        return [line for line in self.stderr.splitlines() if line.startswith(prefix)]

    def failed(self) -> dict[str, str]:
        """``ingest --json``'s ``media_failed`` as ``{uri: error}``."""
        return {f["uri"]: f["error"] for f in self.json()["media_failed"]}

    def tail(self) -> str:
        killed = f" (killed: {self.killed})" if self.killed else ""
        return f"exit {self.returncode}{killed}\nstdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-3000:]}"


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

    def run(self, *args: str | bytes, timeout_s: float = 300, max_rss_mb: float = 4000) -> Run:
        """Run a command to the end; measures its wall time and peak RSS.

        The command is killed after ``timeout_s``, or as soon as its resident memory passes
        ``max_rss_mb`` (a runaway must not take the machine down with it).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.monotonic()
            process = subprocess.Popen(
                self.command(*args), env=self.env, cwd=ROOT, stdout=out, stderr=err, start_new_session=True
            )
            watchdog = _Watchdog(process.pid, timeout_s, max_rss_mb)
            try:
                _, status = os.waitpid(process.pid, 0)
            finally:
                watchdog.stop()
            process.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - started
            out.seek(0)
            err.seek(0)
            shown = tuple(a if isinstance(a, str) else os.fsdecode(a) for a in args)
            return Run(shown, process.returncode, _text(out.read()), _text(err.read()), wall,
                       watchdog.peak_mb, watchdog.reason)  # fmt: skip


class _Watchdog:
    """Kills a process group after ``timeout_s`` or when the leader's RSS passes ``max_rss_mb``;
    ``peak_mb`` is the leader's own peak (its ``VmHWM``, read each 0.1 s). Not ``wait4``'s
    ``ru_maxrss``: Linux counts in it the pages of the parent it was forked from, so a command
    started by a pytest process of 1.5 GB (an xdist worker after other files) read as 1.5 GB."""

    def __init__(self, pid: int, timeout_s: float, max_rss_mb: float) -> None:
        self.reason = ""
        self.peak_mb = 0.0
        self._pid, self._max_rss_mb = pid, max_rss_mb
        self._deadline = time.monotonic() + timeout_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="fault-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.1):
            rss = _rss_mb(self._pid)
            self.peak_mb = max(self.peak_mb, _rss_mb(self._pid, "VmHWM"))
            if time.monotonic() > self._deadline:
                self.reason = "timed out"
            elif rss > self._max_rss_mb:
                self.reason = f"resident memory over {self._max_rss_mb:.0f} MB"
            if self.reason:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._pid, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Current resident memory of ``pid`` (``VmHWM``: its peak), 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith(f"{field}:")), f"{field}: 0 kB")
    return int(line.split()[1]) / 1024


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
    """Every point of an Edge store folder (any state), by its span (``media:version:start:end``;
    a second point of one span gets ``#2``...: each write has ids of its own, so two stores made
    by different runs are compared by what they hold); empty when there is no collection."""
    from clasp_ingest.store import open_store

    with open_store(path=store, collection=collection) as opened:
        if not opened.exists():
            return {}
        found: dict[str, StoredPoint] = {}
        seen: dict[str, int] = {}
        for p in opened.iter_points():
            m = p.payload["metadata"]
            point = StoredPoint(
                m["media_id"], m["version"], m["state"], m["start_s"], m["end_s"], str(m.get("source", ""))
            )
            key = f"{point.media_id}:{point.version}:{point.start_s}:{point.end_s}"
            seen[key] = seen.get(key, 0) + 1
            found[f"{key}#{seen[key]}" if seen[key] > 1 else key] = point
        return found


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
