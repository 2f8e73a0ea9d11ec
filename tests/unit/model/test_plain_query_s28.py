"""Queries as people type them: one spelling of a word, whatever Unicode form or direction
marks an interface gives it (a tester: 7 of 43 queries in 15 languages changed their first span
when typed decomposed, up to 9 when wrapped in RTL isolates)."""

from __future__ import annotations

import unicodedata

import numpy as np

from clasp_ingest.model import load_query_model
from clasp_ingest.words import query_words, words_of

COMPOSED = "El médico recomienda caminar cada día."


def test_a_decomposed_or_bidi_wrapped_query_is_the_same_query() -> None:
    query = load_query_model("clasp-mini", device="cpu")
    decomposed = unicodedata.normalize("NFD", COMPOSED)
    assert decomposed != COMPOSED
    same = [COMPOSED, decomposed, f"\u2067{COMPOSED}\u2069", f"\u200f{decomposed}\u200e"]
    vectors = query.encode_text(same)
    for vector in vectors[1:]:
        np.testing.assert_array_equal(vector, vectors[0])
    assert query_words(decomposed) == query_words(COMPOSED)  # hybrid search's words too


def test_words_keep_their_combining_marks() -> None:
    """``\\w+`` split a Hindi or Thai word at each vowel sign: "दिन" (day) and "दान" (gift) were
    both द, न, and so were one word."""
    assert words_of("हिन्दी दिन दान") == ["हिन्दी", "दिन", "दान"]
    assert words_of("ผึ้ง ผิง") == ["ผึ้ง", "ผิง"]
    assert query_words("दिन") != query_words("दान")
    assert words_of("Don't stop_me, Straße 3.5") == [
        "don",
        "t",
        "stop_me",
        "strasse",
        "3",
        "5",
    ]  # as \\w+ did
