"""``ingest``'s number options, bucket URLs without a bucket, URLs no connector reads, and a run
that lists nothing (tester 4, session 30)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clasp_ingest.connectors import LocalConnector
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app
from clasp_ingest.errors import ConnectorError


def _ingest(*args: str) -> Result:
    return CliRunner().invoke(app, ["ingest", *args, "--model", "tiny-random", "--device", "cpu", "--json"])


def _said(result: Result) -> str:
    """A usage error's text without typer's box and line breaks."""
    return " ".join(result.output.replace("│", " ").split())


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--download-deadline", "nan", "'nan' is not a number"),  # it said "greater than or equal to 0.001"
        ("--download-deadline", "inf", "inf is not in the range 0.001<=x<=604800"),  # a traceback per URL
        ("--download-deadline", "1e10", "1e10 is not in the range 0.001<=x<=604800"),
        ("--download-deadline", "0", "0 is not in the range 0.001<=x<=604800"),
        ("--download-deadline", "soon", "'soon' is not a number"),
        ("--min-download-rate", "nan", "'nan' is not a number"),
        ("--min-download-rate", "inf", "'inf' is not a finite number"),
        ("--min-download-rate", "-1", "-1 is not in the range x>=0"),
    ],
)
def test_number_options_say_what_is_wrong(tmp_path: Path, option: str, value: str, said: str) -> None:
    run = _ingest("talk.wav", option, value, "--qdrant-path", str(tmp_path / "q"))
    assert run.exit_code == 2 and f"Invalid value for '{option}': {said}" in _said(run), run.output
    assert not (tmp_path / "q").exists()


def test_help_shows_the_deadline_range() -> None:
    shown = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    assert "SECONDS [0.001<=x<=604800]" in shown.output and "BYTES_PER_S [x>=0]" in shown.output


@pytest.mark.parametrize("source", ["s3://", "gs:///", "S3A://", "s3:///talks/", "gs:///a/b.mp3"])
def test_a_bucket_url_without_a_bucket_is_bad_usage(tmp_path: Path, source: str) -> None:
    """``s3://`` said "ValueError: Cannot traverse all of S3"."""
    run = _ingest(source, "--qdrant-path", str(tmp_path / "q"))
    scheme = source.split(":")[0]
    assert run.exit_code == 2 and f"{source!r} names no bucket" in _said(run), run.output
    assert f"give {scheme}://BUCKET or {scheme}://BUCKET/PREFIX" in _said(run)


@pytest.mark.parametrize(
    "source", ["ftp://127.0.0.1:1/x.wav", "rtmp://host/live", "data:audio/wav;base64,AAAA"]
)
def test_a_url_no_connector_reads_is_said_to_be_one(source: str) -> None:
    """It was "... is neither a file, a folder nor a glob that exists; check the path"."""
    scheme = source.split(":")[0]
    with pytest.raises(
        ConnectorError, match=rf"is a URL with the scheme '{scheme}', which clasp-ingest does not"
    ):
        list(LocalConnector(source).discover())


def test_such_a_url_keeps_its_password_hidden() -> None:
    connector = LocalConnector("ftp://me:hunter2@host/x.wav")
    with pytest.raises(ConnectorError) as error:
        list(connector.discover())
    assert "hunter2" not in str(error.value) and "hunter2" not in connector.source
    with pytest.raises(ConnectorError, match="neither a file, a folder nor a glob"):  # a path: as before
        list(LocalConnector("notes:1.wav").discover())


def test_a_run_that_lists_nothing_makes_no_store_folder(tmp_path: Path) -> None:
    """The folder and its lock file were left by a mistyped path (exit 1)."""
    run = _ingest(str(tmp_path / "typo.wav"), "ftp://h/x.wav", "--qdrant-path", str(tmp_path / "new"))
    assert run.exit_code == 1 and "no source could be listed" in run.stderr, run.output
    failed = json.loads(run.stdout)["media_failed"]
    assert [item["uri"] for item in failed] == [str(tmp_path / "typo.wav"), "ftp://h/x.wav"]
    assert not (tmp_path / "new").exists()


def test_a_new_store_gets_what_the_sources_list_once_listed(
    tmp_path: Path, speech_sources: dict[str, Path]
) -> None:
    """A new store's sources are listed before it is made; the run goes on with those items, and
    a source that could not be listed is still reported (exit 3)."""
    folder = speech_sources["one.wav"].parent
    store = ["--qdrant-path", str(tmp_path / "new")]
    run = _ingest(str(speech_sources["one.wav"]), str(tmp_path / "typo.wav"), *store)
    summary = json.loads(run.stdout)
    assert run.exit_code == 3 and summary["media_ok"] == 1 and len(summary["media_failed"]) == 1, run.output
    again = _ingest(str(folder), "--prune", *store)
    assert again.exit_code == 0 and json.loads(again.stdout)["media_skipped"] == 1, again.output


def test_a_file_url_without_a_path_is_bad_usage(tmp_path: Path) -> None:
    """``file://$DIR`` with DIR unset ingested the working folder, recursively (reviewer 3)."""
    run = _ingest("file://", "--qdrant-path", str(tmp_path / "q"))
    assert run.exit_code == 2 and "'file://' names no path" in _said(run), run.output
    assert not (tmp_path / "q").exists()


def test_a_store_named_with_a_quoted_tilde_is_not_taken_for_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--qdrant-path '~/store'`` (open_store expands it) of a store that exists is opened before
    the listing, as any existing store (reviewer 3: it was listed first, as a new one)."""
    from clasp_ingest.cli_ingest import _listed_before_a_new_store
    from clasp_ingest.config import Settings
    from clasp_ingest.pipeline import PipelineOptions

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "store").mkdir()
    missing = LocalConnector(str(tmp_path / "typo.wav"))
    args = {"qdrant_path": Path("~/store"), "qdrant_url": None}
    connectors, unlisted = _listed_before_a_new_store([missing], Settings(), args, PipelineOptions())
    assert connectors == [missing] and unlisted == []  # not listed here: the pipeline lists it
    args = {"qdrant_path": Path("~/new"), "qdrant_url": None}
    connectors, unlisted = _listed_before_a_new_store([missing], Settings(), args, PipelineOptions())
    assert connectors == [] and [source for source, _ in unlisted] == [str(tmp_path / "typo.wav")]
