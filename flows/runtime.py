"""Prefect settings and a temporary API server for local runs; progress listeners.

With no ``PREFECT_API_URL``, :func:`prefect_runtime` starts a short-lived API server on
loopback for the runs inside it (on Linux a :class:`~clasp_ingest.flows.server.TiedServer`,
which the kernel kills if this process dies, even by SIGKILL; elsewhere Prefect's own
ephemeral server) and stops it on the way out, once the logs and events still queued have
been sent. It makes runs quiet and fast: no heartbeat thread, no server services that only
matter to a UI (task-run recorder, event persister, triggers), no analytics (server and
client: ``DO_NOT_TRACK=1`` unless set), and a
``PREFECT_HOME`` under the clasp-ingest data directory unless one is set. Against a real
server (``PREFECT_API_URL`` set) only the log level and analytics are touched.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clasp_ingest.pipeline import Progress

__all__ = ["RuntimeInfo", "emit_progress", "listen_progress", "prefect_runtime", "runtime_settings"]

_LISTENERS: list[Callable[[Progress], None]] = []
_LISTENERS_LOCK = threading.Lock()


def runtime_settings(data_dir: Path | None = None) -> dict[Any, Any]:
    """The Prefect setting updates :func:`prefect_runtime` applies (creates PREFECT_HOME); also
    ``DO_NOT_TRACK=1`` in this process's environment unless set (Prefect's client usage data,
    which no setting turns off)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import prefect.settings as ps

    updates: dict[Any, Any] = {
        ps.PREFECT_LOGGING_LEVEL: "WARNING",
        ps.PREFECT_SERVER_ANALYTICS_ENABLED: False,
        ps.PREFECT_SERVER_LOGGING_LEVEL: "CRITICAL",
    }
    if ps.PREFECT_API_URL.value():
        return updates
    updates |= {
        ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        # first start on a fresh PREFECT_HOME runs migrations: slow on a busy small machine
        ps.PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: max(
            90, ps.PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        ),
        ps.PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED: False,
        ps.PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED: False,
        ps.PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED: False,
    }
    if "PREFECT_HOME" not in os.environ:
        from clasp_ingest.config import default_data_dir

        home = (data_dir or default_data_dir()) / "prefect"
        home.mkdir(parents=True, exist_ok=True)  # Prefect's server crash-loops when it is missing
        updates[ps.PREFECT_HOME] = home
    return updates


@dataclass(frozen=True)
class RuntimeInfo:
    """Where flows inside :func:`prefect_runtime` report: the API, and the server it started (if any)."""

    api_url: str | None
    server_pid: int | None


@contextmanager
def prefect_runtime(data_dir: Path | None = None) -> Iterator[RuntimeInfo]:
    """Run flows inside this context for quiet, fast local runs (see the module doc).

    Without ``PREFECT_API_URL``, starts a temporary API server tied to this process (see
    :class:`TiedServer`) and stops it on the way out; raises ``RuntimeError`` when it cannot start.
    """
    import prefect.settings as ps
    from prefect.settings import temporary_settings

    with temporary_settings(updates=runtime_settings(data_dir)), _prefect_logs_quiet():
        url = ps.PREFECT_API_URL.value()
        if url or not sys.platform.startswith("linux"):
            yield RuntimeInfo(url or None, None)  # elsewhere Prefect starts its own ephemeral server
            return
        from clasp_ingest.flows.server import TiedServer

        server = TiedServer()
        try:
            server.start()
            with temporary_settings(updates={ps.PREFECT_API_URL: server.api_url}):
                try:
                    yield RuntimeInfo(server.api_url, server.pid)
                finally:
                    _drain_to_api()
        finally:
            server.stop()


@contextmanager
def _prefect_logs_quiet() -> Iterator[None]:
    """Prefect's loggers at WARNING inside (``PREFECT_LOGGING_LEVEL`` acts only where Prefect
    configures logging, at its import: too early for a setting made here)."""
    import logging

    prefect_logger = logging.getLogger("prefect")
    level = prefect_logger.level
    prefect_logger.setLevel(max(logging.WARNING, prefect_logger.getEffectiveLevel()))
    # the queues drained when a run ends (Ctrl-C and SIGTERM too, and at exit, after this) say
    # "Still processing items: N items remaining..." on loggers outside "prefect", named by their
    # class: noise after 'error: interrupted'. Their errors still show.
    for name in ("EventsWorker", "APILogWorker"):
        worker = logging.getLogger(name)
        worker.setLevel(max(logging.ERROR, worker.getEffectiveLevel()))
    try:
        yield
    finally:
        prefect_logger.setLevel(level)


def _drain_to_api(timeout_s: float = 10.0) -> None:
    """Send the run logs and events still queued while the server is up (at exit, Prefect
    would retry them against the stopped server for minutes)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
    EventsWorker.drain_all(timeout=timeout_s)


@contextmanager
def listen_progress(callback: Callable[[Progress], None]) -> Iterator[None]:
    """Call ``callback`` with each :class:`Progress` of flows run in this process meanwhile."""
    with _LISTENERS_LOCK:
        _LISTENERS.append(callback)
    try:
        yield
    finally:
        with _LISTENERS_LOCK:
            _LISTENERS.remove(callback)


def emit_progress(progress: Progress) -> None:
    """Tell every listener (the CLI's progress bar) where the run stands."""
    with _LISTENERS_LOCK:
        listeners = list(_LISTENERS)
    for listener in listeners:
        listener(progress)
