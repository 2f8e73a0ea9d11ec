"""Prefect settings for local (ephemeral) runs and progress listeners.

With no ``PREFECT_API_URL``, Prefect starts its own short-lived API server on loopback.
:func:`prefect_runtime` makes that quiet and fast: no heartbeat thread, no server services
that only matter to a UI (task-run recorder, event persister, triggers), no analytics, and
a ``PREFECT_HOME`` under the clasp-ingest data directory unless one is set. Against a real
server (``PREFECT_API_URL`` set) only the log level and analytics are touched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clasp_ingest.pipeline import Progress

__all__ = ["emit_progress", "listen_progress", "prefect_runtime", "runtime_settings"]

_LISTENERS: list[Callable[[Progress], None]] = []
_LISTENERS_LOCK = threading.Lock()


def runtime_settings(data_dir: Path | None = None) -> dict[Any, Any]:
    """The Prefect setting updates :func:`prefect_runtime` applies (creates PREFECT_HOME)."""
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


@contextmanager
def prefect_runtime(data_dir: Path | None = None) -> Iterator[None]:
    """Run flows inside this context for quiet, fast local runs (see the module doc)."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates=runtime_settings(data_dir)):
        yield


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
