"""``exclude`` (``ingest --exclude``): items a pattern matches are left out of a run, neither
ingested nor counted as failed, and told apart in the summary; real ffmpeg, tiny model, Qdrant Edge."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from clasp_ingest.connectors import LocalConnector

from clasp_ingest.errors import ConfigError
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.pipeline import (
    EXCLUDES_ALL,
    PipelineOptions,
    excluded_by,
    ingest_source,
    warn_unused_patterns,
)
from clasp_ingest.store import open_store
from tests.unit.pipeline.speech import corrupt

FAST = PipelineOptions(embed_batch_size=2, retry_delay_s=0.01)


@pytest.mark.parametrize(
    ("uri", "patterns", "expected"),
    [
        ("file:///srv/media/talk.part", ["*.part"], "*.part"),  # no '/': the last name
        ("file:///srv/media/talk.opus", ["*.part"], None),
        ("file:///srv/media/part/talk.opus", ["part"], None),  # a folder's name is no file name
        ("file:///srv/rushes/day1/a.wav", ["*/rushes/*"], "*/rushes/*"),  # '/': the path, '*' crosses '/'
        ("file:///srv/media/a.wav", ["/srv/media/*"], "/srv/media/*"),
        ("file:///srv/Media/A.WAV", ["*.wav"], None),  # case counts
        ("file:///srv/media/draft%20one.mp3", ["draft one.*"], "draft one.*"),  # escapes decoded
        ("https://cdn.example.org/eps/ep1.mp3?token=x", ["ep?.mp3"], "ep?.mp3"),  # no query
        ("https://cdn.example.org/eps/ep1.mp3", ["*example.org*"], None),  # nor host
        ("s3://bucket/raw/a.wav", ["/raw/*"], "/raw/*"),
        ("/plain/path/x.tmp", ["a", "*.tmp"], "*.tmp"),  # the first that matches
        ("file:///srv/media/a.wav", [], None),
        ("file:///srv/talks/old/a.wav", ["old/*"], "old/*"),  # relative: below a folder 'old' anywhere
        ("file:///srv/talks/old/deep/a.wav", ["./old/*"], "./old/*"),
        ("file:///srv/talks/old/deep/a.wav", ["old/"], "old/"),  # a folder: everything below it
        ("file:///srv/talks/bold/a.wav", ["old/"], None),  # a folder's whole name
        ("s3://bucket/rushes/take?1.wav", ["*.wav"], "*.wav"),  # a key's '?', '#', '%' are its own
        ("s3://bucket/rushes/a#b.wav", ["/rushes/*"], "/rushes/*"),
        ("s3://bucket/100%25 done.wav", ["100%25 *"], "100%25 *"),
    ],
)
def test_what_a_pattern_matches(uri: str, patterns: list[str], expected: str | None) -> None:
    assert excluded_by(uri, patterns) == expected


def test_one_pattern_given_as_a_string_is_one_pattern_and_empty_ones_are_refused() -> None:
    assert PipelineOptions(exclude="*.part").exclude == ("*.part",)  # type: ignore[arg-type]
    assert PipelineOptions(exclude=["a", "b"]).exclude == ("a", "b")  # type: ignore[arg-type]
    for bad in ([""], ["  "], [3]):
        with pytest.raises(ConfigError, match="exclude"):
            PipelineOptions(exclude=bad)  # type: ignore[arg-type]


def test_excluded_items_are_left_out_not_failed(
    tmp_path: Path, speech_sources: dict[str, Path], tiny_model: AudioTextEncoder
) -> None:
    media = tmp_path / "media"
    (media / "rushes").mkdir(parents=True)
    shutil.copy(speech_sources["one.wav"], media / "one.wav")
    shutil.copy(speech_sources["two.mp3"], media / "rushes" / "two.mp3")
    corrupt(media / "cut.part.mp3")  # a download still in progress: fails every night
    with open_store(path=tmp_path / "q") as store:
        plain = ingest_source(LocalConnector(media), tiny_model, store, FAST)
        assert (plain.media_ok, len(plain.media_failed)) == (2, 1)
        store.drop()
        options = replace(FAST, exclude=("*.part.*", "*/rushes/*"))
        run = ingest_source(LocalConnector(media), tiny_model, store, options)
        assert (run.media_ok, run.media_failed, run.media_skipped) == (1, [], 0)
        assert sorted(Path(uri).name for uri in run.excluded) == ["cut.part.mp3", "two.mp3"]
        assert run.to_dict()["media_excluded"] == 2 and run.source_warnings == ()
        assert [Path(item.source).name for item in store.media()] == ["one.wav"]

        # a pattern that leaves out everything is said, as a source that lists nothing is
        everything = ingest_source(LocalConnector(media), tiny_model, store, replace(FAST, exclude=("*",)))
        assert everything.results == () and len(everything.excluded) == 3
        assert everything.source_warnings == ((str(media), EXCLUDES_ALL),)


def test_recreate_keeps_the_collection_when_every_listed_item_is_excluded(
    tmp_path: Path, speech_sources: dict[str, Path], tiny_model: AudioTextEncoder
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(speech_sources["one.wav"], media / "one.wav")
    with open_store(path=tmp_path / "q") as store:
        first = ingest_source(LocalConnector(media), tiny_model, store, FAST)
        kept = store.count()
        assert first.media_ok == 1 and kept > 0
        options = replace(FAST, exclude=("one.*",))
        again = ingest_source(LocalConnector(media), tiny_model, store, options, recreate=True)
        assert again.results == () and store.count() == kept  # nothing to ingest: nothing dropped
        assert (
            again.source_warnings == ((str(media), EXCLUDES_ALL),) and again.to_dict()["media_excluded"] == 1
        )


def test_a_home_pattern_and_patterns_that_match_nothing_are_said(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", "/home/ann")
    assert excluded_by("file:///home/ann/talks/a.wav", ["~/talks/*"]) == "~/talks/*"
    excluded = ["file:///srv/talks/old/a.wav"]
    assert warn_unused_patterns(["old/*", "/tmp/*", "*.part"], excluded) == ["/tmp/*", "*.part"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and "'/tmp/*' matched no listed item" in said[0]
