"""``store delete`` of a signed URL that matches nothing does not show its credentials (tester 4's
bug 8, session 30): README says they are never shown, in errors either."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.store import open_store
from tests.unit.store.conftest import DIM, MODEL


def test_a_signed_url_that_matches_nothing_is_named_redacted(tmp_path: Path) -> None:
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
    signed = "https://cdn.example.com/ep1.mp3?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeefsecret"
    run = CliRunner().invoke(app, ["store", "delete", signed, "--yes", "--qdrant-path", str(tmp_path / "q")])
    assert run.exit_code == 1 and "matches no media item stored in 'clasp_segments'" in run.stderr, run.output
    assert "deadbeefsecret" not in run.output and "AKIAEXAMPLE" not in run.output
    assert (
        "'https://cdn.example.com/ep1.mp3?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED'" in run.stderr
    )
