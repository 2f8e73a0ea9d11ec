"""``--help`` into a pipe or file: rich took 80 columns and cut 13 of ``ingest``'s option and
variable names (``--allow-private-ho…``, ``CLASP_QDRANT_PAT…``); a width the user sets wins."""

from __future__ import annotations

import pytest
from typer import rich_utils
from typer.testing import CliRunner

from clasp_ingest.cli import app


@pytest.fixture
def no_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", None)


@pytest.mark.parametrize("command", [["ingest"], ["search"], ["store", "export"], ["models", "cache"]])
def test_help_into_a_pipe_cuts_no_name(command: list[str], no_width: None) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="clasp-ingest")
    assert result.exit_code == 0 and "…" not in result.output, result.output
    if command == ["ingest"]:
        assert "--allow-private-hosts" in result.output and "CLASP_EMBED_BATCH_SIZE" in result.output


def test_a_width_the_user_sets_wins(no_width: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(app, ["ingest", "--help"], prog_name="clasp-ingest")
    assert result.exit_code == 0 and "…" in result.output
