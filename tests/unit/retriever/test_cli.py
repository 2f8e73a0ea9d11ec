"""The ``search`` and ``store`` commands on real stores with the tiny-random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from clasp_ingest.types import MediaRef, Segment
from tests.unit.retriever.conftest import SENTENCES, SPOKEN, fill, fill_spoken

Talk = tuple[MediaRef, list[Segment]]


def test_search_and_store_commands(
    tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("CLASP_MODEL", "tiny-random")
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        fill(store, model)
    runner = CliRunner()
    result = runner.invoke(app, ["search", SENTENCES[7], "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    from tests.integration.cli.test_default_model import HIT_KEYS  # what a hit of --json holds

    assert len(rows) == 3 and set(rows[0]) == HIT_KEYS
    assert rows[0]["text"] is None  # no words until a --transcribe search stores them
    assert rows[0]["url"] == "file:///media/podcast.mp3#t=3,5.5" and rows[0]["score"] > 0.999
    table = runner.invoke(app, ["search", SENTENCES[7], "--k", "2"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "podcast.mp3#t=3,5.5" in table.stdout
    assert table.stdout.startswith(f"2 spans for {SENTENCES[7]!r}")
    one = runner.invoke(app, ["search", SENTENCES[7] + " and more" * 40, "--k", "1"])
    head = one.stdout.splitlines()[0]
    assert one.exit_code == 0 and head.startswith("1 span for '") and len(head) < 130, head  # the query cut

    def merged(gap: str) -> list[dict[str, float]]:
        args = ["search", SENTENCES[7], "--k", "2", "--media-id", "file:///media/podcast.mp3", "--json"]
        found = runner.invoke(app, [*args, "--merge", "--merge-gap", gap])
        assert found.exit_code == 0, found.output
        return [{"start_s": row["start_s"], "end_s": row["end_s"]} for row in json.loads(found.stdout)]

    assert [row["end_s"] - row["start_s"] for row in merged("0")] == [2.5, 2.5]  # segments 0.5 s apart
    # the two best hits (segments 1 and 3) in one span; no second span can be made, and the
    # other hits, which would only widen it, are left out (they chained whole talks into one)
    assert merged("100") == [{"start_s": 3.0, "end_s": 11.5}]
    nothing = runner.invoke(app, ["search", SENTENCES[7], "--media-id", "/media/nowhere.wav"])
    assert nothing.exit_code == 0 and nothing.stdout.startswith("no spans for")
    assert "no stored item matches --media-id '/media/nowhere.wav'" in nothing.stderr
    for invisible in ("\ufeff", "\u200b\u2060", "\x01"):  # a query file holding only a BOM...
        empty = runner.invoke(app, ["search", invisible])
        assert empty.exit_code == 1, empty.stderr
        assert empty.stderr.startswith("error: the query is empty; say what"), empty.stderr

    info = runner.invoke(app, ["store", "info"])
    expected = {"backend": "edge", "collection": "clasp_segments", "model": "tiny-random", "dim": model.dim}
    described = json.loads(info.stdout)
    assert described.pop("index")["hnsw"]["m"] == 32  # the settings the collection was made with
    assert described == {**expected, "points": 12, "spans": 12, "search": "exact"}
    exported = runner.invoke(app, ["store", "export", "--to", ":memory:"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout) == {
        "exported": 12,
        "collection": "clasp_segments",
        "target": ":memory:",
        "target_points": 12,
        "removed": 0,
    }


def test_store_export_to_a_folder(
    tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(model.model_id, model.dim, source="tiny-random")
        fill(store, model)
    monkeypatch.setenv("CLASP_EXPORT_API_KEY", "for-the-servers")  # not given: a folder takes none, unsaid
    runner = CliRunner()
    folder = tmp_path / "exported"
    for _ in range(2):  # a second export updates the copy: no duplicates
        done = runner.invoke(app, ["store", "export", "--to", str(folder), "--to-collection", "talks"])
        assert done.exit_code == 0, done.output
        assert not [r for r in caplog.records if "ignored" in r.getMessage()]
        assert json.loads(done.stdout) == {
            "exported": 12, "collection": "talks", "target": str(folder), "target_points": 12, "removed": 0,
        }  # fmt: skip
    with open_store(path=folder, collection="talks") as copy:  # a qdrant-client folder: found as such
        assert copy.backend == "client" and copy.identity is not None
        assert (copy.identity.model_id, copy.identity.dim, copy.identity.source) == (
            "tiny-random", model.dim, "tiny-random",
        )  # fmt: skip
    found = runner.invoke(app, ["search", SENTENCES[7], "--k", "1", "--json",
                                "--qdrant-path", str(folder), "--collection", "talks"])  # fmt: skip
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)[0]["url"] == "file:///media/podcast.mp3#t=3,5.5"

    for target, message in [
        (str(tmp_path / "q"), "embedded (Qdrant Edge) store"),
        ("localhost:6333", "http://localhost:6333"),
        ("ftp://example.org/q", "http:// or https://"),
    ]:
        refused = runner.invoke(app, ["store", "export", "--to", target])
        assert refused.exit_code == 1 and message in refused.stderr, refused.output
        assert refused.stderr.count("error:") == 1


@pytest.mark.slow
def test_search_transcribe_stores_words_that_later_searches_show(
    tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch, spoken_talk: Talk
) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("CLASP_MODEL", "tiny-random")
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        fill_spoken(store, model, spoken_talk)
    runner = CliRunner()
    plain = runner.invoke(app, ["search", SPOKEN[0], "--k", "1", "--json"])
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)[0]["text"] is None

    first = runner.invoke(app, ["search", SPOKEN[0], "--k", "1", "--json", "--transcribe"])
    assert first.exit_code == 0, first.output
    row = json.loads(first.stdout)[0]
    assert "photosynthesis" in row["text"].lower() and row["text_language"] == "en"

    later = runner.invoke(app, ["search", SPOKEN[0], "--k", "1", "--json"])  # no --transcribe: stored
    assert json.loads(later.stdout)[0]["text"] == row["text"]
    table = runner.invoke(app, ["search", SPOKEN[0], "--k", "2"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and f"\u201c{row['text']}\u201d" in table.stdout


def _said(result: Result) -> str:
    """A usage error's text without typer's box and line breaks."""
    return " ".join(result.output.replace("│", " ").split())


def test_out_of_range_numbers_and_empty_store_options_are_bad_usage(
    tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    with open_store(path=tmp_path / "q") as store:
        fill(store, model)
    runner = CliRunner()
    huge = "18446744073709551616"
    for option in ("--k", "--context", "--rerank", "--group"):
        result = runner.invoke(app, ["search", SENTENCES[7], option, huge])
        assert result.exit_code == 2 and "less than or equal to" in _said(result), (option, result.output)
        assert "OverflowError" not in result.output
    empty = {
        ("search", SENTENCES[7], "--collection", ""): "--collection' / '-c",  # -c as ingest's
        ("search", SENTENCES[7], "--qdrant-path", ""): "--qdrant-path",
        ("store", "info", "-c", ""): "--collection' / '-c",
        ("store", "list", "--qdrant-path", ""): "--qdrant-path",
        ("store", "info", "--qdrant-url", ""): "--qdrant-url",
        ("store", "export", "--to", "copy", "--to-collection", ""): "--to-collection",
        ("store", "export", "--to", "copy", "--qdrant-path", ""): "--qdrant-path",
    }
    for args, option in empty.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2 and f"'{option}': the value is empty" in _said(result), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]  # nothing made in the current folder
    big = runner.invoke(app, ["store", "export", "--to", "copy", "--batch-size", huge])
    assert big.exit_code == 2 and "less than or equal to 65536" in _said(big)


def test_a_malformed_qdrant_url_is_one_error_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["store", "info", "--qdrant-url", "http://127.0.0.1:99999"])
    assert bad.exit_code == 1 and bad.stderr == (
        "error: the Qdrant URL 'http://127.0.0.1:99999' is not valid (Port out of range 0-65535); give "
        "the server's URL, e.g. http://localhost:6333 (--qdrant-url, CLASP_QDRANT_URL)\n"
    )
    monkeypatch.setenv("CLASP_QDRANT_URL", "http://qdrant host:6333")
    env = runner.invoke(app, ["search", "hi"])
    assert env.exit_code == 1 and env.stderr.startswith("error: the Qdrant URL 'http://qdrant host:6333'")
    assert env.stderr.count("\n") == 1 and "CLASP_QDRANT_URL" in env.stderr


def test_a_span_that_cannot_be_transcribed_is_a_warning_line(
    tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``search --transcribe`` words its warnings as the other commands do (it printed the log
    record: ``WARNING clasp_ingest.retriever.words: ...``)."""
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(model.model_id, model.dim, source="tiny-random")
        fill(store, model)  # spans of files that are not on this machine
    found = CliRunner().invoke(app, ["search", SENTENCES[7], "--k", "1", "--transcribe"])
    assert found.exit_code == 0, found.output
    assert found.stderr.startswith("warning: no words for file:///media/podcast.mp3 "), found.stderr
