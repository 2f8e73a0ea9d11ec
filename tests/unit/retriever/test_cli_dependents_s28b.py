"""``search`` refuses, as bad usage (exit 2) before the store opens, an option given without
the one it works with (no silent run without translations or merged spans), and an empty
``--whisper-model``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from tests.unit.retriever.conftest import SENTENCES, fill


def _said(result: Result) -> str:
    """A usage error's text without typer's box and line breaks."""
    return " ".join(result.output.replace("│", " ").split())


@pytest.fixture
def filled(tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded store with the lecture and the podcast."""
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        fill(store, model)
    return tmp_path / "q"


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--translate"], "'--translate': --translate needs --transcribe (or --rerank"),
        (["--merge-gap", "2"], "'--merge-gap': --merge-gap needs --merge"),
        (["--merge-gap", "0.5"], "'--merge-gap': --merge-gap needs --merge"),  # the default, but given
        (
            ["--transcribe", "--whisper-model", ""],
            "'--whisper-model': the value is empty; give 'whisper-base'",
        ),
    ],
)
def test_an_option_without_its_partner_or_empty_is_bad_usage(
    filled: Path, given: list[str], said: str
) -> None:
    result = CliRunner().invoke(app, ["search", SENTENCES[7], "--qdrant-path", str(filled), *given])
    assert result.exit_code == 2, result.output
    assert said in _said(result)


def test_merge_gap_with_merge_still_searches(filled: Path) -> None:
    args = ["search", SENTENCES[7], "--qdrant-path", str(filled), "--merge", "--merge-gap", "2", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and json.loads(result.stdout), result.output
