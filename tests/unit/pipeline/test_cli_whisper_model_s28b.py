"""``ingest --whisper-model ""`` is bad usage (exit 2) naming the option, before anything runs
(it was an exit 1 naming the library's ``TranscriberOptions.model``)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clasp_ingest.cli import app


def test_an_empty_whisper_model_is_bad_usage_naming_the_option(tmp_path: Path) -> None:
    args = ["ingest", str(tmp_path / "none.wav"), "--qdrant-path", str(tmp_path / "q"), "--transcribe"]
    result = CliRunner().invoke(app, [*args, "--whisper-model", ""])
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, result.output
    assert "'--whisper-model': the value is empty; give 'whisper-base'" in said
    assert list(tmp_path.iterdir()) == []  # no store made
