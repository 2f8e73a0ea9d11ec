"""File names that are not plain ASCII: valid UTF-8 (Japanese, emoji, spaces) and bytes that
are not UTF-8 at all (``caf\\xe9.wav`` from a Latin-1 system). The CLI runs: tests/integration/cli."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clasp_ingest.connectors import LocalConnector, connector_for
from clasp_ingest.connectors.local import display_name, path_of_uri

from clasp_ingest.media import decode_audio
from clasp_ingest.store.base import build_payload
from clasp_ingest.types import Segment, media_id_for
from tests.fixtures_audio import SR, tone, write_wav

LATIN1 = b"caf\xe9 cr\xe8me.wav"  # not UTF-8
UNICODE = "日本語 🎤 talk.wav"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    raw = os.fsencode(tmp_path)
    write_wav(Path(os.fsdecode(raw + b"/" + LATIN1)), tone(440.0, 1.0))
    write_wav(tmp_path / UNICODE, tone(660.0, 1.0))
    return tmp_path


def test_non_utf8_and_unicode_names_are_listed_opened_and_stable(folder: Path) -> None:
    refs = {ref.metadata["filename"]: ref for ref in LocalConnector(folder).discover()}
    assert set(refs) == {"caf\\xe9 cr\\xe8me.wav", UNICODE}  # undecodable bytes as escapes
    latin = refs["caf\\xe9 cr\\xe8me.wav"]
    assert latin.uri == f"{folder.as_uri()}/caf%E9%20cr%E8me.wav" and latin.uri.isascii()
    assert latin.title == "caf\\xe9 cr\\xe8me" and latin.media_id == media_id_for(latin.uri)
    assert os.fsencode(path_of_uri(latin.uri)) == os.fsencode(folder) + b"/" + LATIN1
    again = {ref.uri: ref.media_id for ref in LocalConnector(folder).discover()}
    assert again == {ref.uri: ref.media_id for ref in refs.values()}  # stable across runs
    for ref in refs.values():
        with LocalConnector(folder).open(ref) as local:
            assert decode_audio(local).size == pytest.approx(SR, abs=2)
    assert refs[UNICODE].title == "日本語 🎤 talk"
    assert path_of_uri(refs[UNICODE].uri) == folder / UNICODE


def test_a_non_utf8_file_given_by_name_or_uri(folder: Path) -> None:
    path = os.fsdecode(os.fsencode(folder) + b"/" + LATIN1)
    by_name = next(connector_for(path).discover())
    by_uri = next(connector_for(Path(path).as_uri()).discover())
    assert by_name.uri == by_uri.uri and by_name.media_id == by_uri.media_id


def test_payloads_are_valid_utf8_json(folder: Path) -> None:
    for ref in LocalConnector(folder).discover():
        payload = build_payload(
            ref, "tiny-random", Segment(ref.media_id, 0, 0.0, 1.0), "2026-01-01T00:00:00Z"
        )
        text = json.dumps(payload, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
        meta = json.loads(text)["metadata"]
        assert meta["source"] == ref.uri and meta["title"] == ref.title
    assert display_name(os.fsdecode(b"\xff\xfe.mp3")) == "\\xff\\xfe.mp3"
