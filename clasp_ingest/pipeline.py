"""The ingestion pipeline in plain Python: decode → segment → embed in batches → upsert.

Usable without Prefect (``ingest_source`` loops, retries transient failures itself, and
reports progress through a callback); the Prefect flows in :mod:`clasp_ingest.flows` call
:func:`ingest_media` per item and add orchestration around it.

A media item is written through :meth:`QdrantStore.write_media`, which makes a version
visible only once complete and removes a partial write on failure, so an item is either
stored whole at its current version or not at all; a run killed mid-way is repaired by
running it again (items whose version is complete are skipped, the rest rewritten).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import math
import numbers
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

import numpy as np

from clasp_ingest.errors import (
    ClaspIngestError,
    CollectionMismatchError,
    ConfigError,
    ConnectorError,
    IngestInterrupted,
    MediaDecodeError,
    ModelLoadError,
    StoreError,
    StoreFullError,
    TransientConnectorError,
)
from clasp_ingest.model.base import SAMPLE_RATE, AudioTextEncoder, Preloadable
from clasp_ingest.store.metric import QueryMetric
from clasp_ingest.types import MediaRef, Segment

if TYPE_CHECKING:
    from types import FrameType

    from clasp_ingest.connectors.base import Connector
    from clasp_ingest.media.decode import DecodeOptions
    from clasp_ingest.media.segment import SegmenterOptions, SpeechSegment
    from clasp_ingest.store import QdrantStore
    from clasp_ingest.store.base import Batch, StoredMedia
    from clasp_ingest.transcribe import TranscriberOptions
    from clasp_ingest.words import SpanWords, SpanWordsMaker

__all__ = [
    "EmbedFn",
    "IngestSummary",
    "ItemProgress",
    "MediaResult",
    "PipelineOptions",
    "Progress",
    "ProgressCallback",
    "StageTimes",
    "StoredItems",
    "collection_for",
    "describe_error",
    "discover_new",
    "excluded_by",
    "failed_result",
    "ingest_media",
    "ingest_source",
    "is_transient",
    "list_source",
    "list_sources",
    "listing_failures",
    "lists_media",
    "progress_of",
    "prune_unlisted",
    "select_new",
    "text_dim_for",
    "took_listing",
    "warn_unused_patterns",
]

log = logging.getLogger("clasp_ingest.pipeline")

T = TypeVar("T")
MediaStatus = Literal["ok", "skipped", "failed"]
#: Embeds a batch of 16 kHz waveforms: ``(n, dim)`` float32, L2-normalised.
EmbedFn = Callable[[Sequence[np.ndarray]], np.ndarray]
#: Told, during one item, the segments embedded so far and the media position reached (s).
ItemProgress = Callable[[int, float], None]

#: Errors of the model or the store's disk, not of an item: every item would fail the same way,
#: so the run stops (in-process here, and in the flow's ``_collect``).
STOPS_THE_RUN: tuple[type[BaseException], ...] = (ModelLoadError, StoreFullError)

_PERMANENT: tuple[type[BaseException], ...] = (
    IngestInterrupted,
    MediaDecodeError,
    ConnectorError,
    CollectionMismatchError,
    StoreFullError,
    ConfigError,
    ModelLoadError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
    TypeError,
    ImportError,
)
_TRANSIENT: tuple[type[BaseException], ...] = (StoreError, TimeoutError, ConnectionError, OSError)
_TRANSIENT_NAMES = (
    "Timeout",
    "ClientError",
    "EndpointConnectionError",
    "ConnectionClosed",
    "ServerDisconnected",
)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: network and store hiccups yes; bad media, bad config no."""
    if isinstance(exc, TransientConnectorError):
        return True
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, _TRANSIENT):
        return True
    return any(name in cls.__name__ for cls in type(exc).__mro__ for name in _TRANSIENT_NAMES)


# --------------------------------------------------------------------------- options and results


@dataclass(frozen=True)
class PipelineOptions:
    """How media are processed.

    ``prefetch_segments``: segments decoded ahead on a background thread while the model
    embeds (0 decodes inline). ``retries``/``retry_delay_s``: plain-Python retries of
    transient failures in :func:`ingest_source` (the Prefect flows use task retries instead;
    the delay doubles after each try). ``force``: re-ingest items already stored complete.
    ``transcribe``: also store words (``ingest --transcribe``): each item is transcribed once,
    whole, by this Whisper (:mod:`clasp_ingest.words`), and every span gets its words and the
    ``text``/``words`` vectors; the collection must have them (a new one gets them).
    ``prune``: delete the stored items a folder or bucket-prefix source no longer lists
    (:func:`prune_unlisted`; ``ingest --prune``). ``exclude``: patterns of items to leave out
    (``ingest --exclude``; :func:`excluded_by`): neither ingested nor pruned.
    """

    embed_batch_size: int = 32
    segmenter: SegmenterOptions | None = None
    decode: DecodeOptions | None = None
    prefetch_segments: int = 32
    retries: int = 2
    retry_delay_s: float = 1.0
    force: bool = False
    transcribe: TranscriberOptions | None = None
    prune: bool = False
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # one pattern given as a string is that pattern, not its characters (``exclude="*.part"``)
        patterns = (self.exclude,) if isinstance(self.exclude, str) else tuple(self.exclude)
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern.strip():
                raise ConfigError(f"PipelineOptions.exclude holds {pattern!r}; give non-empty patterns")
        object.__setattr__(self, "exclude", patterns)
        for name in ("embed_batch_size", "prefetch_segments", "retries"):  # None failed deep inside
            count = getattr(self, name)
            if isinstance(count, bool) or not isinstance(count, numbers.Integral):
                raise ConfigError(f"PipelineOptions.{name} must be a whole number, got {count!r}")
        delay = self.retry_delay_s
        if isinstance(delay, bool) or not isinstance(delay, numbers.Real) or not math.isfinite(delay):
            raise ConfigError(f"PipelineOptions.retry_delay_s must be a finite number, got {delay!r}")
        if self.embed_batch_size < 1:
            raise ConfigError(f"PipelineOptions.embed_batch_size must be >= 1, got {self.embed_batch_size}")
        if self.prefetch_segments < 0 or self.retries < 0 or self.retry_delay_s < 0:
            raise ConfigError("PipelineOptions.prefetch_segments, retries and retry_delay_s must be >= 0")
        if self.decode is not None and self.decode.sample_rate != SAMPLE_RATE:
            raise ConfigError(
                f"the pipeline decodes at {SAMPLE_RATE} Hz, "
                f"got DecodeOptions.sample_rate={self.decode.sample_rate}"
            )


@dataclass(frozen=True)
class StageTimes:
    """Wall seconds per stage of one item: fetch (download/open), decode+segment, embed, upsert,
    and (``transcribe``) words: the whole-file transcription and the word vectors."""

    fetch_s: float = 0.0
    decode_segment_s: float = 0.0
    embed_s: float = 0.0
    upsert_s: float = 0.0
    words_s: float = 0.0

    def __add__(self, other: StageTimes) -> StageTimes:
        return StageTimes(
            self.fetch_s + other.fetch_s,
            self.decode_segment_s + other.decode_segment_s,
            self.embed_s + other.embed_s,
            self.upsert_s + other.upsert_s,
            self.words_s + other.words_s,
        )


@dataclass(frozen=True)
class MediaResult:
    """What happened to one media item (``warnings``: damage that did not stop it, e.g. a
    truncated file decoded as far as it goes)."""

    uri: str
    media_id: str
    version: str
    status: MediaStatus
    segments: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    error: str = ""
    attempts: int = 1
    times: StageTimes = field(default_factory=StageTimes)
    warnings: tuple[str, ...] = ()


def failed_result(
    ref: MediaRef, exc: BaseException, *, wall_s: float = 0.0, attempts: int = 1
) -> MediaResult:
    """A ``failed`` result naming the error."""
    return MediaResult(
        ref.uri,
        ref.media_id,
        ref.fingerprint,
        "failed",
        wall_s=wall_s,
        error=describe_error(exc),
        attempts=attempts,
    )


def describe_error(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return text if isinstance(exc, ClaspIngestError) else f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class IngestSummary:
    """The outcome of a run over one or more sources."""

    results: tuple[MediaResult, ...] = ()
    source_errors: tuple[tuple[str, str], ...] = ()
    wall_s: float = 0.0
    pruned: tuple[str, ...] = ()  # sources of items deleted as no longer listed (--prune)
    #: ``(source, warning)`` for a source that listed but gave nothing to do: it lists no media
    #: file (an unmounted share), or it was not pruned (``--prune`` of a glob or feed)
    source_warnings: tuple[tuple[str, str], ...] = ()
    excluded: tuple[str, ...] = ()  # items listed but left out by an exclude pattern (--exclude)

    @property
    def media_ok(self) -> int:
        return sum(r.status == "ok" for r in self.results)

    @property
    def media_skipped(self) -> int:
        return sum(r.status == "skipped" for r in self.results)

    def no_source_listed(self, sources: int) -> bool:
        """Whether every one of the run's ``sources`` failed to list (nothing could be done)."""
        return bool(self.source_errors) and len(self.source_errors) == sources

    @property
    def media_failed(self) -> list[dict[str, str]]:
        """Failed items and sources that could not be listed: ``[{"uri", "error"}]``."""
        failed = [{"uri": r.uri, "error": r.error} for r in self.results if r.status == "failed"]
        return [{"uri": uri, "error": error} for uri, error in self.source_errors] + failed

    @property
    def media_warnings(self) -> list[dict[str, str]]:
        """Warnings of items that were still ingested: ``[{"uri", "warning"}]``."""
        return [{"uri": r.uri, "warning": w} for r in self.results for w in r.warnings]

    @property
    def segments(self) -> int:
        return sum(r.segments for r in self.results)

    @property
    def audio_s(self) -> float:
        return round(sum((r.audio_s for r in self.results), 0.0), 3)  # 0.0, not 0, with no item

    @property
    def times(self) -> StageTimes:
        total = StageTimes()
        for result in self.results:
            total = total + result.times
        return total

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``--json`` shape."""
        return {
            "media_ok": self.media_ok,
            "media_skipped": self.media_skipped,
            "media_failed": self.media_failed,
            "media_warnings": self.media_warnings,
            "media_pruned": list(self.pruned),
            "media_excluded": len(set(self.excluded)),  # an item listed by two sources once
            "source_warnings": [{"uri": uri, "warning": warning} for uri, warning in self.source_warnings],
            "segments": self.segments,
            "audio_s": self.audio_s,
            "wall_s": round(self.wall_s, 3),
        }

    @staticmethod
    def merge(summaries: Iterable[IngestSummary], wall_s: float) -> IngestSummary:
        items = list(summaries)
        return IngestSummary(
            tuple(r for s in items for r in s.results),
            tuple(e for s in items for e in s.source_errors),
            wall_s,
            tuple(uri for s in items for uri in s.pruned),
            tuple(w for s in items for w in s.source_warnings),
            tuple(uri for s in items for uri in s.excluded),
        )


@dataclass(frozen=True)
class Progress:
    """Where a run stands; passed to the progress callback after each item and, with
    ``current`` set, after each embedded batch of the item in progress."""

    total: int
    done: int
    ok: int
    skipped: int
    failed: int
    segments: int
    audio_s: float
    last: MediaResult | None = None
    current: str | None = None
    current_segments: int = 0
    current_position_s: float = 0.0


ProgressCallback = Callable[[Progress], None]


# --------------------------------------------------------------------------- one media item


class _Clock:
    """Accumulates the seconds spent inside one stage."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def time(self, func: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return func()
        finally:
            self.seconds += time.perf_counter() - start


def _timed_iter(items: Iterator[T], clock: _Clock) -> Iterator[T]:
    sentinel = object()
    while (item := clock.time(lambda: next(items, sentinel))) is not sentinel:
        yield item  # type: ignore[misc]


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


#: Set while an interrupted run waits for the items other threads are ingesting (the flow's tasks).
_STOPPING = threading.Event()


@contextmanager
def items_stopping() -> Iterator[None]:
    """While inside, every item being ingested, in any thread, stops before its next batch with
    :class:`~clasp_ingest.errors.IngestInterrupted` (its partial write rolled back), and an
    item that starts stops at once; the http(s) downloads in flight are cut
    (:func:`~clasp_ingest.connectors.http.abort_downloads`: a blocked read would hold its item).
    A flow interrupted by Ctrl-C or SIGTERM (Prefect's cancellation) waits in here for its
    tasks before it closes the store under them."""
    from clasp_ingest.connectors.http import abort_downloads

    _STOPPING.set()
    abort_downloads()
    try:
        yield
    finally:
        _STOPPING.clear()


def _check_not_stopping(uri: str) -> None:
    if _STOPPING.is_set():
        raise IngestInterrupted(
            f"{uri}: the run was interrupted; nothing of this item was kept from this run (a version "
            "stored before stays)"
        )


def _embedded(
    speech: Iterable[SpeechSegment],
    embed: EmbedFn,
    batch_size: int,
    clock: _Clock,
    uri: str,
    on_batch: ItemProgress | None,
) -> Iterator[tuple[list[Segment], np.ndarray]]:
    done = 0
    for number, batch in enumerate(_batched(speech, batch_size), start=1):
        _check_not_stopping(uri)
        vectors = clock.time(lambda b=batch: embed([s.samples for s in b]))  # type: ignore[misc]
        log.debug("batch %d of %s: %d segments embedded, writing", number, uri, len(batch))
        done += len(batch)
        if on_batch is not None:
            on_batch(done, batch[-1].segment.end_s)
        yield [s.segment for s in batch], vectors


def _prefetched(items: Iterator[T], depth: int, stop: threading.Event | None = None) -> Iterator[T]:
    """Run ``items`` on a daemon thread, ``depth`` ahead; errors re-raise in the consumer.

    When the consumer stops (Ctrl-C, an error, closing) it sets ``stop`` and waits for the
    thread: ``items`` must check ``stop`` itself where it can take long without an item (the
    decode of a long silence gives no segment; it was checked only between items, so a Ctrl-C
    waited for the whole file, hours for a damaged header's 1 Hz WAV)."""
    if depth == 0:
        yield from items
        return
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = stop if stop is not None else threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(("end", None))
        except BaseException as exc:
            buffer.put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    # the caller's context (e.g. a Prefect run's logger) follows the decoding thread
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(produce,), name="clasp-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            _drain(buffer)
            thread.join(timeout=0.1)


def _drain(buffer: queue.Queue[tuple[str, Any]]) -> None:
    try:
        while True:
            buffer.get_nowait()
    except queue.Empty:
        pass


def _speech_of(
    local: str,
    ref: MediaRef,
    options: PipelineOptions,
    samples: list[int],
    warnings: list[str],
    languages: list[str] | None = None,
    tracks: list[int] | None = None,
    mixes: list[str] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[SpeechSegment]:
    """Decode ``local`` (counting samples into ``samples[0]``, collecting ``warnings`` on
    damaged data, the audio track's language tag into ``languages``, the number of audio
    tracks into ``tracks``, and ``"even"`` into ``mixes`` when its channels, having no layout,
    are mixed alike) and segment it as it streams. Damaged data is kept and warned about
    unless ``options.decode`` is strict. The decode ends at its next read once ``stop`` is set,
    and at its next block once the run is stopping (:func:`items_stopping`), speech or not."""
    from clasp_ingest.media.decode import DecodeOptions, stream_audio
    from clasp_ingest.media.segment import segment_blocks

    decode = options.decode or DecodeOptions(strict=False)
    on_language = languages.append if languages is not None else None

    def counted() -> Iterator[np.ndarray]:
        for block in stream_audio(
            local,
            decode,
            on_warning=warnings.append,
            on_language=on_language,
            on_tracks=tracks.append if tracks is not None else None,
            on_even_mix=(lambda: mixes.append("even")) if mixes is not None else None,
            shown=_shown(ref),
            stop=stop,
        ):
            _check_not_stopping(ref.uri)
            samples[0] += len(block)
            yield block

    yield from segment_blocks(counted(), media_id=ref.media_id, options=options.segmenter)


def _shown(ref: MediaRef) -> str | None:
    """What decoding calls ``ref``'s audio: for a download, its URL (as stored, redacted), not
    the temporary file the user never saw (its warnings said ``decoding
    /tmp/clasp-dl-.../media.mp3: ends early``)."""
    return None if ref.uri.startswith("file:") else ref.uri


def _media_words(
    local: str, ref: MediaRef, model: AudioTextEncoder, options: PipelineOptions
) -> SpanWordsMaker:
    """What gives each batch of ``ref``'s segments their words: the file, transcribed once,
    whole, here, in the language the item declares (its source's, else its audio track's tag)
    where Whisper knows it, then cut into the spans batch by batch, one batch behind
    (:func:`_with_words`)."""
    from clasp_ingest.media.decode import DecodeOptions, stream_audio
    from clasp_ingest.words import SpanWordsMaker, TextTower, shared_transcriber, transcribe_media

    if options.transcribe is None:  # pragma: no cover - the caller checks
        raise ConfigError("no transcriber options")
    transcriber = shared_transcriber(options.transcribe)
    tags: list[str] = []
    blocks = stream_audio(
        local, options.decode or DecodeOptions(strict=False), on_language=tags.append, shown=_shown(ref)
    )
    first = list(itertools.islice(blocks, 1))  # the track's language tag comes with the first block
    declared = _with_language(ref, tags).metadata.get("language")
    media = transcribe_media(
        itertools.chain(first, blocks), transcriber, language=str(declared) if declared else None
    )
    log.debug("%s: %d words heard (%s)", ref.uri, len(media.words), media.language)
    return SpanWordsMaker(media, TextTower(model))


def _with_words(
    batches: Iterable[tuple[list[Segment], np.ndarray]], words: SpanWordsMaker, clock: _Clock
) -> Iterator[tuple[list[Segment], np.ndarray, list[SpanWords]]]:
    """``batches`` with their segments' words, one batch behind: a batch's words are cut once
    the next batch's first span is known (or the batches have ended), so that each word goes
    where the whole-file cut puts it, one in the gap between two batches included (it was
    dropped when nearer the span before and more than the tolerance before the next batch)."""
    held: tuple[list[Segment], np.ndarray] | None = None
    for batch in batches:
        if held is not None:
            yield _worded(held, batch[0][0], words, clock)
        held = batch
    if held is not None:
        yield _worded(held, None, words, clock)


def _worded(
    batch: tuple[list[Segment], np.ndarray], following: Segment | None, words: SpanWordsMaker, clock: _Clock
) -> tuple[list[Segment], np.ndarray, list[SpanWords]]:
    segments, vectors = batch
    return segments, vectors, clock.time(lambda: words(segments, following))


def ingest_media(
    ref: MediaRef,
    connector: Connector,
    model: AudioTextEncoder,
    store: QdrantStore,
    options: PipelineOptions | None = None,
    *,
    embed: EmbedFn | None = None,
    on_batch: ItemProgress | None = None,
) -> MediaResult:
    """Decode, segment, embed and store one media item (version ``ref.fingerprint``).

    ``embed`` replaces ``model.encode_audio`` (the flows route batches through a GPU task).
    ``on_batch`` is called after each embedded batch with the segments so far and the media
    position reached (seconds). Raises on failure; the store then holds the item's previous
    version, or nothing.
    """
    opts = options or PipelineOptions()
    _check_not_stopping(ref.uri)
    started = time.perf_counter()
    fetch, decode, embedding, hearing, wording = _Clock(), _Clock(), _Clock(), _Clock(), _Clock()
    samples = [0]
    warnings: list[str] = []
    languages: list[str] = []
    tracks: list[int] = []
    mixes: list[str] = []
    with _opened(connector, ref, fetch) as local:
        cut = hearing.time(lambda: _media_words(local, ref, model, opts)) if opts.transcribe else None
        stop = threading.Event()  # set when the consumer of the prefetched segments stops
        speech = _prefetched(
            _speech_of(local, ref, opts, samples, warnings, languages, tracks, mixes, stop),
            opts.prefetch_segments,
            stop,
        )
        batches: Iterable[Batch] = _embedded(
            _timed_iter(speech, decode),
            embed or model.encode_audio,
            opts.embed_batch_size,
            embedding,
            ref.uri,
            on_batch,
        )
        if cut is not None:
            batches = _with_words(batches, cut, wording)  # type: ignore[arg-type]
        write_started = time.perf_counter()
        # the first batch comes before the write begins: by then the decoder has read the
        # audio track's language tag, which the item's points carry (unless its source named
        # one), and chosen its downmix, which span cuts of the item repeat
        pending = iter(batches)
        first = list(itertools.islice(pending, 1))
        from clasp_ingest.store.base import CHANNEL_MIX

        heard = _with_language(ref, languages)
        mixed = {k: v for k, v in heard.metadata.items() if k != CHANNEL_MIX}  # only the decoder's say
        heard = replace(heard, metadata={**mixed, **({CHANNEL_MIX: mixes[0]} if mixes else {})})
        written = store.write_media(heard, model.model_id, itertools.chain(first, pending))
        write_s = time.perf_counter() - write_started
    audio_s = round(samples[0] / SAMPLE_RATE, 3)
    if written == 0:
        from clasp_ingest.media.segment import no_speech_warning

        warnings.append(no_speech_warning(audio_s, tracks[0] if tracks else 1))
    times = StageTimes(
        fetch.seconds,
        decode.seconds,
        embedding.seconds,
        max(0.0, write_s - decode.seconds - embedding.seconds - wording.seconds),
        hearing.seconds + wording.seconds,
    )
    wall = time.perf_counter() - started
    log.info("ingested %s: %d segments, %.1f s of audio in %.2f s", ref.uri, written, audio_s, wall)
    return MediaResult(
        ref.uri,
        ref.media_id,
        ref.fingerprint,
        "ok",
        written,
        audio_s,
        wall,
        times=times,
        warnings=tuple(warnings),
    )


def _with_language(ref: MediaRef, tags: Sequence[str]) -> MediaRef:
    """``ref`` with ``metadata["language"]`` from its audio track's tag, where it had none; a
    language its source declared in another form (``pt-BR``, ``EN``, ``eng``) as the two-letter
    code a search filter takes for it (``SearchFilter(language="pt-BR")`` means ``pt``)."""
    from clasp_ingest.media.languages import tag_language

    declared = ref.metadata.get("language")
    language = tag_language(str(declared)) if declared else tag_language(tags[0]) if tags else None
    if language is None or language == declared:
        return ref
    return replace(ref, metadata={**ref.metadata, "language": language})


class _opened:
    """``connector.open(ref)`` with the time spent opening (downloading) measured."""

    def __init__(self, connector: Connector, ref: MediaRef, clock: _Clock) -> None:
        self._context = connector.open(ref)
        self._clock = clock

    def __enter__(self) -> str:
        return self._clock.time(self._context.__enter__)

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


# --------------------------------------------------------------------------- a whole source


def list_source(connector: Connector) -> list[MediaRef]:
    """Every item of one source (raises when it cannot be listed)."""
    return list(connector.discover())


def select_new(
    listed: Iterable[tuple[Connector, MediaRef]],
    store: QdrantStore,
    *,
    force: bool = False,
    words: bool = False,
) -> tuple[list[tuple[Connector, MediaRef]], list[MediaResult]]:
    """Split items into those to ingest and the results known without ingesting: items stored
    complete at their version (skipped; with ``words``, a run that stores words, only where
    they have them: an item ingested without ``--transcribe`` is ingested again, with words),
    and items the listing found but could not read (failed, e.g. an index page's link whose
    HEAD failed; ``connectors.base.LISTING_ERROR``).

    An item listed twice (by two sources) is kept once.
    """
    from clasp_ingest.connectors.base import LISTING_ERROR

    todo: list[tuple[Connector, MediaRef]] = []
    skipped: list[MediaResult] = []
    seen: set[str] = set()
    for connector, ref in listed:
        if ref.media_id in seen:
            continue
        seen.add(ref.media_id)
        error = ref.metadata.get(LISTING_ERROR)
        if error:
            log.error("failed to ingest %s: %s", ref.uri, error)
            skipped.append(MediaResult(ref.uri, ref.media_id, "", "failed", error=str(error), attempts=0))
        elif (
            not force
            and store.has_media(ref.media_id, ref.fingerprint)
            and (not words or store.has_words(ref.media_id, ref.fingerprint))
        ):
            skipped.append(MediaResult(ref.uri, ref.media_id, ref.fingerprint, "skipped", attempts=0))
        else:
            todo.append((connector, ref))
    return todo, skipped


def discover_new(
    connectors: Sequence[Connector],
    store: QdrantStore,
    *,
    force: bool = False,
    pruned: list[str] | None = None,
    retries: int = 0,
    retry_delay_s: float = 1.0,
    words: bool = False,
) -> tuple[list[tuple[Connector, MediaRef]], list[MediaResult], list[tuple[str, str]]]:
    """List every source; split into items to ingest, results known without ingesting
    (:func:`select_new`), and listing errors.

    A source whose listing fails transiently (a 503, a dropped connection) is listed again up
    to ``retries`` times, ``retry_delay_s`` apart (doubling), as the flows' listing task is.
    Sources that still fail are reported (``(source, error)``), not raised, whatever the error:
    the other sources go on. With ``pruned`` (a list), each source that listed is pruned
    (:func:`prune_unlisted`) and the sources of the deleted items are appended to it.
    """
    listings, errors = list_sources(connectors, retries=retries, retry_delay_s=retry_delay_s)
    todo, skipped = _split_listed(listings, store, force=force, pruned=pruned, words=words, warned=[])
    return todo, skipped, errors


#: Each source that listed, with its items.
Listings: TypeAlias = "list[tuple[Connector, list[MediaRef]]]"


def list_sources(
    connectors: Sequence[Connector], *, retries: int = 0, retry_delay_s: float = 1.0
) -> tuple[Listings, list[tuple[str, str]]]:
    """List every source, retried as :func:`discover_new` says: ``(listings, errors)``, each
    source that listed with its items, and ``(source, error)`` for each that could not."""
    listings: Listings = []
    errors: list[tuple[str, str]] = []
    for connector in connectors:
        try:
            listings.append((connector, _listed_with_retries(connector, retries, retry_delay_s)))
        except Exception as exc:
            log.error("cannot list %s: %s", connector.source, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            errors.append((connector.source, describe_error(exc)))
    return listings, errors


def _split_listed(
    listings: Listings,
    store: QdrantStore,
    *,
    force: bool,
    pruned: list[str] | None,
    words: bool,
    warned: list[tuple[str, str]],
    exclude: Sequence[str] = (),
    excluded: list[str] | None = None,
) -> tuple[list[tuple[Connector, MediaRef]], list[MediaResult]]:
    stored = StoredItems(store)  # one read of the stored items for every source's prune
    listed = [
        pair
        for connector, refs in listings
        for pair in took_listing(
            store, connector, refs, pruned, stored=stored, warned=warned, exclude=exclude, excluded=excluded
        )
    ]
    return select_new(listed, store, force=force, words=words)


def lists_media(
    listings: Listings,
    collection: str,
    exclude: Sequence[str] = (),
    *,
    warned: list[tuple[str, str]] | None = None,
    excluded: list[str] | None = None,
) -> bool:
    """Whether a source listed a media item: what ``--recreate`` waits for before it drops
    ``collection`` (a mistyped source, or an unmounted share that lists nothing, keeps it);
    warns when none did (into ``warned`` too, as ``took_listing`` does). An item that stands
    for a listing's failure (``LISTING_ERROR``: a feed cut short, a link whose HEAD failed) is
    no media file: a cut feed whose only episodes had no enclosure dropped the collection and
    wrote nothing. Nor is an item that ``exclude`` leaves out (:func:`excluded_by`; appended
    to ``excluded`` when none is left)."""
    from clasp_ingest.connectors.base import LISTING_ERROR

    if any(
        LISTING_ERROR not in ref.metadata and excluded_by(ref.uri, exclude) is None
        for _, refs in listings
        for ref in refs
    ):
        return True
    for connector, refs in listings:
        left_out = [ref.uri for ref in refs if excluded_by(ref.uri, exclude) is not None]
        if excluded is not None:
            excluded += left_out
        _source_warning(warned, connector.source, EXCLUDES_ALL if left_out else LISTS_NOTHING)
    unless = " that no exclude pattern leaves out" if exclude else ""
    log.warning(
        "not recreating collection %r: no source listed a media file%s, so it is kept", collection, unless
    )
    return False


def listing_failures(listings: Listings) -> list[tuple[str, str]]:
    """``(uri, error)`` of the items that stand for a listing's failure (``LISTING_ERROR``): the
    source errors of a ``--recreate`` run that stops before ingesting (nothing else reports them)."""
    from clasp_ingest.connectors.base import LISTING_ERROR

    return [
        (ref.uri, ref.metadata[LISTING_ERROR])
        for _, refs in listings
        for ref in refs
        if LISTING_ERROR in ref.metadata
    ]


def _listed_with_retries(connector: Connector, retries: int, delay: float) -> list[MediaRef]:
    for attempt in range(1, retries + 2):
        try:
            return list_source(connector)
        except Exception as exc:
            if attempt > retries or not is_transient(exc):
                raise
            log.warning(
                "listing %s failed (%s); retry %d/%d in %.1f s",
                connector.source,
                exc,
                attempt,
                retries,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def took_listing(
    store: QdrantStore,
    connector: Connector,
    refs: list[MediaRef],
    pruned: list[str] | None,
    *,
    stored: StoredItems | None = None,
    warned: list[tuple[str, str]] | None = None,
    exclude: Sequence[str] = (),
    excluded: list[str] | None = None,
) -> list[tuple[Connector, MediaRef]]:
    """What a run does with a source that listed (in-process and in the flows): warn when it
    lists nothing, prune it when ``pruned`` is a list (the deleted sources are appended), leave
    out the items an ``exclude`` pattern matches (their URIs appended to ``excluded`` where it
    is a list; a prune counts them as listed, so a stored one stays), and pair the rest with
    it. ``stored``: the run's :class:`StoredItems`, shared by the prunes of all its sources
    (without it, each prune reads every stored item again). ``warned``: where the warnings go
    as ``(source, warning)`` too (the summary's ``source_warnings``)."""
    if not refs:
        _source_warning(warned, connector.source, LISTS_NOTHING)
    if pruned is not None:
        pruned += prune_unlisted(store, connector, refs, stored=stored, warned=warned)
    kept = []
    for ref in refs:
        pattern = excluded_by(ref.uri, exclude)
        if pattern is None:
            kept.append(ref)
            continue
        log.info("left out %s: it matches the exclude pattern %r", ref.uri, pattern)
        if excluded is not None:
            excluded.append(ref.uri)
    if refs and not kept:
        _source_warning(warned, connector.source, EXCLUDES_ALL)
    return [(connector, ref) for ref in kept]


def excluded_by(uri: str, patterns: Sequence[str]) -> str | None:
    """The first of ``patterns`` (``ingest --exclude``) that the item ``uri`` matches, else None.

    A pattern is a shell-style one (``*``, ``?``, ``[...]``; case counts) matched against the
    item's path as stored: a local file's absolute path (symbolic links resolved), a URL's path
    (an http(s) one's percent-escapes decoded; not its host or query), a bucket object's key. A
    pattern without ``/`` matches the last name (``*.part``, ``draft-*``); one with ``/`` the
    whole path, where ``*`` also crosses ``/`` (``*/rushes/*``, ``/srv/media/old/*``); a relative
    one (``old/*``, ``./old/*``) matches below a folder of that name anywhere, and one ending in
    ``/`` (``old/``) everything below such a folder; ``~`` is the home folder.
    """
    if not patterns:
        return None
    from fnmatch import fnmatchcase

    path = _matched_path(uri)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for pattern in patterns:
        shaped = _shaped(pattern)
        if fnmatchcase(path if "/" in shaped else name, shaped):
            return pattern
    return None


def _matched_path(uri: str) -> str:
    """The path :func:`excluded_by` matches: an http(s) or ``file://`` URI's decoded path; a
    bucket URI's key as stored (``s3://b/take?1.wav``: its ``?``, ``#`` and ``%`` are the key's)."""
    from urllib.parse import unquote, urlsplit

    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    if scheme.lower() in ("http", "https", "file"):
        return unquote(urlsplit(uri).path, errors="surrogateescape")
    return "/" + rest.partition("/")[2]


def _shaped(pattern: str) -> str:
    """``pattern`` in the form matched against a whole path (see :func:`excluded_by`)."""
    if pattern.startswith("~"):
        pattern = str(Path(pattern).expanduser())
    pattern = pattern.removeprefix("./")
    if pattern.endswith("/"):
        pattern += "*"
    if "/" in pattern and not pattern.startswith(("/", "*")):
        pattern = "*/" + pattern
    return pattern


def warn_unused_patterns(patterns: Sequence[str], excluded: Sequence[str]) -> list[str]:
    """Warn of each of ``patterns`` that left out none of the ``excluded`` items (a pattern
    written for another path: the run would ingest what it meant to leave out, silently);
    returns them."""
    unused = [p for p in patterns if not any(excluded_by(uri, (p,)) is not None for uri in excluded)]
    for pattern in unused:
        log.warning(
            "the exclude pattern %r matched no listed item; a pattern with '/' matches an item's "
            "whole path as stored (links resolved), e.g. '*/old/*' or 'old/'",
            pattern,
        )
    return unused


#: A source that listed no media file (an empty folder, an unmounted share, a glob matching nothing).
LISTS_NOTHING = "lists no media file; nothing to ingest from it"
#: A source whose every media file an exclude pattern leaves out (a pattern such as ``*``).
EXCLUDES_ALL = "lists media files, but every one matches an exclude pattern; nothing to ingest from it"


def _source_warning(warned: list[tuple[str, str]] | None, source: str, warning: str) -> None:
    """Log ``source``'s warning, and keep it for the run's summary where ``warned`` is a list."""
    log.warning("%s %s", source, warning)
    if warned is not None:
        warned.append((source, warning))


class StoredItems:
    """The stored items that the prunes of one run judge (:func:`prune_unlisted`):
    ``store.media()``, read at the first prune that needs it and shared by the others, less
    the items these prunes deleted.

    ``store.media()`` reads every stored item of the collection and counts its spans: read
    once per source, ``ingest --prune`` over 40 folders of a 2,000-item store took 6.7 s
    against 0.7 s for their parent folder (a 100-folder schedule over a 100k-item archive,
    about 20 minutes of reading with nothing to do). Make one per run, after its sources are
    listed and before its items are written; it is stale past the run's prunes. What is
    written after the read (by another process alongside this run) is not in it, so no prune
    of this run deletes it: the next run, which has listed it or not, judges it.
    """

    def __init__(self, store: QdrantStore) -> None:
        self._store = store
        self._items: list[StoredMedia] | None = None

    def items(self) -> list[StoredMedia]:
        """Every stored media item version, as ``store.media()`` lists them (read once)."""
        if self._items is None:
            self._items = self._store.media()
        return self._items

    def forget(self, media_ids: set[str]) -> None:
        """Drop the items ``media_ids`` (deleted by a prune: a later source over the same
        scope must not delete, and report, them again)."""
        self._items = [item for item in self.items() if item.media_id not in media_ids]


def prune_unlisted(
    store: QdrantStore,
    connector: Connector,
    refs: Sequence[MediaRef],
    *,
    stored: StoredItems | None = None,
    warned: list[tuple[str, str]] | None = None,
) -> list[str]:
    """Delete the stored items that ``connector``'s source covers but its listing ``refs`` no
    longer has (files deleted or moved away: a local file that is still there stays, e.g. a
    hidden one ingested by name); returns their sources.

    Only a source with a ``prune_scope`` (a local folder or file, a bucket prefix) is pruned:
    the stored items under it are its own. Globs, feeds (old episodes drop off a feed) and HTTP
    index pages are left as they are, with a warning, and so is a source that lists nothing (an
    unmounted share is an empty folder). Call it only after a listing succeeded.
    ``stored``: the run's :class:`StoredItems` when it prunes several sources (else the
    stored items are read for this source alone).
    """
    from clasp_ingest.connectors.base import is_within

    scope_of = getattr(connector, "prune_scope", None)
    scope = scope_of() if scope_of is not None else None
    if scope is None:
        _source_warning(warned, connector.source, "is not pruned: only folders and bucket prefixes are")
        return []
    listed = {ref.media_id for ref in refs}
    if not listed:  # an unmounted share is an empty folder: never read that as "all deleted"
        warning = "is not pruned: it lists nothing (unmounted?); 'store delete' removes items"
        _source_warning(warned, connector.source, warning)
        return []
    items = (stored if stored is not None else StoredItems(store)).items()
    gone = {
        item.media_id: item.source
        for item in items
        if is_within(item.source, scope) and item.media_id not in listed and not _file_exists(item.source)
    }
    deleted = []
    for media_id, source in sorted(gone.items(), key=lambda kv: kv[1]):
        if store.delete_media(media_id):  # 0: deleted since the read (by another process)
            deleted.append(source)
            log.info("pruned %s: %s no longer lists it", source, connector.source)
    if stored is not None:
        stored.forget(set(gone))
    return sorted(set(deleted))


def _file_exists(source: str) -> bool:
    """Whether ``source`` is a local file that is still there (a folder does not list hidden
    files, yet one ingested by name must not be pruned). One that cannot be looked at (in a
    folder without permission to search it) may be there: it is kept (its PermissionError ended
    the whole ``--prune`` run, every new file of the schedule left out)."""
    from urllib.parse import urlparse

    from clasp_ingest.connectors.local import path_of_uri

    if urlparse(source).scheme != "file":
        return False
    try:
        return path_of_uri(source).is_file()
    except OSError:
        return True


def _with_retries(ref: MediaRef, options: PipelineOptions, run: Callable[[], MediaResult]) -> MediaResult:
    started = time.perf_counter()
    delay = options.retry_delay_s
    for attempt in range(1, options.retries + 2):
        try:
            return replace(run(), attempts=attempt)
        except STOPS_THE_RUN:
            raise
        except _CallbackFailed as failed:  # the caller's on_progress: its own error, not the item's
            raise failed.error from None
        except Exception as exc:
            if attempt > options.retries or not is_transient(exc):
                log.error("failed to ingest %s: %s", ref.uri, exc)
                return failed_result(ref, exc, wall_s=time.perf_counter() - started, attempts=attempt)
            log.warning(
                "ingesting %s failed (%s); retry %d/%d in %.1f s",
                ref.uri,
                exc,
                attempt,
                options.retries,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def collection_for(
    store: QdrantStore,
    model_id: str,
    dim: int,
    *,
    source: str | None = None,
    recreate: bool = False,
    text_dim: int | None = None,
    query_metric: QueryMetric | None = None,
) -> Iterator[bool]:
    """The collection for ``model_id`` (``dim``-d vectors) during a run; yields whether it is new.

    ``text_dim``: the run stores words (``--transcribe``), so the collection must have the word
    vectors (``text_dim``-d ``text`` and sparse ``words``); an existing one without them is
    refused before anything is written (unless ``recreate``).

    ``recreate`` drops the collection first, whatever it holds. A collection this run
    created is removed again when the run leaves it empty (a first run that failed, or found
    nothing), so the next run starts from a clean store instead of an empty collection.
    ``query_metric``: a new embedded collection's graph space (:func:`query_metric_for`).
    """
    if recreate and store.exists():
        try:
            held = f"{store.count()} points"
        except StoreFullError:  # not opened, its disk without room: dropping frees it
            held = "not opened: its disk is full"
        except StoreError:  # damaged past counting: dropping is what repairs it
            held = "damaged"
        log.warning("dropping collection %r (%s) to recreate it", store.collection, held)
        store.drop()
    try:
        created = store.ensure_collection(
            model_id, dim, source=source, text_dim=text_dim, query_metric=query_metric
        )
    except CollectionMismatchError as exc:
        maker = _maker_of(store)
        made_by = store.identity.model_id if store.identity is not None else None
        if maker is None or maker == source or made_by == model_id:  # that model: no remedy (words)
            raise
        raise CollectionMismatchError(
            f"{exc}; or add to it with {store.names.model.format(maker)}, the model that made it"
        ) from None
    try:
        yield created
    finally:
        with SignalsHeld():  # a second Ctrl-C cut this short and left the empty collection behind
            if created and store.exists() and store.count() == 0:
                log.info(
                    "removing collection %r again: this run created it and stored nothing", store.collection
                )
                store.drop()


class SignalsHeld:
    """While inside (in the main thread; elsewhere nothing changes), Ctrl-C and SIGTERM wait:
    the first that came is delivered on leaving, unless an exception is already on its way out
    (a run stopping anyway, e.g. by the first Ctrl-C, whose cleanup this guards)."""

    def __init__(self) -> None:
        self._came: list[tuple[int, FrameType | None]] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        handled = [signal.SIGINT] + ([signal.SIGTERM] if callable(signal.getsignal(signal.SIGTERM)) else [])
        self._previous = {signum: signal.signal(signum, self._hold) for signum in handled}

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        self._came.append((signum, frame))

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._came and kind is None:
            signum, frame = self._came[0]
            handler = self._previous[signum]
            if callable(handler):
                handler(signum, frame)  # Python's SIGINT handler, the CLI's SIGTERM one: they raise


def _maker_of(store: QdrantStore) -> str | None:
    """The preset or model folder that makes the vectors of ``store``'s collection, if one does
    (its recorded source may be stale: ``clasp-mini`` made ``clasp-mini-v0.13`` vectors before
    v1; that model is now the preset ``clasp-mini-spec``)."""
    from clasp_ingest.model.query import find_model

    identity = store.identity
    if identity is None:
        return None
    try:
        return find_model(identity.model_id, identity.source, exact=True)
    except (ModelLoadError, ConfigError):
        return None


def query_metric_for(model: AudioTextEncoder) -> QueryMetric | None:
    """The query-aware graph space of ``model``'s collections: fitted on its query bank (a
    model without one, e.g. the official CLASP weights, gets None: a plain graph)."""
    sample_of = getattr(model, "query_sample", None)
    return query_metric_of(sample_of() if callable(sample_of) else None, model.dim)


def query_metric_of(sample: np.ndarray | None, dim: int) -> QueryMetric | None:
    """The query-aware graph space fitted on ``sample`` (a model's query bank as query vectors),
    or None without one, or for one of another width than the collection's ``dim``."""
    if sample is None or sample.shape[1] != dim:
        return None
    return QueryMetric.fit(sample)


def ingest_source(
    connectors: Connector | Iterable[Connector] | str | os.PathLike[str],
    model: AudioTextEncoder,
    store: QdrantStore,
    options: PipelineOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    model_source: str | None = None,
    recreate: bool = False,
) -> IngestSummary:
    """Ingest every new or changed item of one or more sources; skip items stored complete.

    ``connectors``: one connector or several (any iterable); paths and URLs are made into
    connectors as the CLI does. A bad item fails alone (listed in the summary); transient
    failures are retried first. Raises only when the run cannot proceed (e.g. the collection
    belongs to another model).
    ``model_source`` (preset name or model directory) is recorded with a new collection (default:
    what ``model`` was loaded from, where it says: ``load_model`` and ``load_inference_model``
    set its ``source``);
    ``recreate`` drops the collection first (see :func:`collection_for`), once the sources are
    listed and one of them lists a media item (else nothing is dropped or ingested: the summary
    holds the listing errors). A ``Preloadable`` model starts loading as soon as there is
    something to ingest. With ``options.transcribe`` every item's words are stored too (see
    :class:`PipelineOptions`).
    """
    opts = options or PipelineOptions()
    started = time.perf_counter()
    _check_model(model)
    if model_source is None:
        model_source = getattr(model, "source", None)
    sources = _connectors(connectors)
    listed = partial(list_sources, sources, retries=opts.retries, retry_delay_s=opts.retry_delay_s)
    listings, errors = listed() if recreate else ([], [])
    if recreate:
        said: list[tuple[str, str]] = []
        left_out: list[str] = []
        if not lists_media(listings, store.collection, opts.exclude, warned=said, excluded=left_out):
            failed = (*errors, *listing_failures(listings))
            wall_s = time.perf_counter() - started
            return IngestSummary((), failed, wall_s, (), tuple(said), tuple(left_out))
    text_dim = text_dim_for(model) if opts.transcribe else None
    metric = query_metric_for(model) if recreate or not store.exists() else None
    with collection_for(
        store, model.model_id, model.dim, source=model_source, recreate=recreate, text_dim=text_dim,
        query_metric=metric,
    ):  # fmt: skip
        if not recreate:  # listed only once the collection is known to fit the model
            listings, errors = listed()
        pruned: list[str] | None = [] if opts.prune else None
        warned: list[tuple[str, str]] = []
        excluded: list[str] = []
        todo, results = _split_listed(
            listings,
            store,
            force=opts.force,
            pruned=pruned,
            words=opts.transcribe is not None,
            warned=warned,
            exclude=opts.exclude,
            excluded=excluded,
        )
        warn_unused_patterns(opts.exclude, excluded)
        log.info("%d items to ingest, %d unchanged", len(todo), sum(r.status == "skipped" for r in results))
        if todo and isinstance(model, Preloadable):
            model.preload()
        total = len(todo) + len(results)
        _report(on_progress, total, results)
        with store.bulk():
            for connector, ref in todo:
                on_batch = _item_reporter(on_progress, total, results, ref.uri)
                run = partial(ingest_media, ref, connector, model, store, opts, on_batch=on_batch)
                results.append(_with_retries(ref, opts, run))
                _report(on_progress, total, results)
    return IngestSummary(
        tuple(results),
        tuple(errors),
        time.perf_counter() - started,
        tuple(pruned or ()),
        tuple(warned),
        tuple(excluded),
    )


def _check_model(model: Any) -> None:
    """A model that cannot embed audio (a query model: the text side only) is a ``TypeError``
    before anything is listed; each item failed with an ``AttributeError`` after opening it."""
    missing = [name for name in ("encode_audio", "model_id", "dim") if not hasattr(model, name)]
    if missing:
        raise TypeError(
            "ingest_source needs a model that embeds audio (clasp_ingest.model.load_model(NAME)), "
            f"got {type(model).__name__} without {', '.join(missing)}"
        )


def _connectors(given: Any) -> list[Connector]:
    """One connector or any iterable of them (a list, a generator); a path or URL, or several,
    become connectors as the CLI makes them (:func:`~clasp_ingest.connectors.connector_for`)."""
    from clasp_ingest.connectors import connector_for

    items = (
        [given] if isinstance(given, str | os.PathLike) or not isinstance(given, Iterable) else list(given)
    )
    connectors: list[Connector] = []
    for item in items:
        if isinstance(item, str | os.PathLike):
            connectors.append(connector_for(str(item)))
        elif callable(getattr(item, "discover", None)) and callable(getattr(item, "open", None)):
            connectors.append(item)
        else:
            raise TypeError(
                f"ingest_source needs connectors (or paths/URLs), got {item!r}; "
                "make one with clasp_ingest.connectors.connector_for(SOURCE)"
            )
    return connectors


def text_dim_for(model: Any) -> int:
    """The width of the ``text`` vectors ``model``'s text tower makes (from its config when it
    has one, so a deferred model is not loaded for it)."""
    from clasp_ingest.words import TextTower

    return TextTower(model).dim


def progress_of(total: int, results: Sequence[MediaResult]) -> Progress:
    """The :class:`Progress` after ``results``."""
    return Progress(
        total=total,
        done=len(results),
        ok=sum(r.status == "ok" for r in results),
        skipped=sum(r.status == "skipped" for r in results),
        failed=sum(r.status == "failed" for r in results),
        segments=sum(r.segments for r in results),
        audio_s=round(sum(r.audio_s for r in results), 3),
        last=results[-1] if results else None,
    )


def _report(callback: ProgressCallback | None, total: int, results: Sequence[MediaResult]) -> None:
    if callback is not None:
        callback(progress_of(total, results))


def _item_reporter(
    callback: ProgressCallback | None, total: int, results: Sequence[MediaResult], uri: str
) -> ItemProgress | None:
    if callback is None:
        return None

    def report(segments: int, position_s: float) -> None:
        progress = replace(progress_of(total, results), current=uri, current_segments=segments,
                           current_position_s=round(position_s, 3))  # fmt: skip
        try:
            callback(progress)
        except Exception as exc:
            raise _CallbackFailed(exc) from exc

    return report


class _CallbackFailed(Exception):
    """``on_progress`` raised during an item: the run stops with that error as the callback
    raised it (:func:`_with_retries`); it failed every item, as each item's error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
