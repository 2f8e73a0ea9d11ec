"""Feeds that are not well-formed (tester 5, bug 1): a mildly malformed feed is read whole with
one warning; one cut short lists the episodes before the cut and itself as a failed item."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from clasp_ingest.connectors import FeedConnector
from clasp_ingest.connectors.base import LISTING_ERROR

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import MediaRef

FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Show</title>
<item><title>Episode 0</title><guid>g0</guid><pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate><enclosure url="ep0.mp3" type="audio/mpeg" length="10362"/></item>
<item><title>Episode 1</title><guid>g1</guid><pubDate>Tue, 02 Jan 2024 00:00:00 GMT</pubDate><enclosure url="ep1.mp3" type="audio/mpeg" length="13183"/></item>
<item><title>Episode 2</title><guid>g2</guid><pubDate>Wed, 03 Jan 2024 00:00:00 GMT</pubDate><enclosure url="ep2.mp3" type="audio/mpeg" length="14000"/></item>
</channel></rss>
"""  # noqa: E501  (one episode a line: feedparser's errors name the line)


def _listed(tmp_path: Path, document: bytes | str) -> tuple[dict[str, MediaRef], list[MediaRef]]:
    """The episodes of a feed file holding ``document`` (by file name) and its failed items."""
    feed = tmp_path / "feed.xml"
    feed.write_bytes(document.encode() if isinstance(document, str) else document)
    refs = list(FeedConnector(str(feed)).discover())
    failed = [ref for ref in refs if LISTING_ERROR in ref.metadata]
    return {Path(ref.uri).name: ref for ref in refs if ref not in failed}, failed


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_well_formed_feed_gives_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    episodes, failed = _listed(tmp_path, FEED)
    assert sorted(episodes) == ["ep0.mp3", "ep1.mp3", "ep2.mp3"] and failed == []
    assert _warnings(caplog) == []


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (("Episode 1", "Tom & Jerry"), "line 4, column 18: not well-formed (invalid token)"),
        (("Episode 1", "Caf&eacute;"), "line 4, column 16: undefined entity"),
        (("</item>", ""), "mismatched tag"),  # an </item> left out
        (("</rss>\n", "</rss>\n<script>x</script>"), "junk after document element"),
        # junk after the root's end that expat reads as an unclosed token: whole, not cut (reviewer 1)
        (("</rss>\n", "</rss>\n<!-- generated in 0.2 s"), "unclosed token"),
        (("</rss>\n", "</rss>\n<"), "unclosed token"),
    ],
)
def test_a_malformed_but_complete_feed_is_read_whole_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: tuple[str, str], error: str
) -> None:
    episodes, failed = _listed(tmp_path, FEED.replace(*damage, 1))
    assert sorted(episodes) == ["ep0.mp3", "ep1.mp3", "ep2.mp3"] and failed == []
    [warning] = _warnings(caplog)
    assert str(tmp_path / "feed.xml") in warning and "is not well-formed" in warning and error in warning
    assert "3 episode(s)" in warning and "publisher" in warning


def test_a_wrong_charset_declaration_is_read_whole_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = FEED.replace("utf-8", "us-ascii").replace("Episode 1", "Café").encode()
    episodes, failed = _listed(tmp_path, document)
    assert episodes["ep1.mp3"].title == "Café" and len(episodes) == 3 and failed == []
    [warning] = _warnings(caplog)
    assert "is not well-formed (document declared as us-ascii, but parsed as utf-8)" in warning
    assert "3 episode(s) found" in warning and "wrong characters" in warning


@pytest.mark.parametrize(
    ("cut_after", "listed"),
    [
        ('url="ep1.mp3" type="audio/mpeg" length="13', ["ep0.mp3"]),  # inside a tag
        ("<title>Episode 1</title><guid>g1</guid>", ["ep0.mp3"]),  # inside an episode: left out
        ('length="13183"/>', ["ep0.mp3"]),  # its enclosure read, not its </item>: left out too
        ('length="13183"/></item>\n', ["ep0.mp3", "ep1.mp3"]),  # between episodes
        ("</channel>", ["ep0.mp3", "ep1.mp3", "ep2.mp3"]),  # only </rss> missing: a cut all the same
        # inside the next episode's start tag, of which feedparser makes no entry (reviewer 1: the
        # complete episode before it was dropped)
        ('length="13183"/></item>\n<item', ["ep0.mp3", "ep1.mp3"]),
    ],
)
def test_a_feed_cut_short_lists_what_came_before_and_fails_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cut_after: str, listed: list[str]
) -> None:
    document = FEED[: FEED.index(cut_after) + len(cut_after)]
    episodes, [failed] = _listed(tmp_path, document)
    assert sorted(episodes) == listed
    feed = str(tmp_path / "feed.xml")
    assert failed.uri == feed
    error = failed.metadata[LISTING_ERROR]
    assert f"feed {feed!r} ends early, inside an open element (line " in error
    assert "a download cut short, or a damaged file" in error and f"{len(listed)} episode(s)" in error
    assert "the next run reads it again" in error
    [warning] = _warnings(caplog)
    assert feed in warning and "is not well-formed (line " in warning


def test_a_cut_is_seen_behind_an_earlier_error(tmp_path: Path) -> None:
    """expat stops at the first error (an unescaped '&'): the missing </rss> still tells the cut."""
    document = FEED.replace("Episode 0", "Tom & Jerry")
    episodes, [failed] = _listed(tmp_path, document[: document.index("<item><title>Episode 2")])
    assert sorted(episodes) == ["ep0.mp3", "ep1.mp3"]
    assert "line 3, column 18: not well-formed (invalid token)" in failed.metadata[LISTING_ERROR]


def test_a_feed_cut_before_any_episode_fails_to_list(tmp_path: Path) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(FEED[: FEED.index("<guid>g0")])
    with pytest.raises(ConnectorError, match=r"ends early, inside an open element .*no episode was read"):
        list(FeedConnector(str(feed)).discover())


def test_the_warning_is_given_once_per_connector(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A signed feed's enclosures are looked up by listing it again: one warning all the same."""
    feed = tmp_path / "feed.xml"
    feed.write_text(FEED.replace("Episode 1", "Tom & Jerry"))
    connector = FeedConnector(str(feed))
    for _ in range(2):
        assert len(list(connector.discover())) == 3
    assert len(_warnings(caplog)) == 1


def test_an_end_tag_quoted_in_show_notes_does_not_close_a_cut_episode(tmp_path: Path) -> None:
    """A cut inside an episode whose notes quote ``</item>`` (in CDATA) is inside that episode."""
    notes = "<description><![CDATA[<p>how to close an </item> tag</p>]]></description>"
    document = FEED.replace("<guid>g1</guid>", f"<guid>g1</guid>{notes}", 1)
    episodes, [failed] = _listed(tmp_path, document[: document.index("tag</p>]]></description>") + 20])
    assert sorted(episodes) == ["ep0.mp3"] and "ends early" in failed.metadata[LISTING_ERROR]


def test_a_cut_inside_an_episode_start_tag_keeps_the_episodes_before_it(tmp_path: Path) -> None:
    document = FEED[: FEED.index("<item><title>Episode 2")] + '<item xml:lang="en'
    episodes, [failed] = _listed(tmp_path, document)
    assert sorted(episodes) == ["ep0.mp3", "ep1.mp3"] and "2 episode(s)" in failed.metadata[LISTING_ERROR]
