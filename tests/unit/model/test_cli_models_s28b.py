"""``models list --model-dir ""`` and ``models import --out ""`` are bad usage (exit 2), not the
current folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app


@pytest.mark.parametrize(
    "args", [["models", "list", "--model-dir", ""], ["models", "import", "x.pt", "--out", ""]]
)
def test_an_empty_folder_option_is_bad_usage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2, result.output
    assert f"'{args[-2]}" in said and "the value is empty; give a folder" in said
    assert list(tmp_path.iterdir()) == []
