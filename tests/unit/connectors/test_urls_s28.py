"""The one stored form of an http(s) URL (RFC 3986's normal form), URLs that cannot be requested
named with what is wrong, and a download's decoder warnings naming its URL, not its temporary file.
No sockets: what is checked here fails before any connection."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors import FeedConnector, FsspecConnector, OpenOptions, connector_for
from clasp_ingest.connectors.http import Target, head, open_http
from clasp_ingest.connectors.urls import encoded_url, url_problem

from clasp_ingest.errors import ConnectorError, MediaDecodeError
from clasp_ingest.media.decode import DecodeOptions, stream_audio
from clasp_ingest.store.filters import stored_form
from clasp_ingest.types import media_id_for
from tests.fixtures_audio import convert, tone, truncate, write_wav
from tests.integration.connectors.helpers import Episode, rss

#: Spellings RFC 3986 (section 6.2.2) calls equivalent, and the one form each is stored in.
_EQUIVALENT = [
    ("http://h.example/caf%c3%a9.wav", "http://h.example/caf%C3%A9.wav"),
    ("HTTP://Example.COM/a.wav", "http://example.com/a.wav"),
    ("Https://User:PassWord@Example.COM/a.wav", "https://User:PassWord@example.com/a.wav"),
    ("http://h.example/a/./b.wav", "http://h.example/a/b.wav"),
    ("http://h.example/a/x/../b.wav", "http://h.example/a/b.wav"),
    ("http://h.example:08766/b.wav", "http://h.example:8766/b.wav"),  # leading zeros: one port
    ("http://h.example:0080/b.wav", "http://h.example/b.wav"),
    ("http://h.example/../../b.wav", "http://h.example/b.wav"),
    ("http://h.example/a/%2E%2E/b.wav", "http://h.example/b.wav"),
    ("http://h.example:80/a.wav", "http://h.example/a.wav"),
    ("https://h.example:443/a.wav", "https://h.example/a.wav"),
    ("http://h.example:/a.wav", "http://h.example/a.wav"),
    ("https://[FE80::1]:443/a.wav", "https://[fe80::1]/a.wav"),
    ("http://h.example/%7Euser/%41.wav", "http://h.example/~user/A.wav"),
    ("http://h.example/a.wav?name=%7ejo&x=%2f", "http://h.example/a.wav?name=~jo&x=%2F"),
    ("HTTP://H.example/./café talk.opus", "http://h.example/caf%C3%A9%20talk.opus"),
]

#: Already in that form: kept character for character (same media id as before).
_NORMAL = [
    "http://127.0.0.1:8000/media/a.wav",
    "http://h.example:443/a.wav",  # not http's default port
    "https://h.example:80/a.wav",
    "https://h.example/a%2Fb/%2F.wav",  # an escaped '/' is not a folder
    "https://h.example/x.wav?b=2&a=1+2%20%2F%3D%26&c=",  # a signed query: order, '+', escapes
    "https://h.example/x.mp3?X-Amz-Signature=REDACTED&X-Amz-Date=REDACTED",
    "https://h.example/v1.2/a..b/.hidden.wav",  # dots inside names are no dot segments
    "https://h.example/folder/",
    "https://h.example",
    "s3://Bucket/a/./%7e.wav",  # a bucket key is a name: never rewritten
    "/local/a/../b.wav",
]


@pytest.mark.parametrize(("url", "normal"), _EQUIVALENT)
def test_equivalent_spellings_are_stored_in_one_form(url: str, normal: str) -> None:
    assert encoded_url(url) == normal == encoded_url(normal)


@pytest.mark.parametrize("url", _NORMAL)
def test_a_url_in_normal_form_keeps_its_exact_string(url: str) -> None:
    assert encoded_url(url) == url


def test_every_stored_form_of_a_source_is_the_same() -> None:
    """The item, the filters (``--source``, ``--media-id``) and a feed's enclosures agree."""
    spelling, normal = "HTTP://127.0.0.1:9/Media/x/../t%61lk.wav", "http://127.0.0.1:9/Media/talk.wav"
    assert FsspecConnector(spelling).source == normal  # nothing is sent yet
    assert stored_form("source", spelling) == normal
    assert stored_form("media_id", spelling) == media_id_for(normal)


def test_a_feeds_spellings_of_one_enclosure_are_one_item(tmp_path: Path) -> None:
    spellings = ["http://127.0.0.1:9/m/caf%c3%a9.wav", "HTTP://127.0.0.1:9/m/./caf%C3%A9.wav"]
    (tmp_path / "feed.xml").write_text(rss("Local", [Episode(str(n), u, 1) for n, u in enumerate(spellings)]))
    refs = list(FeedConnector(str(tmp_path / "feed.xml")).discover())  # nothing is downloaded
    normal = "http://127.0.0.1:9/m/caf%C3%A9.wav"
    assert [(ref.uri, ref.media_id) for ref in refs] == [(normal, media_id_for(normal))]


_BROKEN = [
    ("http://127.0.0.1:8766:/x.wav", "its port '8766:' is not a number"),
    ("http://[::1/x.wav", "its host '[::1' lacks the ']' that ends an IPv6 address"),
    ("http://h.example:99999/x.wav", "its port 99999 is out of range (1-65535)"),
    ("http://h.example:0/x.wav", "its port 0 is out of range (1-65535)"),
    ("http://:80/x.wav", "it names no host"),
    ("http:///x.wav", "it names no host"),
    ("https://user@/x.wav", "it names no host"),
    (
        "http://[zz]/x.wav",
        "its host '[zz]' is not valid ('zz' does not appear to be an IPv4 or IPv6 address)",
    ),
    ("http://a..b/x.wav", "its host 'a..b' is not valid"),
]


@pytest.mark.parametrize(("url", "problem"), _BROKEN)
def test_url_problem_names_the_part_that_is_wrong(url: str, problem: str) -> None:
    assert (url_problem(url) or "").startswith(problem)
    assert encoded_url(url) == url  # its error names it as it was given


@pytest.mark.parametrize(
    "url",
    [
        "http://h.example/x.wav",
        "https://h.example:8443/x",
        "http://[::1]:8/x",
        "http://h:/x",
        "http://bücher.de/",
    ],
)
def test_url_problem_passes_a_requestable_url(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(("url", "problem"), _BROKEN)
def test_a_broken_url_fails_as_a_connector_error_naming_it(url: str, problem: str) -> None:
    """Before: a bare ValueError ("Port could not be cast to integer value as '8766:'"), which the
    run reported as "ValueError: ..." (or, for a URL without a media extension, ended the whole
    run as "unexpected ValueError"); a URL without a host was retried as unreachable."""

    def download() -> None:
        with open_http(Target(url), OpenOptions()):
            pass

    for attempt in (
        lambda: head(Target(url), OpenOptions()),
        download,
        lambda: list(FsspecConnector(url).discover()),
    ):
        with pytest.raises(ConnectorError) as info:
            attempt()
        assert type(info.value) is ConnectorError  # permanent: not retried
        assert str(info.value) == f"{url!r} is not a valid URL: {url_problem(url)}; check it"
        assert problem in str(info.value)


def test_an_extensionless_broken_url_is_a_source_that_fails_to_list() -> None:
    connector = connector_for("http://127.0.0.1:8766:/podcast")  # before: ValueError, the run ended
    with pytest.raises(ConnectorError, match="its port '8766:' is not a number"):
        list(connector.discover())


def _cut_mp3(folder: Path) -> bytes:
    whole = convert(write_wav(folder / "tone.wav", tone(440.0, 6.0)), folder / "whole.mp3", "-b:a", "32k")
    return truncate(whole, folder / "cut.mp3", 0.4).read_bytes()


def test_decoding_names_a_download_by_its_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A download is decoded from a temporary file; its warnings said ``decoding
    /tmp/clasp-dl-.../media.mp3: ends early``, a name the user never saw."""
    uri = "https://h.example/talks/cut.mp3?token=REDACTED"
    local = tmp_path / "clasp-dl-x" / "media.mp3"
    local.parent.mkdir()
    local.write_bytes(_cut_mp3(tmp_path))
    caplog.set_level(logging.WARNING, logger="clasp_ingest")
    told: list[str] = []
    blocks = stream_audio(local, DecodeOptions(strict=False), on_warning=told.append, shown=uri)
    audio = np.concatenate(list(blocks))
    logged = [r.getMessage() for r in caplog.records if r.name == "clasp_ingest.media.decode"]
    assert audio.size and np.isfinite(audio).all() and len(told) == 1
    assert len(logged) == 1 and logged[0].startswith(f"decoding {uri}: ends early"), logged
    local.write_bytes(b"not media at all" * 64)
    with pytest.raises(MediaDecodeError) as caught:
        list(stream_audio(local, shown=uri))
    assert caught.value.source == uri and "clasp-dl-" not in str(caught.value), caught.value


def test_a_feeds_broken_enclosure_fails_alone(tmp_path: Path) -> None:
    """urljoin raised 'Invalid IPv6 URL' for an enclosure written ``http://[::1/x.wav``: the
    whole feed failed, its other episodes with it."""
    from clasp_ingest.connectors.base import LISTING_ERROR

    good = "http://127.0.0.1:9/m/a.wav"
    episodes = [Episode("bad", "http://[::1/x.wav", 1), Episode("good", good, 1)]
    (tmp_path / "feed.xml").write_text(rss("Local", episodes))
    bad, ok = FeedConnector(str(tmp_path / "feed.xml")).discover()
    assert "lacks the ']' that ends an IPv6 address; check the feed" in bad.metadata[LISTING_ERROR]
    assert ok.uri == good and LISTING_ERROR not in ok.metadata


def test_a_url_that_cannot_be_parsed_is_still_redacted() -> None:
    """A broken URL is quoted in its error, and redact_url gave it back whole: a feed's
    'http://[::1/x.wav?token=...' showed its token in media_failed and the log."""
    from clasp_ingest.connectors.urls import redact_url

    assert (
        redact_url("http://u:PASS@[::1/x.wav?token=LEAK&a=1")
        == "http://u:REDACTED@[::1/x.wav?token=REDACTED&a=1"
    )
    signed = "http://[::1/x.wav?X-Amz-Signature=s&X-Amz-Date=d&k=v"
    assert redact_url(signed) == "http://[::1/x.wav?X-Amz-Signature=REDACTED&X-Amz-Date=REDACTED&k=v"


def test_a_url_is_sent_as_given_and_stored_in_normal_form() -> None:
    """The normal form was also requested: a server checking a signed path refused it (403)."""
    from clasp_ingest.connectors.urls import sent_url

    given = "HTTP://H.example/a/./caf%c3%a9%7e1 b.opus?token=x"
    assert sent_url(given) == "HTTP://H.example/a/./caf%c3%a9%7e1%20b.opus?token=x"
    assert encoded_url(given) == "http://h.example/a/caf%C3%A9~1%20b.opus?token=x"
    connector = FsspecConnector(given)
    assert connector.source == "http://h.example/a/caf%C3%A9~1%20b.opus?token=REDACTED"
    assert connector._real[connector.source] == sent_url(given)  # what is requested


def test_an_unparsable_urls_password_is_redacted_to_its_last_at() -> None:
    from clasp_ingest.connectors.urls import redact_url

    assert redact_url("http://u:p@ss@[::1/x.wav") == "http://u:REDACTED@[::1/x.wav"  # 'ss' showed
