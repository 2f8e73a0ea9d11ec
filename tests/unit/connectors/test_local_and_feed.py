"""Connectors that need no network: local folders/globs, feed files, helpers."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from clasp_ingest.connectors import (
    Connector,
    FeedConnector,
    FsspecConnector,
    LocalConnector,
    MediaTooLargeError,
    OpenOptions,
    connector_for,
)
from clasp_ingest.connectors.base import copy_limited, is_media_name
from clasp_ingest.connectors.feed import feed_language
from clasp_ingest.connectors.local import local_fingerprint
from clasp_ingest.connectors.remote import filesystem_for, remote_fingerprint

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import media_id_for
from tests.integration.connectors.helpers import Episode, rss, write_tone


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_tone(tmp_path / "b.wav")
    write_tone(tmp_path / "sub" / "a.WAV")
    write_tone(tmp_path / "sub" / "deeper" / "c.wav")
    (tmp_path / "sub" / "notes.txt").write_text("x")
    return tmp_path


def test_folder_is_recursive_sorted_and_media_only(folder: Path) -> None:
    refs = list(LocalConnector(folder).discover())
    assert [Path(r.uri).name for r in refs] == ["b.wav", "a.WAV", "c.wav"]
    assert all(r.uri.startswith("file:///") for r in refs)
    assert refs[0].media_id == media_id_for((folder / "b.wav").resolve().as_uri())
    stat = (folder / "b.wav").stat()
    assert refs[0].fingerprint == f"{stat.st_size}-{stat.st_mtime_ns}"
    assert refs[0].title == "b"
    assert isinstance(LocalConnector(folder), Connector)


def test_glob_and_single_file(folder: Path) -> None:
    assert [r.title for r in LocalConnector(str(folder / "sub" / "**" / "*.wav")).discover()] == ["c"]
    assert [r.title for r in LocalConnector(folder / "b.wav").discover()] == ["b"]


def test_hidden_files_under_a_folder_are_skipped_unless_named(tmp_path: Path) -> None:
    root = tmp_path / ".archive"  # the source itself may live in a hidden folder
    write_tone(root / "talk.wav")
    shadow = write_tone(root / "._talk.wav")  # macOS AppleDouble shadow: not audio on Linux
    write_tone(root / ".Trash" / "old.wav")
    assert [r.title for r in LocalConnector(root).discover()] == ["talk"]
    assert [r.title for r in LocalConnector(shadow).discover()] == ["._talk"]


def test_symbolic_links_are_followed_and_broken_ones_fail_alone(tmp_path: Path) -> None:
    from clasp_ingest.connectors.base import LISTING_ERROR

    library, elsewhere = tmp_path / "library", tmp_path / "elsewhere"
    write_tone(library / "talk.wav")
    write_tone(elsewhere / "linked" / "guest.wav")
    (library / "guests").symlink_to(elsewhere / "linked")  # a linked folder is entered
    (library / "guests" / "up").symlink_to(library)  # a link back up is entered once only
    (library / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    (library / "loop.mp3").symlink_to("loop.mp3")
    (library / "notes.txt").symlink_to(tmp_path / "nothing.txt")  # no media name: not listed
    refs = {Path(r.uri).name: r for r in LocalConnector(library).discover()}
    assert sorted(refs) == ["gone.wav", "guest.wav", "loop.mp3", "talk.wav"]
    assert refs["guest.wav"].uri == (elsewhere / "linked" / "guest.wav").as_uri()  # resolved
    assert "broken symbolic link" in refs["gone.wav"].metadata[LISTING_ERROR]
    assert "deleted.wav" in refs["gone.wav"].metadata[LISTING_ERROR]
    assert "loops" in refs["loop.mp3"].metadata[LISTING_ERROR]
    assert LISTING_ERROR not in refs["talk.wav"].metadata
    with pytest.raises(ConnectorError, match=r"broken symbolic link .*fix or remove the link"):
        list(LocalConnector(library / "gone.wav").discover())
    globbed = {Path(r.uri).name for r in LocalConnector(str(library / "*.wav")).discover()}
    assert globbed == {"gone.wav", "talk.wav"}


def test_existing_names_with_glob_characters_are_taken_literally(tmp_path: Path) -> None:
    course = tmp_path / "course [2019]"
    talk = write_tone(course / "Talk [dQw4w9WgXcQ].wav")
    write_tone(course / "Q&A *live*?.wav")
    write_tone(tmp_path / "course 1.wav")  # what "course [2019]" would match as a pattern's prefix
    assert [r.title for r in LocalConnector(talk).discover()] == ["Talk [dQw4w9WgXcQ]"]
    assert [r.title for r in LocalConnector(course).discover()] == ["Q&A *live*?", "Talk [dQw4w9WgXcQ]"]
    # a name that does not exist is still a pattern
    assert [r.title for r in LocalConnector(tmp_path / "course [0-9].wav").discover()] == ["course 1"]
    assert [r.title for r in LocalConnector(tmp_path / "nothing [x].wav").discover()] == []


def test_fingerprint_changes_on_rewrite_media_id_does_not(folder: Path) -> None:
    path = folder / "b.wav"
    (before,) = LocalConnector(path).discover()
    write_tone(path, seconds=0.7)
    os.utime(path, ns=(before_ns := path.stat().st_mtime_ns + 10**9, before_ns))
    (after,) = LocalConnector(path).discover()
    assert (after.media_id, after.uri) == (before.media_id, before.uri)
    assert after.fingerprint != before.fingerprint


def test_open_yields_the_path_and_reports_vanished_files(folder: Path) -> None:
    connector = LocalConnector(folder)
    ref = next(iter(connector.discover()))
    with connector.open(ref) as local:
        assert Path(local) == (folder / "b.wav").resolve()
    (folder / "b.wav").unlink()
    with pytest.raises(ConnectorError, match="disappeared"), connector.open(ref):
        pass


def test_an_empty_source_is_refused_not_the_current_folder(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from clasp_ingest.cli import app
    from clasp_ingest.errors import ConfigError

    monkeypatch.chdir(folder)  # holds media: "" would have listed them
    with pytest.raises(ConfigError, match="a source is empty"):
        connector_for("")
    run = CliRunner().invoke(app, ["ingest", "", "--qdrant-path", str(folder / "q")])
    assert run.exit_code == 2 and "a SOURCE is empty" in run.output, run.output
    assert not (folder / "q").exists()


def test_missing_location_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="nowhere"):
        list(LocalConnector(tmp_path / "nowhere").discover())


def test_feed_file_episodes(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "ep.wav")
    feed = tmp_path / "feed.xml"
    feed.write_text(
        rss(
            "Local Show",
            [
                Episode("First", audio.as_uri(), audio.stat().st_size),
                Episode("First again", audio.as_uri(), audio.stat().st_size),  # duplicate enclosure
                Episode("Text", (tmp_path / "x.txt").as_uri(), 1, mime="text/plain"),
            ],
        )
    )
    refs = list(FeedConnector(str(feed)).discover())
    assert [r.title for r in refs] == ["First"]
    assert refs[0].metadata["feed_title"] == "Local Show"
    # a local enclosure's version is the file's own (size-mtime), as a folder's file: a rewrite is
    # seen, and search can check the file before cutting its spans
    assert refs[0].fingerprint == local_fingerprint(audio)
    assert "language" not in refs[0].metadata  # the feed declares none


def test_atom_html_titles_become_text_and_relative_enclosures_resolve(tmp_path: Path) -> None:
    feed = tmp_path / "feed.atom"
    feed.write_text(
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://cdn.example/pod/">'
        '<title type="html">&lt;i&gt;Show&lt;/i&gt; &amp;amp; co</title>'
        '<entry><title type="html">&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;Part&lt;/b&gt;  1</title>'
        + '<content type="html">'
        + "&lt;p&gt;notes &lt;a href='x'&gt;link&lt;/a&gt;&lt;/p&gt;" * 50
        + "</content>"
        '<link rel="enclosure" href="ep1.mp3" type="audio/mpeg" length="9"/></entry>'
        '<entry><title>I &lt;3 cats</title><link rel="enclosure" href="../ep2.m4a" type="audio/mp4"/></entry>'
        "</feed>"
    )
    refs = list(FeedConnector(str(feed)).discover())
    assert [(r.title, r.uri) for r in refs] == [
        ("Part 1", "https://cdn.example/pod/ep1.mp3"),  # markup and the script's body dropped
        ("I <3 cats", "https://cdn.example/ep2.m4a"),  # a text title is kept as it is
    ]
    assert refs[0].metadata["feed_title"] == "Show & co"


def test_feed_language_becomes_each_episodes_language(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "ep.wav")
    feed = tmp_path / "feed.xml"
    feed.write_text(rss("Émission", [Episode("Un", audio.as_uri(), audio.stat().st_size)], language="fr-CA"))
    (ref,) = FeedConnector(str(feed)).discover()
    assert ref.metadata["language"] == "fr"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [("en-us", "en"), ("EN", "en"), ("pt_BR", "pt"), ("haw", "haw"), ("", None), (None, None),
     ("english", None), ("e1", None), ("x-klingon", None)],
)  # fmt: skip
def test_feed_language_is_the_primary_subtag(tag: str | None, expected: str | None) -> None:
    assert feed_language(tag) == expected


def test_connector_for_dispatch_without_network(folder: Path) -> None:
    assert isinstance(connector_for(str(folder)), LocalConnector)
    assert isinstance(connector_for(str(folder / "*.wav")), LocalConnector)
    assert isinstance(connector_for((folder / "b.wav").as_uri()), LocalConnector)
    assert isinstance(connector_for("s3://bucket/prefix"), FsspecConnector)
    assert isinstance(connector_for("https://example.invalid/show/feed.xml"), FeedConnector)
    assert isinstance(connector_for("https://example.invalid/a.mp3"), FsspecConnector)


def test_missing_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(protocol: str) -> None:
        raise ImportError(f"Install gcsfs to access {protocol}")

    monkeypatch.setattr("fsspec.core.get_filesystem_class", refuse)
    with pytest.raises(ImportError, match=r"pip install 'clasp-ingest\[gcs\]'"):
        filesystem_for("gs://bucket/x.wav")


def test_remote_fingerprint_prefers_etag() -> None:
    assert remote_fingerprint("u", {"ETag": '"abc"', "size": 3}) == "etag:abc"
    assert remote_fingerprint("u", {"Last-Modified": "Mon", "size": 3}) == "last-modified:Mon|size:3"
    with pytest.raises(ConnectorError, match="ETag or Last-Modified"):
        remote_fingerprint("u", {"name": "u"})


def test_copy_limited_and_options() -> None:
    sink = io.BytesIO()
    assert copy_limited(io.BytesIO(b"x" * 10), sink, "u", OpenOptions(max_bytes=10, chunk_bytes=3)) == 10
    with pytest.raises(MediaTooLargeError):
        copy_limited(io.BytesIO(b"x" * 11), io.BytesIO(), "u", OpenOptions(max_bytes=10, chunk_bytes=3))
    with pytest.raises(ValueError, match="max_bytes"):
        OpenOptions(max_bytes=0)
    assert is_media_name("https://h/a/b.MP3?token=1") and not is_media_name("https://h/a/b.html")
