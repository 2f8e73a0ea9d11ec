"""``search --media-id`` with a signed URL that matches nothing says so without the URL's
secret (tester 4 of session 30: ``X-Amz-Signature=...`` was printed), and ``--merge-gap nan``
is said to be no number (it was "less than or equal to 3600")."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clasp_ingest.cli import app
from tests.unit.retriever.conftest import SENTENCES
from tests.unit.retriever.test_cli_media_id_locale_s30 import remote_store  # noqa: F401 - a fixture

SIGNED = "https://cdn.example.org/ep9.mp3?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeefsecret"


def test_a_signed_media_id_that_matches_nothing_is_named_without_its_secret(remote_store: Path) -> None:  # noqa: F811
    args = ["search", SENTENCES[0], "--qdrant-path", str(remote_store), "--media-id", SIGNED]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "no stored item matches --media-id 'https://cdn.example.org/ep9.mp3?" in result.stderr
    assert "deadbeefsecret" not in result.output and "AKIAEXAMPLE" not in result.output


def test_a_merge_gap_that_is_no_number_is_said_so(tmp_path: Path) -> None:
    args = ["search", "q", "--qdrant-path", str(tmp_path / "q"), "--merge", "--merge-gap", "nan"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "'nan' is not a number" in result.stderr, result.output
