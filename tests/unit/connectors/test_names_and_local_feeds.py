"""Names without the network: which listed names are media, the file name a Content-Disposition
header gives, and where a local feed's relative enclosures are recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from clasp_ingest.connectors import FeedConnector, LocalConnector
from clasp_ingest.connectors.base import is_media_name
from clasp_ingest.connectors.http import disposition_filename
from clasp_ingest.connectors.local import local_uri

from tests.integration.connectors.helpers import Episode, rss, write_tone

#: MPEG transport/program stream names that media/decode.py reads as such, raw AC-3, Sun audio.
_ADDED = ("rec.m2t", "dvb.tp", "dvb2.trp", "prog.m2p", "cam.tod", "dolby.ac3", "sun.au")


def test_a_folder_lists_every_stream_name_decode_reads(tmp_path: Path) -> None:
    for name in _ADDED:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "go.mod").write_text("module x")  # '.mod' is a camcorder's name and Go's: not listed
    listed = {Path(ref.uri).name for ref in LocalConnector(tmp_path).discover()}
    assert listed == set(_ADDED)


@pytest.mark.parametrize(
    ("url", "media"),
    [("https://www.abc.net.au", False), ("https://www.abc.net.au/", False),
     ("https://www.abc.net.au/radio/ep.au", True), ("s3://bucket/talk.ac3", True),
     ("https://h/a/b.MP3?token=1", True), ("https://h/page.html", False)],
)  # fmt: skip
def test_a_urls_host_is_not_its_file_name(url: str, media: bool) -> None:
    # '.au' is a media suffix now, and Australia's top-level domain: a site is no audio file
    assert is_media_name(url) is media


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="episode-7.mp3"', "episode-7.mp3"),
        ("attachment; filename=plain.mp3", "plain.mp3"),
        # RFC 6266: filename* wins over filename, whatever the order
        ("attachment; filename=\"fallback.mp3\"; filename*=UTF-8''%E2%82%AC%20rates.mp3", "€ rates.mp3"),
        ("attachment; filename*=UTF-8''caf%C3%A9.mp3; filename=\"cafe.mp3\"", "café.mp3"),
        ("attachment; filename*=iso-8859-1'en'%A3%20rates.mp3", "£ rates.mp3"),
        ('attachment; filename="Ã©pisode.mp3"', "épisode.mp3"),  # raw UTF-8, read by http.client as Latin-1
        # folders, control and bidi characters go; nothing left: no name
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="C:\\\\Users\\\\x\\\\talk.mp3"', "talk.mp3"),
        ("attachment; filename*=UTF-8''a%0D%0Ab%E2%80%AEc%00.mp3", "abc.mp3"),
        ('attachment; filename="  two   spaces .mp3 "', "two spaces .mp3"),
        ('attachment; filename=".."', None),
        ("attachment; filename=", None),
        ("inline", None),
        ("", None),
    ],
)
def test_disposition_file_names_are_read_and_made_safe(header: str, name: str | None) -> None:
    assert disposition_filename(header) == name


def test_a_relative_local_feed_records_absolute_enclosures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = write_tone(tmp_path / "lfeed" / "eps" / "one.wav")
    (tmp_path / "lfeed" / "feed.xml").write_text(rss("Local", [Episode("One", "eps/one.wav", 1)]))
    folder_uri = next(iter(LocalConnector(tmp_path / "lfeed").discover())).uri
    uris = []
    for cwd, feed in ((tmp_path, "lfeed/feed.xml"), (tmp_path / "lfeed", "feed.xml")):
        monkeypatch.chdir(cwd)
        (ref,) = FeedConnector(feed).discover()
        uris.append(ref.uri)
    # before: 'lfeed/eps/one.wav' and 'eps/one.wav', two items for one episode
    assert uris == [local_uri(audio), local_uri(audio)] == [folder_uri, folder_uri]
    monkeypatch.chdir("/")  # the item is found, and opened in place, from any working folder
    with FeedConnector(str(tmp_path / "lfeed" / "feed.xml")).open(ref) as path:
        assert Path(path) == audio.resolve()


def test_a_local_feeds_enclosure_with_an_escaped_name_opens(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "my ep.wav")
    feed = tmp_path / "feed.xml"
    feed.write_text(rss("Local", [Episode("Mine", "my%20ep.wav", 1)]))
    (ref,) = FeedConnector(str(feed)).discover()
    assert ref.uri == audio.resolve().as_uri()
    with FeedConnector(str(feed)).open(ref) as path:
        assert Path(path).read_bytes() == audio.read_bytes()
