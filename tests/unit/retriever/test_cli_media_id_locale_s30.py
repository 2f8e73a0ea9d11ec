"""``search --media-id URL`` with a URL typed in a UTF-8 terminal whose locale is unset
(``LC_ALL=C PYTHONUTF8=0``: surrogate escapes), or with bytes that are no UTF-8 (tester 2 of
session 30: "error: unexpected UnicodeEncodeError ... please report it")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from tests.unit.retriever.conftest import SENTENCES, media_ref, spans_of

STORED = "https://ex.org/caf%C3%A9.mp3"


@pytest.fixture
def remote_store(tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "q"
    with open_store(path=path) as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref(STORED, fingerprint="etag:1")
        store.write_media(ref, model.model_id, [(spans_of(ref, 2), model.encode_text(SENTENCES[:2]))])
    monkeypatch.setenv("CLASP_MODEL", "tiny-random")
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    return path


def test_a_url_in_surrogate_escapes_names_the_item_typed(remote_store: Path) -> None:
    typed = "https://ex.org/café.mp3".encode().decode("ascii", "surrogateescape")  # as in LC_ALL=C
    args = ["search", SENTENCES[0], "--qdrant-path", str(remote_store), "--json"]
    result = CliRunner().invoke(app, [*args, "--media-id", typed])
    assert result.exit_code == 0, result.output
    assert {hit["source"] for hit in json.loads(result.stdout)} == {STORED}


def test_a_url_that_is_no_utf8_says_so(remote_store: Path) -> None:
    args = ["search", SENTENCES[0], "--qdrant-path", str(remote_store)]
    result = CliRunner().invoke(app, [*args, "--media-id", "http://ex.org/\udce9.mp3"])  # latin-1 é
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --media-id is not text: its bytes are not UTF-8"), result.stderr
