"""Flow tests run under one session-scoped ``prefect_test_harness`` (its own SQLite API server)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.connectors.conftest import HttpSite, http_site, s3_server  # noqa: F401 - fixtures
from tests.unit.pipeline.conftest import speech_sources  # noqa: F401 - fixture


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    import prefect.settings as ps
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    quiet = {
        ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        ps.PREFECT_SERVER_ANALYTICS_ENABLED: False,
        ps.PREFECT_LOGGING_LEVEL: "WARNING",
        ps.PREFECT_SERVER_LOGGING_LEVEL: "CRITICAL",
        ps.PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore",
    }
    with temporary_settings(updates=quiet), prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def folder(tmp_path: Path, speech_sources: dict[str, Path]) -> Path:  # noqa: F811
    media = tmp_path / "media"
    media.mkdir()
    for name, path in speech_sources.items():
        shutil.copy(path, media / name)
    return media


__all__ = ["HttpSite"]
