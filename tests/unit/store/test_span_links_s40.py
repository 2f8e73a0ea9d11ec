"""A span's link as ``search`` prints it (``source#t=start,end``) names its item: a reviewer
pasted one into ``--media-id``, ``store delete`` and ``SearchFilter(source=...)`` and matched
nothing. Only http(s) and ``file://`` URIs lose the fragment (their stored form escapes a ``#``
of a name as ``%23``); a local path and an ``s3://`` key keep a ``#``, which is part of the name."""

from __future__ import annotations

from clasp_ingest.store import SearchFilter
from clasp_ingest.store.base import StoredMedia
from clasp_ingest.store.cli_store import _matched
from clasp_ingest.types import media_id_for


def _item(source: str) -> StoredMedia:
    return StoredMedia(
        media_id_for(source), source, "t", "v", "m", "2026-12-08T00:00:00+00:00", "complete", 3
    )


def test_a_span_link_filters_its_item() -> None:
    talk = "https://cdn.example.org/ep/talk.mp3"
    assert SearchFilter(source=f"{talk}#t=32.7,37.188").source == talk
    assert SearchFilter(media_id=f"{talk}#t=1,2").media_id == media_id_for(talk)
    assert SearchFilter(source="file:///srv/a.opus#t=1,2").source == "file:///srv/a.opus"
    assert SearchFilter(source="/srv/x#y.mp3").source == "file:///srv/x%23y.mp3"  # a name's '#'
    assert SearchFilter(source="s3://bucket/a#b.wav").source == "s3://bucket/a#b.wav"


def test_store_delete_takes_a_span_link() -> None:
    items = [
        _item("file:///srv/a.opus"),
        _item("https://cdn.example.org/ep/talk.mp3"),
        _item("s3://b/a#b.wav"),
    ]
    assert list(_matched(items, "file:///srv/a.opus#t=10.456,15.067").values()) == ["file:///srv/a.opus"]
    assert list(_matched(items, "https://cdn.example.org/ep/talk.mp3#t=1,2").values()) == [items[1].source]
    assert list(_matched(items, "s3://b/a#b.wav").values()) == ["s3://b/a#b.wav"]
    assert _matched(items, "file:///srv/b.opus#t=1,2") == {}
