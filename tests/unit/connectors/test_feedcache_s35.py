"""The kept feed documents of conditional GETs (:mod:`clasp_ingest.connectors.feedcache`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from clasp_ingest.connectors import feedcache

URL = "https://podcasts.example/feed.rss?token=secret"


def test_a_document_is_kept_with_its_validators_and_forgotten(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    feedcache.keep(folder, URL, b"<rss/>", '"v1"', "Tue, 03 Jun 2025 09:00:00 GMT")
    assert feedcache.kept(folder, URL) == feedcache.Kept(b"<rss/>", '"v1"', "Tue, 03 Jun 2025 09:00:00 GMT")
    assert feedcache.kept(folder, URL + "&other") is None  # another URL, another entry
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o077 == 0 for path in folder.iterdir())
    assert not any(b"secret" in path.read_bytes() or "secret" in path.name for path in folder.iterdir())
    feedcache.forget(folder, URL)
    assert feedcache.kept(folder, URL) is None and not list(folder.iterdir())


def test_an_answer_without_validators_forgets_the_kept_one(tmp_path: Path) -> None:
    feedcache.keep(tmp_path, URL, b"<rss/>", '"v1"', None)
    feedcache.keep(tmp_path, URL, b"<rss>new</rss>", None, None)
    assert feedcache.kept(tmp_path, URL) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda body, record: body.write_bytes(b"<rss>other</rss>"),  # another run's document
        lambda body, record: record.write_text("{not json"),
        lambda body, record: record.write_text("[1, 2]"),
        lambda body, record: body.unlink(),
        lambda body, record: record.unlink(),
    ],
)
def test_a_document_that_does_not_match_its_record_is_not_used(tmp_path: Path, damage: object) -> None:
    feedcache.keep(tmp_path, URL, b"<rss/>", '"v1"', None)
    [body] = tmp_path.glob("*.feed")
    damage(body, body.with_suffix(".json"))  # type: ignore[operator]
    assert feedcache.kept(tmp_path, URL) is None


def test_a_folder_that_cannot_be_written_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "feeds").write_text("a file where the folder would be")
    with caplog.at_level(logging.WARNING, "clasp_ingest.connectors"):
        feedcache.keep(tmp_path / "feeds", URL, b"<rss/>", '"v1"', None)
    assert "cannot keep a feed's document" in caplog.text and "fetched whole next time" in caplog.text
    assert feedcache.kept(tmp_path / "feeds", URL) is None
