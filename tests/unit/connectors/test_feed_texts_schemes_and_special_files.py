"""Without the network: where a local feed's odd enclosure names lead, how long feed texts are
stored, the one stored form of an http(s) URL, and what a device, FIFO or link to one is
called."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from clasp_ingest.connectors import FeedConnector, LocalConnector
from clasp_ingest.connectors.feed import TEXT_MAX, TITLE_MAX, URL_MAX
from clasp_ingest.connectors.local import local_uri
from clasp_ingest.connectors.urls import encoded_url

from clasp_ingest.errors import ConnectorError
from clasp_ingest.store.base import build_payload
from clasp_ingest.types import Segment, media_id_for
from tests.integration.connectors.helpers import Episode, rss, write_tone

# --- a local feed's enclosure names -------------------------------------------------------------


def test_a_local_feeds_name_with_a_colon_is_the_file_beside_the_feed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = write_tone(tmp_path / "lfeed" / "Talk:Part1.wav", freq=440)
    write_tone(tmp_path / "cwd" / "Talk:Part1.wav", freq=880)  # another file, where the run starts
    episodes = [Episode("Colon", "Talk:Part1.wav", 1), Episode("Dotted", "./Talk:Part1.wav", 1)]
    (tmp_path / "lfeed" / "feed.xml").write_text(rss("Local", episodes))
    monkeypatch.chdir(tmp_path / "cwd")
    connector = FeedConnector("../lfeed/feed.xml")
    (ref,) = connector.discover()  # both spellings are one episode
    # before: file:///.../cwd/Talk%3APart1.wav, the working folder's file, ingested silently
    assert ref.uri == local_uri(beside) == next(iter(LocalConnector(beside).discover())).uri
    with connector.open(ref) as path:
        assert Path(path).read_bytes() == beside.read_bytes()


@pytest.mark.parametrize(
    ("href", "scheme"),
    [("javascript:alert(1)", "javascript:"), ("data:audio/wav;base64,UklGRg==", "data:"),
     ("mailto:host@example.com?subject=ep.wav", "mailto:"),
     ("data://x.wav", "data:"), (" javascript:y.wav", "javascript:")],  # fsspec's ValueError; a file name
)  # fmt: skip
def test_a_local_feeds_enclosure_that_names_no_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, href: str, scheme: str
) -> None:
    (tmp_path / "feed.xml").write_text(rss("Local", [Episode("Odd", href, 1)]))
    monkeypatch.chdir(tmp_path)
    connector = FeedConnector("feed.xml")
    (ref,) = connector.discover()
    href = href.strip()  # feedparser keeps the space
    assert ref.uri == href  # before: file:///<working folder>/javascript%3Aalert%281%29
    with pytest.raises(ConnectorError) as info, connector.open(ref):
        pass
    message = str(info.value)
    assert message.startswith(f"refused {href!r}") and f"{scheme} names no file" in message
    assert "feed.xml" in message and f"'./{href}'" in message


def test_file_uris_and_plain_names_of_a_local_feed_still_lead_to_files(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "eps" / "one.wav")
    other = write_tone(tmp_path / "elsewhere" / "two.wav")
    episodes = [Episode("Rel", "file:eps/one.wav", 1), Episode("Abs", other.as_uri(), 1),
                Episode("Name", "eps/one.wav", 1), Episode("Digits", "2024:x.wav", 1)]  # fmt: skip
    (tmp_path / "feed.xml").write_text(rss("Local", episodes))
    uris = [ref.uri for ref in FeedConnector(str(tmp_path / "feed.xml")).discover()]
    assert uris == [local_uri(audio), local_uri(other), local_uri(tmp_path / "2024:x.wav")]


# --- how long feed texts are stored -------------------------------------------------------------


def test_long_feed_texts_are_cut_once_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "telescope " * 50_000  # 500,000 characters
    episodes = [
        Episode(huge, "ep.wav", 1, guid="g" * 10_000),
        Episode("Second", "two.wav", 1, guid="x" * 10_000),
        Episode("Too far", "a/" * (URL_MAX // 2) + "far.wav", 1),  # skipped, not stored cut
        Episode("Far when stored", "é/" * 3_000 + "far.wav", 1),  # 6,007 characters; 21,007 encoded
        Episode("é" * TITLE_MAX, "three.wav", 1),  # exactly the limit: kept whole
    ]
    feed = tmp_path / "feed.xml"
    feed.write_text(rss(huge, episodes))
    with caplog.at_level(logging.WARNING, logger="clasp_ingest.connectors"):
        refs = list(FeedConnector(str(feed)).discover())
    assert [ref.uri.rsplit("/", 1)[-1] for ref in refs] == ["ep.wav", "two.wav", "three.wav"]
    first = refs[0]
    assert first.title == first.metadata["episode_title"] == huge[: TITLE_MAX - 1] + "…"
    assert all(ref.metadata["feed_title"] == huge[: TITLE_MAX - 1] + "…" for ref in refs)
    assert len(first.metadata["guid"]) == TEXT_MAX and first.metadata["guid"].endswith("…")
    assert refs[2].title == "é" * TITLE_MAX
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(feed) in warnings[0]
    assert "cut 1 episode title(s)" in warnings[0] and "cut 2 guid(s)" in warnings[0]
    assert "skipped 2 episode(s)" in warnings[0]
    # what every span of the episode stores stays small (before: 3 x 500,000 characters)
    payload = build_payload(first, "m", Segment(first.media_id, 0, 0.0, 1.0), "2026-01-01T00:00:00Z")
    assert len(json.dumps(payload)) < 4 * TEXT_MAX


# --- the one stored form of an http(s) URL ------------------------------------------------------

#: Already as sent: stored exactly as before (same URI, same media id), escapes in any case.
_CANONICAL = [
    "http://127.0.0.1:8000/media/a.wav",
    "https://h.example/sp%20ace%231.wav",
    "https://h.example/caf%C3%A9.wav",
    "https://h.example/caf%C3%A9.wav",  # upper-case escapes (lower-case ones: RFC 3986's form)
    "https://h.example/a%2Fb/[1]/100%.wav?x=1&y=a+b&z=%20#t=3",
    "https://user:REDACTED@h.example/x.mp3?sig=REDACTED",
    "s3://bucket/my talk.wav",  # a bucket key is a name: never encoded
    "/local/with space.wav",
]


@pytest.mark.parametrize("url", _CANONICAL)
def test_a_url_already_as_sent_keeps_its_form(url: str) -> None:
    assert encoded_url(url) == url


@pytest.mark.parametrize(
    ("url", "stored"),
    [("http://h/media/sp ace%231.wav", "http://h/media/sp%20ace%231.wav"),
     ("https://h/café.wav", "https://h/caf%C3%A9.wav"),
     ("https://h/a\tb.wav?q=x y#t=1", "https://h/a%09b.wav?q=x%20y#t=1"),
     ("https://hé.example/é", "https://hé.example/%C3%A9")],  # the host is not the path
)  # fmt: skip
def test_spaces_and_non_ascii_are_stored_percent_encoded(url: str, stored: str) -> None:
    assert encoded_url(url) == stored == encoded_url(stored)


def test_a_feeds_two_spellings_of_one_url_are_one_item(tmp_path: Path) -> None:
    spaced, encoded = "http://127.0.0.1:9/media/sp ace%231.wav", "http://127.0.0.1:9/media/sp%20ace%231.wav"
    canonical = "http://127.0.0.1:9/media/caf%C3%A9%5B1%5D.wav?x=1"
    episodes = [Episode("A", spaced, 1), Episode("B", encoded, 1), Episode("C", canonical, 1)]
    (tmp_path / "feed.xml").write_text(rss("Local", episodes))
    refs = list(FeedConnector(str(tmp_path / "feed.xml")).discover())  # nothing is downloaded
    assert [(ref.uri, ref.media_id) for ref in refs] == [
        (encoded, media_id_for(encoded)),  # before: 'sp ace%231.wav' and 'sp%20ace%231.wav', two items
        (canonical, media_id_for(canonical)),  # as before
    ]


# --- devices, FIFOs and links to them -----------------------------------------------------------


def test_a_link_to_a_device_says_what_it_leads_to(tmp_path: Path) -> None:
    (tmp_path / "zero.wav").symlink_to(os.devnull)
    with pytest.raises(ConnectorError) as info:
        list(LocalConnector(tmp_path / "zero.wav").discover())
    message = str(info.value)
    assert f"is a symbolic link to {os.devnull!r}, which is a character device, not a media file" in message
    assert "does not exist" not in message and "broken" not in message  # before: "broken ... does not exist"


@pytest.mark.parametrize("name", ["fifo.wav", "fifo [1].wav"])  # glob characters: still that path
def test_a_fifo_named_as_source_is_called_one(tmp_path: Path, name: str) -> None:
    os.mkfifo(tmp_path / name)
    with pytest.raises(ConnectorError) as info:
        list(LocalConnector(tmp_path / name).discover())
    # before: "is neither a file, a folder nor a glob that exists; check the path"
    assert "is a named pipe (FIFO), not a regular file" in str(info.value)
    assert [ref.uri for ref in LocalConnector(tmp_path).discover()] == []  # a folder skips it


def test_a_local_feeds_enclosure_that_is_a_fifo_is_called_one(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.wav")
    (tmp_path / "feed.xml").write_text(rss("Local", [Episode("Pipe", "pipe.wav", 1)]))
    connector = FeedConnector(str(tmp_path / "feed.xml"))
    (ref,) = connector.discover()
    with (
        pytest.raises(ConnectorError, match=r"is a named pipe \(FIFO\), not a media file"),
        connector.open(ref),
    ):
        pass


@pytest.mark.parametrize("written", ["https:x.wav", "https:/x.wav", "http:talk.mp3"])
def test_an_http_url_without_slashes_is_refused_as_such(tmp_path: Path, written: str) -> None:
    """It was refused as 'only follows http/https enclosures, not https: ones'."""
    feed = tmp_path / "feed.xml"
    feed.write_text(rss("Talks", [Episode("One", written, 1)]))
    connector = FeedConnector(str(feed))
    [ref] = list(connector.discover())
    refused = pytest.raises(ConnectorError, match=r"URL without '//' names no server; write it https?://host")
    with refused, connector.open(ref):
        pass
