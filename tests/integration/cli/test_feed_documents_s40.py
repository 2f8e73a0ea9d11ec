"""A podcast's show and date reach a RAG answer: the retriever's Documents carry a feed
episode's ``feed_title``, ``episode_title``, ``published`` (and ``published_ts``, the same
date as a number, which a filter's range takes). Before, a reviewer's RAG app could not cite
the show or the air date, and a date filter's error sent them to a numeric field that did not
exist. The default model, a fresh store, a feed served on 127.0.0.1."""

from __future__ import annotations

import calendar
import json
from pathlib import Path

import pytest

from tests.integration.cli.test_default_model import SAMPLES, TRAIN, cli
from tests.integration.cli_env import default_model_env
from tests.integration.connectors.helpers import Episode, rss, serving

pytestmark = pytest.mark.slow

AIRED = "Wed, 04 Jun 2025 09:00:00 GMT"
AIRED_TS = calendar.timegm((2025, 6, 4, 9, 0, 0))


def test_documents_name_the_show_and_filters_take_the_date(tmp_path: Path) -> None:
    from clasp_ingest.retriever import ClaspRetriever
    from qdrant_client import models

    from clasp_ingest.errors import FilterError

    env = default_model_env(tmp_path)
    store = tmp_path / "store"
    audio = (SAMPLES / "demo_en.opus").read_bytes()
    with serving() as site:
        site.put("/talk.opus", audio)
        episode = Episode(
            "Trains and mountains", f"{site.base_url}/talk.opus", len(audio), AIRED, "audio/ogg"
        )
        site.put("/feed.rss", rss("Travel Talk", [episode]))
        feed = f"{site.base_url}/feed.rss"
        run = cli(env, "ingest", feed, "--qdrant-path", str(store), "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["media_ok"] == 1, run.stderr

    with ClaspRetriever.from_path(store, k=1) as retriever:
        (doc,) = retriever.invoke(TRAIN)
        meta = doc.metadata
        assert (meta["feed_title"], meta["episode_title"], meta["feed_url"]) == (
            "Travel Talk",
            "Trains and mountains",
            feed,
        )
        assert (meta["published"], meta["published_ts"]) == ("2025-06-04T09:00:00Z", AIRED_TS)

        def aired(**bounds: int) -> models.Filter:
            condition = models.FieldCondition(key="metadata.published_ts", range=models.Range(**bounds))
            return models.Filter(must=[condition])

        assert len(retriever.invoke(TRAIN, filter=aired(gte=AIRED_TS - 86_400))) == 1
        assert retriever.invoke(TRAIN, filter=aired(gte=AIRED_TS + 1)) == []
        show = models.FieldCondition(key="metadata.feed_url", match=models.MatchValue(value=feed))
        assert len(retriever.invoke(TRAIN, filter=models.Filter(must=[show]))) == 1
        by_text = models.FieldCondition(
            key="metadata.published", range=models.DatetimeRange(gte="2025-06-01T00:00:00Z")
        )
        with pytest.raises(FilterError, match=r"metadata\.published_ts"):
            retriever.invoke(TRAIN, filter=models.Filter(must=[by_text]))
