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


def test_store_delete_missing_ok_deletes_the_others(tmp_path: Path) -> None:
    """One target already gone stopped every deletion (exit 1): a clean-up script could not run
    twice. ``--missing-ok`` warns for it and deletes the rest; without it, nothing changes."""
    with EdgeStore(tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
        for name, seed in (("a", 1), ("b", 2)):
            item = make_media(f"file:///talks/{name}.wav", "v1", 2, seed=seed)
            store.write_media(item.ref, MODEL, item.batches())
    where = ["--qdrant-path", str(tmp_path / "q"), "--yes"]
    runner = CliRunner()
    strict = runner.invoke(app, ["store", "delete", "file:///talks/a.wav", "file:///talks/gone.wav", *where])
    assert strict.exit_code == 1 and "'file:///talks/gone.wav' matches no media item" in strict.stderr
    targets = ["file:///talks/a.wav", "file:///talks/gone.wav", "--missing-ok"]
    lenient = runner.invoke(app, ["store", "delete", *targets, *where])
    assert lenient.exit_code == 0, lenient.output
    assert lenient.stderr.startswith("warning: 'file:///talks/gone.wav' matches no media item")
    assert [d["source"] for d in json.loads(lenient.stdout)["deleted"]] == ["file:///talks/a.wav"]
    again = runner.invoke(app, ["store", "delete", *targets, *where])
    assert again.exit_code == 0 and json.loads(again.stdout) == {"deleted": [], "points": 0}
    with EdgeStore(tmp_path / "q") as store:
        assert [m.source for m in store.media()] == ["file:///talks/b.wav"]


def test_a_store_open_elsewhere_exits_75_not_1(tmp_path: Path) -> None:
    """A monitor's ``store info`` while the nightly ingest holds the store (or the ingest while
    the monitor does) exited 1, as a damaged store does: a script could not tell "busy, try
    later" from "broken". Now 75 (``EX_TEMPFAIL``), with the same one error line."""
    from clasp_ingest.exitcodes import EXIT_BUSY

    item = make_media("file:///talks/a.wav", "v1", 2, seed=1)
    with EdgeStore(tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(item.ref, MODEL, item.batches())
        where = ["--qdrant-path", str(tmp_path / "q")]
        for command in (["store", "info"], ["store", "list"], ["search", "hello"]):
            busy = CliRunner().invoke(app, [*command, *where])
            assert busy.exit_code == EXIT_BUSY == 75, (command, busy.output)
            said = busy.stderr
            assert said.startswith("error: the embedded Qdrant store") and "another process" in said
    assert CliRunner().invoke(app, ["store", "info", *where]).exit_code == 0
