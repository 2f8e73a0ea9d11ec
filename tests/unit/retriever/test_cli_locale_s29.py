"""``search`` with a query typed in a UTF-8 terminal whose locale is unset (``LC_ALL=C`` with
``PYTHONUTF8=0``): Python hands it over as surrogate escapes (tester 2 of session 29). The real
command line in that locale: tests/integration/cli/test_hostile_env_s29.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from tests.unit.retriever.conftest import media_ref, spans_of

QUERIES = ["猫在睡觉", "القطة تنام", "¿Qué fotografió el telescopio?", "the cat sleeps"]


def in_c_locale(text: str) -> str:
    """``text`` as Python decodes it from the command line in an ASCII locale."""
    return text.encode("utf-8").decode("ascii", "surrogateescape")


@pytest.fixture
def store_of_queries(tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One item whose span ``i`` has the text vector of ``QUERIES[i]``: its query finds it at 1.0."""
    path = tmp_path / "q"
    with open_store(path=path) as store:
        store.ensure_collection(model.model_id, model.dim)
        ref = media_ref("file:///media/talk.wav", fingerprint="v1")
        store.write_media(ref, model.model_id, [(spans_of(ref, len(QUERIES)), model.encode_text(QUERIES))])
    monkeypatch.setenv("CLASP_MODEL", "tiny-random")
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    return path


@pytest.mark.parametrize("query", QUERIES)
def test_a_query_in_surrogate_escapes_is_read_as_the_utf8_typed(store_of_queries: Path, query: str) -> None:
    """A query of "猫在睡觉" was refused as empty, "¿Qué ...?" embedded as other text."""
    args = ["search", "--k", "1", "--qdrant-path", str(store_of_queries)]
    result = CliRunner().invoke(app, [*args, in_c_locale(query), "--json"])
    assert result.exit_code == 0, result.output
    (hit,) = json.loads(result.stdout)
    assert hit["start_s"] == 3.0 * QUERIES.index(query) and hit["score"] > 0.999
    table = CliRunner().invoke(app, [*args, in_c_locale(query)])
    assert table.exit_code == 0 and table.stdout.startswith(f"1 span for {query!r}")


def test_a_query_that_is_no_utf8_says_the_locale_remedy(store_of_queries: Path) -> None:
    """Bytes of a latin-1 terminal (``caf\\xe9``) are no text in any encoding it can know."""
    result = CliRunner().invoke(app, ["search", "caf\udce9", "--qdrant-path", str(store_of_queries)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the query is not text: its bytes are not UTF-8"), result.stderr
    # this process's locale is UTF-8 already: the terminal is what to change (reviewer 3)
    assert "the locale is UTF-8: set the terminal's encoding to UTF-8 too" in result.stderr
