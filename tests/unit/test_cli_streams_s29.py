"""The command line where its surroundings are unusual: closed standard streams, a deleted
working folder, an output with no room left (tester 2 of session 29). Runs of the installed
script with a closed stream or a broken pipe: tests/integration/cli/test_hostile_env_s29.py."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import _describe, app
from clasp_ingest.store.cli_store import is_terminal


def test_a_closed_or_detached_stream_is_no_terminal() -> None:
    """Python makes a closed standard stream (``2>&-``) None: no terminal, not a crash."""
    closed = io.StringIO()
    closed.close()
    detached = io.TextIOWrapper(io.BytesIO())
    detached.detach()
    assert not any(is_terminal(stream) for stream in (None, closed, detached, io.StringIO()))


def test_an_error_without_a_file_name_has_no_dangling_colon() -> None:
    """``store list > /dev/full`` said ``error: No space left on device:``; here stdout is the
    test's capture (no descriptor), so it is not called the output."""
    assert _describe(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    named = OSError(errno.EACCES, "Permission denied", "/srv/q")
    assert _describe(named) == "Permission denied: '/srv/q'"


@pytest.mark.parametrize("command", [["ingest", "talk.opus"], ["search", "cats"]])
def test_a_deleted_working_folder_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Run from a deleted folder, ``ingest`` died in CTranslate2's import ("Intel oneMKL FATAL
    ERROR", exit 2) after creating an empty collection; every command now says why, at once."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    store = tmp_path / "q"
    result = CliRunner().invoke(app, [*command, "--qdrant-path", str(store)])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error: the current folder no longer exists (deleted or moved away); cd to another folder "
        "and run the command again\n"
    )
    assert not store.exists()  # no collection was created


def test_version_and_help_still_answer_from_a_deleted_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert CliRunner().invoke(app, ["--version"]).exit_code == 0
    assert CliRunner().invoke(app, ["--help"]).exit_code == 0
    assert CliRunner().invoke(app, ["search", "--help"]).exit_code == 0  # reviewer 3
    # no model, absolute paths: as it worked before the check (reviewer 3)
    listed = CliRunner().invoke(app, ["store", "list", "--qdrant-path", str(tmp_path / "q")])
    assert listed.exit_code == 1 and "collection 'clasp_segments' does not exist" in listed.stderr
