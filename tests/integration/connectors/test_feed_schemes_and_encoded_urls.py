"""Against a loopback http.server: a remote feed's enclosures that name no file are refused under
their own scheme, and an http(s) URL is stored in the one percent-encoded form it is sent in."""

from __future__ import annotations

from pathlib import Path

import pytest
from clasp_ingest.connectors import FeedConnector, FsspecConnector

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import media_id_for
from tests.integration.connectors.conftest import HttpSite
from tests.integration.connectors.helpers import Episode, rss, write_tone


def _feed(site: HttpSite, name: str, *urls: str) -> str:
    episodes = [Episode(f"Ep {n}", url, 100) for n, url in enumerate(urls)]
    (site.root / "feeds").mkdir(exist_ok=True)
    (site.root / "feeds" / name).write_text(rss("Remote", episodes))
    return f"{site.base_url}/feeds/{name}"


@pytest.mark.parametrize(
    ("href", "scheme"), [("javascript:alert(1)", "javascript:"), ("data:audio/wav;base64,UklGRg==", "data:")]
)
def test_a_remote_feeds_enclosure_that_names_no_file_is_refused_by_its_scheme(
    http_site: HttpSite, href: str, scheme: str
) -> None:
    connector = FeedConnector(_feed(http_site, f"{scheme[:-1]}.rss", href))
    (ref,) = connector.discover()
    with pytest.raises(ConnectorError) as info, connector.open(ref):
        pass
    message = str(info.value)
    assert message.startswith(f"refused {href!r}") and "feeds/" in message
    assert f"only follows http/https enclosures, not {scheme} ones" in message
    assert "file://" not in message and "follow_schemes" not in message  # before: "not file:// ones; add..."


def test_a_remote_feeds_name_with_a_colon_is_fetched_beside_the_feed(http_site: HttpSite) -> None:
    audio = write_tone(http_site.root / "feeds" / "Talk:Part1.wav", 0.2)
    connector = FeedConnector(_feed(http_site, "colon.rss", "Talk:Part1.wav"))
    (ref,) = connector.discover()
    assert ref.uri == f"{http_site.base_url}/feeds/Talk:Part1.wav"
    with connector.open(ref) as local:
        assert Path(local).read_bytes() == audio.read_bytes()


def test_a_spaced_url_is_stored_as_sent_and_is_one_item(http_site: HttpSite) -> None:
    audio = write_tone(http_site.root / "media" / "sp ace#1.wav", 0.2)
    write_tone(http_site.root / "media" / "café.wav", 0.2)
    base = f"{http_site.base_url}/media"
    sent = f"{base}/sp%20ace%231.wav"
    spaced = FsspecConnector(f"{base}/sp ace%231.wav")
    (ref,) = spaced.discover()
    assert (ref.uri, ref.media_id) == (sent, media_id_for(sent))  # before: the raw space, another id
    assert ref.title == "sp ace#1"
    with spaced.open(ref) as local:
        assert Path(local).read_bytes() == audio.read_bytes()
    (same,) = FsspecConnector(sent).discover()
    assert same.media_id == ref.media_id
    (cafe,) = FsspecConnector(f"{base}/café.wav").discover()
    assert cafe.uri == f"{base}/caf%C3%A9.wav" and cafe.metadata["filename"] == "café.wav"
    page = http_site.root / "media" / "both.html"
    page.write_text('<a href="sp ace%231.wav">1</a><a href="sp%20ace%231.wav">2</a><a href="café.wav">3</a>')
    listed = [r.uri for r in FsspecConnector(f"{base}/both.html").discover()]
    assert listed == [cafe.uri, sent]
    feed = FeedConnector(_feed(http_site, "spaced.rss", f"{base}/sp ace%231.wav", sent, "../media/café.wav"))
    assert [r.uri for r in feed.discover()] == [sent, cafe.uri]


def test_a_url_already_as_sent_keeps_its_item(http_site: HttpSite) -> None:
    write_tone(http_site.root / "media" / "plain.wav", 0.2)
    url = f"{http_site.base_url}/media/plain.wav"
    (ref,) = FsspecConnector(url).discover()
    assert (ref.uri, ref.media_id) == (url, media_id_for(url))
