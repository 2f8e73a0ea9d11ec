"""The store commands take what a monitoring script passes to every command: ``--json`` (``info``,
``delete`` and ``export`` print JSON anyway; the option was "No such option", exit 2) and ``-c``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.store import EdgeStore
from tests.unit.store.conftest import DIM, MODEL, make_media


def test_store_commands_take_json_and_c(tmp_path: Path) -> None:
    item = make_media("file:///talks/a.wav", "v1", 3, seed=1)
    with EdgeStore(tmp_path / "q", "talks") as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(item.ref, MODEL, item.batches())
    where = ["--qdrant-path", str(tmp_path / "q"), "-c", "talks", "--json"]
    runner = CliRunner()
    info = runner.invoke(app, ["store", "info", *where])
    assert info.exit_code == 0 and json.loads(info.stdout)["spans"] == 3, info.output
    listed = runner.invoke(app, ["store", "list", *where])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 1, listed.output
    export = runner.invoke(app, ["store", "export", "--to", str(tmp_path / "copy"), *where])
    assert export.exit_code == 0 and json.loads(export.stdout)["exported"] == 3, export.output
    deleted = runner.invoke(app, ["store", "delete", "file:///talks/a.wav", "--yes", *where])
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["points"] == 3, deleted.output
