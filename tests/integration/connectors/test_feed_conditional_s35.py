"""http(s) feeds are asked for only where they changed (conditional GET): the document of the
last fetch is kept (``OpenOptions.feed_cache``) with its ``ETag``/``Last-Modified``, and a
server that answers ``304 Not Modified`` sends nothing; the kept document is listed instead.
Every server here is one this test starts on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from clasp_ingest.connectors import feedcache
from clasp_ingest.connectors.base import LISTING_ERROR, OpenOptions
from clasp_ingest.connectors.feed import FeedConnector
from clasp_ingest.connectors.http import Target, fetch_changed

from clasp_ingest.errors import ConnectorError
from tests.integration.connectors.helpers import Episode, Site, rss, serving

LOOPBACK = frozenset({"127.0.0.1"})  # the host typed: allowed


@pytest.fixture
def site() -> Iterator[Site]:
    with serving() as state:
        yield state


def _episodes(site: Site, count: int) -> list[Episode]:
    return [Episode(f"Episode {i}", f"{site.base_url}/e{i}.mp3", 1000 + i) for i in range(count)]


def _listed(url: str, folder: Path | None) -> list[str]:
    return [ref.uri for ref in FeedConnector(url, open_options=OpenOptions(feed_cache=folder)).discover()]


def _long_ago(hours: int = 1) -> str:
    return formatdate(time.time() - 3600 * hours, usegmt=True)


def test_an_unchanged_feed_is_not_sent_again_and_lists_the_same_episodes(site: Site, tmp_path: Path) -> None:
    site.put("/feed.rss", rss("Show", _episodes(site, 3)), etag='"v1"', modified=_long_ago())
    url = f"{site.base_url}/feed.rss"
    first = _listed(url, tmp_path)
    again = _listed(url, tmp_path)
    assert first == again and len(first) == 3
    (_, asked_first, status_first, sent_first), (_, asked_again, status_again, sent_again) = site.asked
    assert "If-None-Match" not in asked_first and (status_first, sent_first > 0) == (200, True)
    assert asked_again["If-None-Match"] == '"v1"' and (status_again, sent_again) == (304, 0)

    # the feed changes: a new ETag, a new episode, fetched whole and kept
    site.put("/feed.rss", rss("Show", _episodes(site, 4)), etag='"v2"', modified=_long_ago(0))
    assert len(_listed(url, tmp_path)) == 4
    assert site.asked[-1][2] == 200
    assert len(_listed(url, tmp_path)) == 4 and site.asked[-1][1]["If-None-Match"] == '"v2"'
    assert site.asked[-1][2] == 304


def test_without_a_folder_every_fetch_is_whole(site: Site) -> None:
    site.put("/feed.rss", rss("Show", _episodes(site, 2)), etag='"v1"', modified=_long_ago())
    for _ in range(2):
        assert len(_listed(f"{site.base_url}/feed.rss", None)) == 2
    assert [(status, "If-None-Match" in asked) for _, asked, status, _ in site.asked] == [(200, False)] * 2


def test_last_modified_alone_is_given_back_once_it_is_two_seconds_old(site: Site, tmp_path: Path) -> None:
    url = f"{site.base_url}/feed.rss"
    # changed within 2 s of the answer's date (here: dated after it, so that a slow machine
    # cannot make it older): a change later in that second would have the same date, so that
    # date is not given back
    site.put("/feed.rss", rss("Show", _episodes(site, 1)), modified=formatdate(time.time() + 30, usegmt=True))
    _listed(url, tmp_path)
    _listed(url, tmp_path)
    assert [status for *_, status, _ in site.asked] == [200, 200]
    assert "If-Modified-Since" not in site.asked[1][1]

    site.put("/feed.rss", rss("Show", _episodes(site, 2)), modified=_long_ago())
    site.asked.clear()
    assert len(_listed(url, tmp_path)) == 2
    assert len(_listed(url, tmp_path)) == 2
    assert [status for *_, status, _ in site.asked] == [200, 304]
    assert site.asked[1][1]["If-Modified-Since"] == site.pages["/feed.rss"][2]


def test_a_server_that_ignores_conditions_is_read_whole(site: Site, tmp_path: Path) -> None:
    site.honours = False
    site.put("/feed.rss", rss("Show", _episodes(site, 2)), etag='"v1"')
    for _ in range(2):
        assert len(_listed(f"{site.base_url}/feed.rss", tmp_path)) == 2
    assert [status for *_, status, _ in site.asked] == [200, 200]


def test_a_kept_document_that_does_not_match_its_record_is_not_used(site: Site, tmp_path: Path) -> None:
    url = f"{site.base_url}/feed.rss"
    site.put("/feed.rss", rss("Show", _episodes(site, 2)), etag='"v1"')
    _listed(url, tmp_path)
    [kept] = tmp_path.glob("*.feed")
    assert kept.stat().st_mode & 0o077 == 0  # its owner's only: a private feed's URL may hold a token
    kept.write_bytes(kept.read_bytes().replace(b"Episode 0", b"Episode X"))  # a damaged disk
    assert len(_listed(url, tmp_path)) == 2
    assert "If-None-Match" not in site.asked[-1][1] and site.asked[-1][2] == 200


def test_a_feed_cut_short_is_not_kept(site: Site, tmp_path: Path) -> None:
    url = f"{site.base_url}/feed.rss"
    whole = rss("Show", _episodes(site, 3))
    site.put("/feed.rss", whole, etag='"v1"')
    _listed(url, tmp_path)
    site.put("/feed.rss", whole[: whole.index("Episode 2")], etag='"v2"')  # cut inside an episode
    listed = list(FeedConnector(url, open_options=OpenOptions(feed_cache=tmp_path)).discover())
    # the two episodes before the cut, and the feed itself as a failed item
    assert [ref.uri for ref in listed[:2]] == [f"{site.base_url}/e{i}.mp3" for i in range(2)]
    assert listed[2].uri == url and LISTING_ERROR in listed[2].metadata
    assert feedcache.kept(tmp_path, url) is None  # the next run fetches it whole
    site.put("/feed.rss", whole, etag='"v1"')
    assert len(_listed(url, tmp_path)) == 3 and "If-None-Match" not in site.asked[-1][1]


def test_a_moved_feed_is_asked_at_each_hop_and_links_resolve_against_where_it_moved(
    site: Site, tmp_path: Path
) -> None:
    site.moved["/old.rss"] = "/new/feed.rss"
    site.put("/new/feed.rss", rss("Show", [Episode("Relative", "e0.mp3", 10)]), etag='"v1"')
    url = f"{site.base_url}/old.rss"
    assert _listed(url, tmp_path) == [f"{site.base_url}/new/e0.mp3"]
    assert _listed(url, tmp_path) == [f"{site.base_url}/new/e0.mp3"]
    assert [(path, status) for path, _, status, _ in site.asked[2:]] == [
        ("/old.rss", 302),
        ("/new/feed.rss", 304),
    ]


def test_a_304_to_a_request_without_conditions_names_the_url(site: Site) -> None:
    site.always_304 = True
    with pytest.raises(ConnectorError, match=r"feed\.rss.*304 Not Modified to a request without conditions"):
        fetch_changed(Target(f"{site.base_url}/feed.rss", LOOPBACK), OpenOptions(), 1 << 20)


def test_validators_that_cannot_be_sent_back_are_not_kept(site: Site) -> None:
    site.put("/feed.rss", rss("Show", []), etag='"' + "x" * 600 + '"', modified="not a date")
    page = fetch_changed(Target(f"{site.base_url}/feed.rss", LOOPBACK), OpenOptions(), 1 << 20)
    assert page.body and page.etag is None and page.last_modified is None


def test_a_redirect_that_now_leads_elsewhere_fetches_whole(site: Site, tmp_path: Path) -> None:
    # the validators are the page's they came from: a redirect to another page (whose ETag
    # may collide, e.g. one built from size and time) is fetched whole, and no hop before the
    # page (another host, perhaps) is sent them
    site.moved["/feed.rss"] = "/season2.rss"
    site.put("/season2.rss", rss("Season 2", _episodes(site, 2)), etag='"v1"')
    site.put("/season1.rss", rss("Season 1", _episodes(site, 1)), etag='"v1"')
    url = f"{site.base_url}/feed.rss"
    assert len(_listed(url, tmp_path)) == 2
    assert len(_listed(url, tmp_path)) == 2
    site.moved["/feed.rss"] = "/season1.rss"
    assert len(_listed(url, tmp_path)) == 1
    asked = [(path, status, headers.get("If-None-Match")) for path, headers, status, _ in site.asked]
    assert asked == [
        ("/feed.rss", 302, None),
        ("/season2.rss", 200, None),
        ("/feed.rss", 302, None),
        ("/season2.rss", 304, '"v1"'),
        ("/feed.rss", 302, None),
        ("/season1.rss", 200, None),
    ]


def test_a_kept_validator_that_cannot_be_sent_is_not_sent(site: Site, tmp_path: Path) -> None:
    url = f"{site.base_url}/feed.rss"
    site.put("/feed.rss", rss("Show", _episodes(site, 2)), etag='"v1"')
    _listed(url, tmp_path)
    [record] = tmp_path.glob("*.json")
    record.write_text(record.read_text().replace('\\"v1\\"', '\\"v1\\"\\r\\nX-Injected: yes'))
    assert "X-Injected" in record.read_text()
    assert len(_listed(url, tmp_path)) == 2  # no header sent with a line break: fetched whole
    assert site.asked[-1][2] == 200 and not any("X-Injected" in h for _, h, *_ in site.asked)


def test_two_threads_listing_one_feed_keep_each_its_own_document(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one thread's document was kept with the other's ETag (shared state of the connector),
    # and every later 304 listed the old episodes
    import feedparser

    url = f"{site.base_url}/feed.rss"
    site.put("/feed.rss", rss("Show", _episodes(site, 1)), etag='"v1"')
    real_parse, gates = feedparser.parse, {}

    def parse(document: bytes, **kwargs: Any) -> Any:
        parsing, go_on = gates[threading.current_thread().name]
        parsing.set()
        go_on.wait(10)
        return real_parse(document, **kwargs)

    monkeypatch.setattr(feedparser, "parse", parse)
    connector = FeedConnector(url, open_options=OpenOptions(feed_cache=tmp_path))

    def start(name: str) -> threading.Thread:
        gates[name] = (threading.Event(), threading.Event())
        thread = threading.Thread(target=lambda: list(connector.discover()), name=name)
        thread.start()
        assert gates[name][0].wait(10)
        return thread

    first = start("first")  # fetched v1, parsing
    site.put("/feed.rss", rss("Show", _episodes(site, 2)), etag='"v2"')
    second = start("second")  # fetched v2, parsing
    for name, thread in (("first", first), ("second", second)):
        gates[name][1].set()
        thread.join(10)
    monkeypatch.setattr(feedparser, "parse", real_parse)
    kept = feedcache.kept(tmp_path, url)
    assert kept is not None and kept.body.count(b"<item>") == {'"v1"': 1, '"v2"': 2}[str(kept.etag)]
    assert len(_listed(url, tmp_path)) == 2
