"""Ingest-time words cut batch by batch (:class:`~clasp_ingest.words.SpanWordsMaker`, fed by the
pipeline one batch behind) give every word the span the whole-file cut gives it: a word in the
gap after a batch's last span, nearer that span but more than the tolerance before the next
batch, was dropped, and so was a word just after the file's last span when Whisper heard another
one far past it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from clasp_ingest.pipeline import _Clock, _with_words
from clasp_ingest.transcribe import TimedWord
from clasp_ingest.types import Segment
from clasp_ingest.words import (
    ALIGN_TOLERANCE_S,
    MediaWords,
    SpanWordsMaker,
    _placed_at,
    align_words,
    sparse_words,
)
from tests.unit.transcribe.test_ingest_words import seg, tower, word


def _whisper_time(t: float) -> float:
    return max(0.0, round(round(t / 0.02) * 0.02, 2))  # Whisper's words are timed to 20 ms


def layout(seed: int) -> tuple[list[Segment], tuple[TimedWord, ...], list[list[Segment]]]:
    """Spans as the segmenter makes them (in time order, ms times, none overlapping, some
    touching), words as Whisper times them (20 ms steps, some of no length, some overlapping,
    in order of start), many placed near span edges and some far past the last span, and the
    spans split into batches at random."""
    rng = np.random.default_rng(seed)
    spans: list[Segment] = []
    t = float(rng.uniform(0.0, 1.0))
    for i in range(int(rng.integers(1, 10))):
        kind = int(rng.integers(4)) if i else 3
        gap = (0.0, rng.uniform(0.0, 0.3), rng.uniform(0.3, 1.5), rng.uniform(1.5, 4.0))[kind]
        start = round(t + gap, 3)
        end = round(start + float(rng.uniform(0.05, 3.0)), 3)
        spans.append(seg(i, start, end))
        t = end
    edges = [edge for span in spans for edge in (span.start_s, span.end_s)]
    words = []
    for j in range(int(rng.integers(0, 25))):
        if rng.random() < 0.7:  # placed near a span's edge: inside it, or in the gap beside it
            placed = float(rng.choice(edges)) + float(rng.uniform(-1.2, 1.2))
        else:
            placed = float(rng.uniform(0.0, t + 6.0))
        length = (0.0, rng.uniform(0.0, 0.2), rng.uniform(0.2, 1.0))[int(rng.integers(3))]
        end = _whisper_time(placed + min(0.1, length / 2))
        words.append(word(min(end, _whisper_time(end - length)), end, f" w{j}"))
    words.sort(key=lambda w: (w.start_s, w.end_s))
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, len(spans) + 1), size=rng.integers(0, len(spans))))
    bounds = sorted({0, *cuts, len(spans)})
    batches = [spans[a:b] for a, b in itertools.pairwise(bounds)]
    return spans, tuple(words), batches


def test_the_layouts_hold_words_a_batch_cut_can_lose() -> None:
    # the properties below are worth little unless many layouts hold a word in the gap after a
    # batch, within the tolerance of its last span and further from the next batch
    lost = 0
    for seed in range(60):
        _, words, batches = layout(seed)
        for before, after in itertools.pairwise(batches):
            end, start = before[-1].end_s, after[0].start_s
            placed = [_placed_at(w) for w in words]
            lost += any(0 < t - end <= ALIGN_TOLERANCE_S < start - t for t in placed)
    assert lost >= 10  # 12 of these 60


def test_the_pipelines_batches_get_the_words_the_whole_file_cut_gives() -> None:
    # through the pipeline's own feed (one batch behind), with the real text tower's vectors
    wrong = []
    for seed in range(60):
        spans, words, batches = layout(seed)
        maker = SpanWordsMaker(MediaWords(words, "en", "faster-whisper:test"), tower())
        made = [
            span_words
            for _, _, batch_words in _with_words(
                ((batch, np.zeros((len(batch), 4), np.float32)) for batch in batches), maker, _Clock()
            )
            for span_words in batch_words
        ]
        whole = align_words(words, spans)
        if [w.text for w in made] != whole:
            wrong.append(seed)
            continue
        for span_words, text in zip(made, whole, strict=True):
            assert (span_words.dense is not None) == bool(text)
            assert span_words.sparse == (sparse_words(text) if text else None)
    assert wrong == [], f"{len(wrong)} of 60 layouts cut otherwise than whole, e.g. seed {wrong[:5]}"


def test_any_batches_cut_as_the_whole_file_in_many_layouts() -> None:
    wrong = []
    for seed in range(2000):
        spans, words, batches = layout(seed)
        maker = SpanWordsMaker(MediaWords(words, "en", "faster-whisper:test"), tower())
        nexts = [*(batch[0] for batch in batches[1:]), None]
        cut = [
            text
            for batch, following in zip(batches, nexts, strict=True)
            for text in maker.cut(batch, following)
        ]
        if cut != align_words(words, spans):
            wrong.append(seed)
    assert wrong == [], f"{len(wrong)} of 2000 layouts cut otherwise than whole, e.g. seed {wrong[:5]}"


def test_a_gap_word_nearer_the_batch_before_goes_to_its_last_span() -> None:
    media = MediaWords(
        (word(0.5, 1.0, " one"), word(2.2, 2.4, " gap"), word(3.6, 4.0, " two")), "en", "faster-whisper:test"
    )
    spans = [seg(0, 0.0, 2.1), seg(1, 3.5, 4.2)]
    # " gap" is placed at 2.3: 0.2 s after the first span, 1.2 s before the second
    assert align_words(media.words, spans) == ["one gap", "two"]
    maker = SpanWordsMaker(media, tower())
    assert [w.text for w in maker([spans[0]], spans[1]) + maker([spans[1]], None)] == ["one gap", "two"]


def test_a_tail_word_goes_to_the_last_span_though_a_word_far_past_it_was_heard() -> None:
    media = MediaWords(
        (word(0.5, 1.0, " one"), word(2.2, 2.4, " tail"), word(8.0, 8.6, " Thanks.")),
        "en",
        "faster-whisper:test",
    )
    spans = [seg(0, 0.0, 2.1)]
    assert align_words(media.words, spans) == ["one tail"]
    assert [w.text for w in SpanWordsMaker(media, tower())(spans, None)] == ["one tail"]


def test_a_word_where_two_batches_touch_goes_where_the_whole_file_puts_it() -> None:
    # placed at 2.0 (it ends at 2.1), where the spans touch: both hold it, the shorter one
    # (its middle nearer) takes it, here the span before
    media = MediaWords((word(1.9, 2.1, " edge"),), "en", "faster-whisper:test")
    spans = [seg(0, 1.5, 2.0), seg(1, 2.0, 5.0)]
    assert align_words(media.words, spans) == ["edge", ""]
    maker = SpanWordsMaker(media, tower())
    assert maker.cut([spans[0]], spans[1]) + maker.cut([spans[1]], None) == ["edge", ""]


def test_a_batch_that_does_not_start_with_the_span_named_before_is_refused() -> None:
    media = MediaWords((word(0.5, 1.0, " one"),), "en", "faster-whisper:test")
    maker = SpanWordsMaker(media, tower())
    maker.cut([seg(0, 0.0, 2.0)], seg(1, 3.0, 4.0))
    with pytest.raises(ValueError, match=r"named span 1 \(3.0-4.0 s\) as the next; pass each batch's own"):
        maker.cut([seg(2, 5.0, 6.0)], None)
