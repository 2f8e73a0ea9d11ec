"""The project's log records in the logs of the Prefect run that makes them.

Inside :func:`run_logs`, records of the ``clasp_ingest`` logger and its children (e.g. the
pipeline's "ingested X: N segments") also go to Prefect's API log handler, the one behind
``get_run_logger()``, tied to the flow or task run of the thread that logs. Records made
outside any run context (a helper thread) stay local. The handler is attached when the
first run of the process enters and removed when the last one leaves; importing this module
changes nothing.

Level: when the ``clasp_ingest`` logger has no level of its own, it takes the level of
Prefect's run loggers (``PREFECT_LOGGING_LEVEL``, INFO by default) while runs are active; a
level set by the application (the CLI's ``-v``) is left alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PROJECT_LOGGER", "run_logs"]

PROJECT_LOGGER = "clasp_ingest"


class _InRun(logging.Filter):
    """Passes records made inside a flow or task run (or naming one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "flow_run_id", None):
            return True
        from prefect.context import get_run_context
        from prefect.exceptions import MissingContextError

        try:
            get_run_context()
        except MissingContextError:
            return False
        return True


class _Attachment:
    """The API handler on the project logger, counted over the runs of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._handler: logging.Handler | None = None
        self._set_level = False

    def enter(self) -> None:
        with self._lock:
            self._runs += 1
            if self._runs == 1:
                self._attach()

    def leave(self) -> None:
        with self._lock:
            self._runs -= 1
            if self._runs == 0:
                self._detach()

    def _attach(self) -> None:
        from prefect.logging.handlers import APILogHandler

        logger = logging.getLogger(PROJECT_LOGGER)
        handler = APILogHandler()
        handler.addFilter(_InRun())
        logger.addHandler(handler)
        self._handler = handler
        self._set_level = logger.level == logging.NOTSET
        if self._set_level:
            logger.setLevel(logging.getLogger("prefect.flow_runs").getEffectiveLevel())

    def _detach(self) -> None:
        logger = logging.getLogger(PROJECT_LOGGER)
        if self._handler is not None:  # records it took are queued to the API already
            logger.removeHandler(self._handler)
            self._handler = None
        if self._set_level:
            logger.setLevel(logging.NOTSET)
            self._set_level = False


_ATTACHMENT = _Attachment()


@contextmanager
def run_logs() -> Iterator[None]:
    """Send ``clasp_ingest`` log records to the active Prefect run's logs while inside."""
    _ATTACHMENT.enter()
    try:
        yield
    finally:
        _ATTACHMENT.leave()
