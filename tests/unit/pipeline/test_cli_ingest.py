"""The ``ingest`` command's surface (runs that need Prefect's server are in tests/integration/flows)."""

from __future__ import annotations

from typer.testing import CliRunner

from clasp_ingest.cli import app


def test_ingest_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["ingest", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--collection", "--qdrant-path", "--qdrant-url", "--feed", "--json"):
        assert option in result.output


def test_conflicting_stores_fail_before_running() -> None:
    result = CliRunner().invoke(app, ["ingest", "x", "--qdrant-path", "p", "--qdrant-url", "http://h:6333"])
    assert result.exit_code == 1
    assert "not both" in result.output
