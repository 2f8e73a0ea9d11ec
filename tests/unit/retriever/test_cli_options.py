"""How the ``search`` and ``store`` commands read their options and the ``CLASP_*`` store
variables: which store they open, what an empty value means, how they print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from tests.unit.retriever.conftest import LECTURE, SENTENCES, fill, media_ref, spans_of

#: A server nobody runs (unit tests have no sockets: opening it fails the test).
NO_SERVER = "http://127.0.0.1:9"


def _said(result: Result) -> str:
    """A usage error's text without typer's box and line breaks."""
    return " ".join(result.output.replace("│", " ").split())


@pytest.fixture
def filled(tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded store with the lecture and the podcast; the current folder is ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        fill(store, model)
    return tmp_path / "q"


def test_a_store_option_beats_the_environment(filled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("CLASP_QDRANT_URL", NO_SERVER)
    store = ["--qdrant-path", str(filled)]
    found = runner.invoke(app, ["search", SENTENCES[7], "--k", "1", "--json", *store])
    assert found.exit_code == 0 and json.loads(found.stdout)[0]["score"] > 0.999, found.output
    listed = runner.invoke(app, ["store", "list", "--json", *store])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 2, listed.output
    info = runner.invoke(app, ["store", "info", *store])
    assert info.exit_code == 0 and json.loads(info.stdout)["backend"] == "edge", info.output
    deleted = runner.invoke(app, ["store", "delete", LECTURE, "--yes", *store])
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["points"] == 6, deleted.output

    monkeypatch.delenv("CLASP_QDRANT_URL")
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(filled))
    memory = runner.invoke(app, ["store", "info", "--qdrant-url", ":memory:"])  # a store of its own
    assert memory.exit_code == 1 and "does not exist in the client store ':memory:'" in memory.stderr, (
        memory.output
    )
    both = runner.invoke(app, ["store", "info", *store, "--qdrant-url", NO_SERVER])
    said = " ".join(both.stderr.replace("│", " ").split())
    assert both.exit_code == 2 and "give --qdrant-path or --qdrant-url, not both" in said, both.output


@pytest.mark.parametrize(
    ("variable", "remedy"),
    [
        ("CLASP_QDRANT_URL", "give the server's URL"),
        ("CLASP_QDRANT_PATH", "give a folder"),
        ("CLASP_MODEL", "give a model preset or folder, or unset it"),  # said: "directory '' has no config"
    ],
)
def test_an_empty_store_variable_is_refused_naming_it(
    filled: Path, monkeypatch: pytest.MonkeyPatch, variable: str, remedy: str
) -> None:
    monkeypatch.setenv(variable, "")
    for args in (["store", "info"], ["store", "list", "--qdrant-path", str(filled)], ["search", "x"]):
        run = CliRunner().invoke(app, args)
        assert run.exit_code == 1, run.output
        assert run.stderr.startswith(f"error: {variable}='': ") and remedy in run.stderr, run.stderr
    assert sorted(p.name for p in filled.parent.iterdir()) == ["q"]  # nothing made in the current folder


def test_empty_targets_ids_and_models_are_bad_usage(filled: Path) -> None:
    store = ["--qdrant-path", str(filled)]
    empty = {
        ("store", "delete", "", "--yes", *store): "a target is empty (an unset variable?)",
        ("store", "delete", LECTURE, " ", "--yes", *store): "a target is empty (an unset variable?)",
        ("store", "export", "--to", "", *store): "'--to': the value is empty",
        ("search", SENTENCES[7], "--media-id", "", *store): "'--media-id': the value is empty",
        ("search", SENTENCES[7], "--model", "", *store): "the value is empty",
    }
    for args, said in empty.items():
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 2 and said in _said(result), (args, result.output)
    with open_store(path=filled) as store_:
        assert store_.count() == 12  # nothing deleted
    assert sorted(p.name for p in filled.parent.iterdir()) == ["q"]  # nothing exported here


def test_one_item_and_one_span_read_singular(
    tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref(LECTURE)
        store.write_media(ref, model.model_id, [(spans_of(ref, 1), model.encode_text(SENTENCES[:1]))])
    listed = CliRunner().invoke(app, ["store", "list"])
    assert listed.stdout.splitlines()[-1] == "1 media item, 1 searchable span in 'clasp_segments'"
    asked = CliRunner().invoke(app, ["store", "delete", LECTURE])  # stdin is no terminal
    said = f"would delete 1 media item ({media_ref(LECTURE).uri}); add --yes to delete it\n"
    assert asked.exit_code == 1 and said in asked.stderr


def test_human_output_survives_a_stdout_that_cannot_encode_it(
    filled: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(filled))
    runner = CliRunner(charset="latin-1")  # a latin-1 terminal (PYTHONIOENCODING=latin-1)
    found = runner.invoke(app, ["search", SENTENCES[7], "--k", "1"])
    assert found.exit_code == 0, found.output
    assert "00:00:03.000\\u201300:00:05.500" in found.stdout  # the en dash, escaped
    listed = runner.invoke(app, ["store", "list"])
    assert listed.exit_code == 0 and "2 media items" in listed.stdout, listed.output
    # --json is ASCII with JSON's own escapes: Python's \U0001f600 escapes were not valid JSON
    with open_store(path=filled) as store:
        uri = "file:///media/caf\u00e9 \U0001f600.wav"
        ref = media_ref(uri)
        store.write_media(ref, model.model_id, [(spans_of(ref, 1), model.encode_text([SENTENCES[7]]))])
    for args in (["search", SENTENCES[7], "--k", "3", "--json"], ["store", "list", "--json"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0 and out.stdout.isascii(), out.output
        assert "caf\u00e9 \U0001f600" in json.dumps(json.loads(out.stdout), ensure_ascii=False)


def test_only_a_stdout_whose_reader_left_is_a_broken_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 141 is for ``| head``; a BrokenPipeError of a socket or a child's pipe is an error."""
    import os

    from clasp_ingest.cli import _stdout_gone

    for reader_left in (False, True):
        read_end, write_end = os.pipe()
        if reader_left:
            os.close(read_end)
        with os.fdopen(write_end, "w") as stdout:
            monkeypatch.setattr("sys.stdout", stdout)
            assert _stdout_gone() is reader_left
        if not reader_left:
            os.close(read_end)


def test_store_delete_finds_a_remote_item_by_the_url_as_typed(
    tmp_path: Path, model: AudioTextEncoder
) -> None:
    """Remote items are stored percent-encoded; the URL as typed ('café talk') deleted nothing."""
    stored = "https://h.example/media/caf%C3%A9%20talk.opus"
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref(stored, fingerprint="etag:1")
        store.write_media(ref, model.model_id, [(spans_of(ref, 2), model.encode_text(SENTENCES[:2]))])
    typed = "https://h.example/media/café talk.opus"
    deleted = CliRunner().invoke(
        app, ["store", "delete", typed, "--yes", "--qdrant-path", str(tmp_path / "q")]
    )
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["points"] == 2, deleted.output
