"""The project's log lines reach the run's logs; embedding batches wait for the ``gpu`` tag limit."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from clasp_ingest.flows import ingest_source

from clasp_ingest.store import open_store
from tests.integration.flows.test_ingest_flow import ARGS


@pytest.fixture
def run_level_info() -> Iterator[None]:
    """Prefect's run loggers at INFO, their default (the session harness runs them at WARNING)."""
    prefect_logger = logging.getLogger("prefect")
    saved = prefect_logger.level
    prefect_logger.setLevel(logging.INFO)
    yield
    prefect_logger.setLevel(saved)


def _run_logs(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # send what is queued
    with get_client(sync_client=True) as client:
        return client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))


def test_project_log_lines_reach_the_runs_logs(folder: Path, tmp_path: Path, run_level_info: None) -> None:
    project = logging.getLogger("clasp_ingest")
    assert project.level == logging.NOTSET and not project.handlers
    state = ingest_source(str(folder), qdrant_path=str(tmp_path / "q"), return_state=True, **ARGS)
    assert state.is_completed()
    logs = _run_logs(state.state_details.flow_run_id)
    ingested = [log for log in logs if log.name == "clasp_ingest.pipeline" and "ingested " in log.message]
    assert len(ingested) == 3  # one per media item, from inside the ingest-media task runs
    assert all(log.task_run_id is not None and log.level == logging.INFO for log in ingested)
    assert any("3 media to ingest" in log.message and log.task_run_id is None for log in logs)  # flow level
    assert project.level == logging.NOTSET and not project.handlers  # detached once the run ended


@contextmanager
def _gpu_limit_of_one() -> Iterator[None]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="gpu", concurrency_limit=1)  # as `... create gpu 1`
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("gpu")


def test_embedding_waits_for_a_slot_of_the_gpu_tag_limit(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from clasp_ingest.flows import gpu
    from prefect.concurrency.sync import concurrency

    monkeypatch.setattr(gpu, "SLOT_WAIT_SAID_S", 1.0)  # the wait is said (an operator saw 5 silent minutes)

    qdrant = tmp_path / "q"
    outcome: list[Any] = []
    context = contextvars.copy_context()  # the harness's API settings live in context variables
    run = threading.Thread(
        target=lambda: outcome.append(
            context.run(ingest_source, str(folder / "one.wav"), qdrant_path=str(qdrant), **ARGS)
        )
    )
    with _gpu_limit_of_one(), concurrency("tag:gpu", occupy=1):  # this test holds the only slot
        run.start()
        deadline = time.monotonic() + 120  # held until the flow's first batch says it waits for it
        while time.monotonic() < deadline and not _said_waiting(caplog) and run.is_alive():
            time.sleep(0.2)
        assert run.is_alive(), "the flow finished while the gpu slot was held elsewhere"
    run.join(timeout=120)
    assert not run.is_alive() and outcome and outcome[0].media_ok == 1
    with open_store(path=qdrant) as store:
        assert store.count() == outcome[0].segments == 3
    waited = _said_waiting(caplog)
    assert waited and "frees it within 60 s" in waited[0], [r.getMessage() for r in caplog.records][-20:]


def _said_waiting(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waiting for a slot of the Prefect" in r.getMessage()]
