"""A RAG developer's findings (session 39): ``from_settings`` with a bad ``CLASP_*`` variable is
a ``ConfigError`` naming it (pydantic's ``ValidationError`` named the field), ``repr`` of the
settings does not show the API key, and a query of a byte-order mark alone is refused by the
embeddings class as by the retriever (it returned a vector: langchain-qdrant found arbitrary
spans)."""

from __future__ import annotations

import pytest
from clasp_ingest.retriever import ClaspRetriever, ClaspTextEmbeddings

from clasp_ingest.config import Settings
from clasp_ingest.errors import ConfigError


@pytest.mark.parametrize("build", [ClaspRetriever.from_settings, ClaspTextEmbeddings.from_settings])
def test_a_bad_variable_is_a_config_error_naming_it(build: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", "")
    with pytest.raises(ConfigError, match=r"^CLASP_QDRANT_PATH='': the value is empty; give a folder; fix"):
        build()  # type: ignore[operator]


def test_the_api_key_is_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASP_QDRANT_API_KEY", "key-s39")
    settings = Settings.from_env()
    assert settings.qdrant_api_key == "key-s39"
    assert "key-s39" not in repr(settings) and "key-s39" not in str(settings)


@pytest.mark.parametrize("text", ["\ufeff", " \u200b\n", ""])
def test_a_query_that_says_nothing_is_refused_by_the_embeddings_too(text: str) -> None:
    embeddings = ClaspTextEmbeddings(model_name="tiny-random")
    with pytest.raises(ValueError, match="is empty; say what to look for"):
        embeddings.embed_query(text)
    assert len(embeddings.embed_query("\ufeffhello")) == 32


def test_a_span_without_all_its_words_has_no_language_either() -> None:
    """``context=1`` over neighbours without words: ``transcript`` None but
    ``transcript_language`` "en" (the hit's own segment's), which a RAG prompt took as words."""
    from clasp_ingest.retriever.spans import Span

    common = {"source": "file:///a.wav", "media_id": "m", "title": "a", "start_s": 1.0, "end_s": 4.0}
    part = Span(**common, score=0.5, segment_indices=(5, 6), texts=(None, "words"),
                extra={"transcript_language": "en"})  # fmt: skip
    whole = Span(**common, score=0.5, segment_indices=(5, 6), texts=("some", "words"),
                 extra={"transcript_language": "en"})  # fmt: skip
    assert (part.transcript, part.transcript_language) == (None, None)
    assert (whole.transcript, whole.transcript_language) == ("some words", "en")
