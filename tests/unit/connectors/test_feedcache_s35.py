"""The kept feed documents of conditional GETs (:mod:`clasp_ingest.connectors.feedcache`)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from clasp_ingest.connectors import feedcache

URL = "https://podcasts.example/feed.rss?token=secret"


def test_a_document_is_kept_with_its_validators_and_forgotten(tmp_path: Path) -> None:
    folder = tmp_path / "feeds"
    feedcache.keep(folder, URL, b"<rss/>", '"v1"', "Tue, 03 Jun 2025 09:00:00 GMT", at=URL + "&moved")
    assert feedcache.kept(folder, URL) == feedcache.Kept(
        b"<rss/>", '"v1"', "Tue, 03 Jun 2025 09:00:00 GMT", feedcache.digest(URL + "&moved")
    )
    assert feedcache.kept(folder, URL + "&other") is None  # another URL, another entry
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o077 == 0 for path in folder.iterdir())
    assert not any(b"secret" in path.read_bytes() or "secret" in path.name for path in folder.iterdir())
    feedcache.forget(folder, URL)
    assert feedcache.kept(folder, URL) is None and not list(folder.iterdir())


def test_an_answer_without_validators_forgets_the_kept_one(tmp_path: Path) -> None:
    feedcache.keep(tmp_path, URL, b"<rss/>", '"v1"', None, at=URL)
    feedcache.keep(tmp_path, URL, b"<rss>new</rss>", None, None, at=URL)
    assert feedcache.kept(tmp_path, URL) is None and not list(tmp_path.iterdir())


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
    feedcache.keep(tmp_path, URL, b"<rss/>", '"v1"', None, at=URL)
    [body] = tmp_path.glob("*.feed")
    damage(body, body.with_suffix(".json"))  # type: ignore[operator]
    assert feedcache.kept(tmp_path, URL) is None


def test_a_folder_that_cannot_be_written_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "feeds").write_text("a file where the folder would be")
    with caplog.at_level(logging.WARNING, "clasp_ingest.connectors"):
        feedcache.keep(tmp_path / "feeds", URL, b"<rss/>", '"v1"', None, at=URL)
    assert "cannot keep a feed's document" in caplog.text and "fetched whole next time" in caplog.text
    assert feedcache.kept(tmp_path / "feeds", URL) is None


def test_a_document_older_than_a_day_is_not_used(tmp_path: Path) -> None:
    # a server that wrongly answers "not modified" would otherwise hold a feed back for ever
    feedcache.keep(tmp_path, URL, b"<rss/>", '"v1"', None, at=URL)
    assert feedcache.kept(tmp_path, URL) is not None
    [record] = tmp_path.glob("*.json")
    day_ago = time.time() - feedcache.MAX_AGE_S - 60
    os.utime(record, (day_ago, day_ago))
    assert feedcache.kept(tmp_path, URL) is None
    assert feedcache.kept(tmp_path, URL, max_age_s=2 * feedcache.MAX_AGE_S) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user takes root")
def test_a_document_another_user_owns_is_not_used(tmp_path: Path) -> None:
    # a folder others can write (CLASP_FEED_CACHE_DIR set so): their files are not read
    feedcache.keep(tmp_path, URL, b"<rss/>", '"v1"', None, at=URL)
    for path in tmp_path.iterdir():
        os.chown(path, 54321, -1)
    assert feedcache.kept(tmp_path, URL) is None


def test_the_folder_comes_from_the_settings_and_an_empty_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clasp_ingest.config import Settings

    monkeypatch.setenv("CLASP_FEED_CACHE_DIR", str(tmp_path / "feeds"))
    assert Settings().open_options().feed_cache == tmp_path / "feeds"
    monkeypatch.delenv("CLASP_FEED_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert Settings().open_options().feed_cache == tmp_path / "cache" / "clasp-ingest" / "feeds"
    monkeypatch.setenv("CLASP_FEED_CACHE_DIR", "")  # VAR= in a unit file: not the current folder
    with pytest.raises(
        ValueError, match=r"feed_cache_dir[\s\S]*the value is empty; give a folder, or unset it"
    ):
        Settings()


def test_a_write_deletes_entries_past_the_age_and_stale_temporary_files_only(tmp_path: Path) -> None:
    old, young = URL + "&old", URL + "&young"
    for url in (old, young):
        feedcache.keep(tmp_path, url, b"<rss/>", '"v1"', None, at=url)
    two_days_ago = time.time() - 2 * feedcache.MAX_AGE_S
    key = feedcache.digest(old)
    stale, fresh = tmp_path / f".{key}.feed.abc.tmp", tmp_path / f".{key}.json.def.tmp"
    mine = tmp_path / "notes.txt"  # not a name it writes: a folder shared with other files
    for path in (stale, fresh, mine):
        path.write_bytes(b"x")
    for path in (*tmp_path.glob(f"{key}.*"), stale, mine):
        os.utime(path, (two_days_ago, two_days_ago))

    feedcache.keep(tmp_path, URL, b"<rss/>", '"v1"', None, at=URL)
    assert feedcache.kept(tmp_path, old, max_age_s=1e9) is None and not list(tmp_path.glob(f"{key}.*"))
    assert not stale.exists() and fresh.exists() and mine.exists()
    assert feedcache.kept(tmp_path, young) is not None and feedcache.kept(tmp_path, URL) is not None
