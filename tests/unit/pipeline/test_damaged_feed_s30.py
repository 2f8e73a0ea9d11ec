"""A feed cut short is a failed item of the run (exit 3) and is read again by the next, which
skips what the first stored; a malformed but complete feed is ingested whole (tester 5, bug 1)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from clasp_ingest.connectors import FeedConnector

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.pipeline import PipelineOptions, ingest_source
from clasp_ingest.store import QdrantStore, open_store

FAST = PipelineOptions(embed_batch_size=2, retry_delay_s=0.01)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[QdrantStore]:
    with open_store(path=tmp_path / "qdrant") as opened:
        yield opened


@pytest.fixture
def feed_text(tmp_path: Path, speech_sources: dict[str, Path]) -> str:
    """An RSS document of two episodes, one a line, whose files lie beside ``feed.xml``."""
    items = []
    for number, name in enumerate(("one.wav", "two.mp3")):
        shutil.copy(speech_sources[name], tmp_path / name)
        items.append(
            f"<item><title>Episode {number}</title><guid>g{number}</guid>"
            f'<enclosure url="{name}" type="audio/mpeg" length="1000"/></item>\n'
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Show</title>\n'
        f"{''.join(items)}</channel></rss>\n"
    )


def test_a_feed_cut_short_fails_and_is_read_again(
    tmp_path: Path, feed_text: str, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(feed_text[: feed_text.index('url="two.mp3"')])  # ends inside episode 1
    first = ingest_source(FeedConnector(str(feed)), tiny_model, store, FAST)
    assert first.media_ok == 1 and [f["uri"] for f in first.media_failed] == [str(feed)]
    assert "ends early, inside an open element" in first.media_failed[0]["error"]

    again = ingest_source(FeedConnector(str(feed)), tiny_model, store, FAST)
    assert (again.media_ok, again.media_skipped, len(again.media_failed)) == (0, 1, 1)

    feed.write_text(feed_text)  # whole again: the episode it lost is ingested, nothing fails
    whole = ingest_source(FeedConnector(str(feed)), tiny_model, store, FAST)
    assert (whole.media_ok, whole.media_skipped, whole.media_failed) == (1, 1, [])


def test_a_malformed_but_complete_feed_is_ingested_whole(
    tmp_path: Path, feed_text: str, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    feed = tmp_path / "feed.xml"
    feed.write_text(feed_text.replace("Episode 1", "Q & A"))
    summary = ingest_source(FeedConnector(str(feed)), tiny_model, store, FAST)
    assert (summary.media_ok, summary.media_failed) == (2, [])


def test_recreate_keeps_the_collection_when_a_cut_feed_lists_no_media_file(
    tmp_path: Path, feed_text: str, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    """A cut feed's own failed item is no media file: ``recreate`` dropped the collection for it
    and wrote nothing (reviewer 1)."""
    feed = tmp_path / "feed.xml"
    feed.write_text(feed_text)
    assert ingest_source(FeedConnector(str(feed)), tiny_model, store, FAST).media_ok == 2
    stored = store.count()
    post = "<item><title>Notes</title><guid>n</guid></item>\n"  # an episode with no enclosure
    header = feed_text[: feed_text.index("<item>")]
    feed.write_text(header + post + "<item><title>Episode 9</title><gu")  # cut
    summary = ingest_source(FeedConnector(str(feed)), tiny_model, store, FAST, recreate=True)
    assert summary.media_ok == 0 and [uri for uri, _ in summary.source_errors] == [str(feed)]
    assert "ends early" in summary.source_errors[0][1]
    assert store.count() == stored
