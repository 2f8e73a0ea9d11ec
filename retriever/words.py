"""Lazy transcripts with write-back: the words of returned spans, transcribed once.

:class:`LazyWords` takes the segments a search returned; each one whose point has no
``metadata.transcript`` is cut from its source, the first of each item with up to 30 s of the
media around it (ffmpeg decodes only that stretch,
:func:`~clasp_ingest.retriever.audio.span_in_context`), which the item's other spans share; the
cut spans are transcribed together (:meth:`~clasp_ingest.transcribe.Transcriber.transcribe_many`:
each encoded once, decoded in one batch, in the language its item declares where Whisper knows
it and the context does not contradict it, else the one detected from the context, once per
item: a few seconds of speech alone can sound like another language) and each point's payload updated
(:meth:`~clasp_ingest.store.QdrantStore.set_words`), so later searches return the words
without transcribing again.

Concurrency: an in-process lock per point (keyed by store, collection and point id, shared by
every :class:`LazyWords` of the process) makes concurrent queries (threads, ``ainvoke``,
several retrievers over one store) wait for a segment another query is transcribing instead
of transcribing it again: once it holds the locks of its segments (taken in one order, so two
queries never wait on each other) it reads each point again and takes the words stored
meanwhile. Two processes searching one server store at once can still both transcribe
a segment (the same words, written twice); an embedded store is open in one process only.

A transcriber runs one batch at a time (its Whisper does one call at a time anyway:
concurrent batches only interleave, and all end late).

Giving up: :meth:`LazyWords.fill` takes a ``stop`` check (the search was cancelled, its
retriever is closing) and asks it at each safe point: while it waits for another query's
segment, before each cut, before the transcription and while it waits for the transcriber's
turn; then it raises :class:`Stopped`. A transcription batch under way is not broken off
(Whisper cannot be): its words are stored as usual (each point's words in one write), so the
work is not lost and nothing is half-written.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from clasp_ingest.retriever.audio import span_in_context

from clasp_ingest.errors import MediaDecodeError, StoreError, StoreFullError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import QdrantStore, transcript_of
from clasp_ingest.transcribe import Transcriber, Transcript
from clasp_ingest.types import SpanHit

__all__ = ["LazyWords", "Stopped", "WordsReport"]

log = get_logger("retriever.words")

#: How often a query waiting for another query's segment asks whether it should give up.
_POLL_S = 0.1
#: Seconds of the media around a span (the span in the middle) its language is detected from,
#: Whisper's window. Whisper-base, from the span alone / from its context: 5 / 0 of 150 spans
#: of Russian read speech (festvox-ru) in another language, 43 / 0 of 76 of a Czech actor's
#: lines, 18 / 0 of 72 of a Dutch one's (fillets-ng). One more 30 s encoding per item (the
#: context of its first span, :meth:`LazyWords._cuts`) whose spans' own encodings are unsure of
#: their language (under 0.995: ``transcribe._SURE_ALONE``).
_CONTEXT_S = 30.0


class Stopped(StoreError):
    """A search gave up its lazy transcription at a safe point: the call was cancelled (a
    timeout, a client gone), or its retriever was closed while it ran."""


def _never() -> bool:
    return False


@dataclass(frozen=True)
class WordsReport:
    """What one :meth:`LazyWords.fill` did: segments transcribed now, already stored, failed."""

    transcribed: int = 0
    stored: int = 0
    failed: int = 0


class _KeyedLocks:
    """One lock per key, dropped when no thread holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def hold(self, key: str, stop: Callable[[], bool] = _never, waiting: str = "") -> Iterator[None]:
        """Hold ``key``'s lock; while another thread holds it, ask ``stop`` now and then and
        raise :class:`Stopped` (saying it gave up ``waiting``) when it says so (the other may
        transcribe for many seconds)."""
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            while not lock.acquire(timeout=_POLL_S):
                _check(stop, waiting)
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]


_LOCKS = _KeyedLocks()
#: One batch at a time per transcriber: its Whisper runs one call at a time anyway (one CTranslate2
#: worker), so concurrent batches only interleave and all end late; a search waiting its turn can
#: still give up, as one inside a batch cannot.
_TURNS = _KeyedLocks()


@dataclass(frozen=True)
class _Cut:
    """A hit's audio for transcription: its span, and the media around it (or around an earlier
    span of its item; None: none) to detect the language from."""

    hit: SpanHit
    span: np.ndarray
    context: np.ndarray | None


def _takes(method: Callable[..., Any], keyword: str) -> bool:
    """Whether ``method`` takes the keyword ``keyword`` (by name, or any: ``**kwargs``); True
    where its signature cannot be read (a builtin's)."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == keyword and p.kind is not p.POSITIONAL_ONLY) for p in parameters
    )


class LazyWords:
    """Transcribes segments that lack words and writes the words back into ``store``.

    ``ffmpeg``: the ffmpeg to cut with (default: PATH, else imageio-ffmpeg's);
    ``timeout_s``: the longest one cut may take (remote sources); ``allow_private_hosts``: let
    cuts of stored http(s) URLs reach loopback/private/link-local addresses (None:
    ``CLASP_ALLOW_PRIVATE_HOSTS``; :class:`~clasp_ingest.retriever.audio.ClipOptions`).
    """

    def __init__(
        self,
        store: QdrantStore,
        transcriber: Transcriber,
        *,
        ffmpeg: str | None = None,
        timeout_s: float = 120.0,
        allow_private_hosts: bool | None = None,
    ) -> None:
        self.store = store
        self.transcriber = transcriber
        self.ffmpeg = ffmpeg
        self.timeout_s = timeout_s
        self.allow_private_hosts = allow_private_hosts

    def fill(
        self, hits: Sequence[SpanHit], *, stop: Callable[[], bool] = _never
    ) -> tuple[dict[str, Transcript], WordsReport]:
        """Words for every hit without them, by point id (each point once), and what was done.

        The hits that need words are transcribed together
        (:meth:`~clasp_ingest.transcribe.Transcriber.transcribe_many`: each span encoded
        once, decoded in one batch). A segment whose source cannot be read is logged and
        left without words (a search still returns it). Raises :class:`Stopped` where ``stop()``
        says so at a safe point (module docstring); a batch under way is finished and stored.
        """
        found: dict[str, Transcript] = {}
        distinct = _distinct(hits)
        pending = [hit for hit in distinct if transcript_of(hit.payload) is None]
        stored = len(distinct) - len(pending)
        if self.transcriber.options.translate:  # words without the translation asked for
            english = [hit for hit in distinct if _lacks_english(hit.payload)]
            found.update(self._translated(english, stop))
        transcribed = 0
        keys = {str(hit.point_id): self._key(str(hit.point_id)) for hit in pending}
        with ExitStack() as held:
            for pid in sorted(keys, key=keys.__getitem__):  # one order: no two queries deadlock
                held.enter_context(
                    _LOCKS.hold(keys[pid], stop, "while another search transcribed its segment")
                )
            meanwhile = self._stored_words(list(keys))  # stored by another query since the search
            found.update(meanwhile)
            stored += len(meanwhile)
            cut = self._cuts([hit for hit in pending if str(hit.point_id) not in meanwhile], "words", stop)
            failed = len(pending) - len(meanwhile) - len(cut)
            if cut:
                heard = self._heard(cut, stop)
                for one, words in zip(cut, heard, strict=True):
                    pid = str(one.hit.point_id)
                    self._keep(pid, words)
                    found[pid], transcribed = words, transcribed + 1
        return found, WordsReport(transcribed=transcribed, stored=stored, failed=failed)

    def _translated(self, hits: Sequence[SpanHit], stop: Callable[[], bool]) -> dict[str, Transcript]:
        """The stored words of ``hits`` with an English translation, made now and stored beside
        them (``--translate`` did nothing for a span that had its words already)."""
        done: dict[str, Transcript] = {}
        cut = self._cuts(hits, "translation", stop)
        heard = self._heard(cut, stop, _stored_language) if cut else []
        for one, words in zip(cut, heard, strict=True):
            meta = one.hit.payload.get("metadata", {})
            pid = str(one.hit.point_id)
            # none heard (the cut sounds English, or silent): "" is stored, so the next search
            # does not transcribe it again
            english = words.english or ""
            try:
                self.store.set_translation([pid], english)
            except StoreFullError as exc:
                log.warning("the translation of point %s was not stored: %s", pid, exc)
            done[pid] = _stored_transcript(str(meta.get("transcript")), meta, english or None)
        return done

    def _heard(
        self,
        cut: Sequence[_Cut],
        stop: Callable[[], bool],
        language_of: Callable[[SpanHit], str | None] | None = None,
    ) -> list[Transcript]:
        """The words of the ``cut`` spans, each in the language its item declares (or
        ``language_of`` gives) unless detection contradicts it (a declared language can be a
        default), else in the one detected; detected from the span with the media around it,
        as cut (a few seconds of speech alone can sound like another language).
        Waits for the transcriber's turn (:data:`_TURNS`), asking ``stop`` before and after."""
        language = language_of or _declared_language
        languages = [language(one.hit) for one in cut]
        samples = [one.span for one in cut]
        contexts = [one.context for one in cut]
        before = f"before transcribing {len(cut)} segments"
        _check(stop, before)
        with _TURNS.hold(str(id(self.transcriber)), stop, f"{before}, waiting for another search's batch"):
            _check(stop, before)
            # each keyword only where it says something and the transcriber takes it: one
            # written before it (``transcribe_many(spans, *, language=None)``) still serves
            # spans, detecting their language from the span alone
            told: dict[str, Any] = {}
            if any(languages) and _takes(self.transcriber.transcribe_many, "languages"):
                told["languages"] = languages
            if any(context is not None for context in contexts):
                told["contexts"] = contexts
            return self.transcriber.transcribe_many(samples, **told)

    def _cuts(self, hits: Sequence[SpanHit], what: str, stop: Callable[[], bool]) -> list[_Cut]:
        """The audio of each of ``hits`` that can be cut, with the media around it to detect its
        language from (none where the transcriber is given a language): :data:`_CONTEXT_S` around
        the first span (in ``hits``' order) of each item that has some; the item's later spans
        shorter than that are cut alone and share it (one 30 s encoding per item and search
        instead of one per span; a span sure of its language alone keeps its own). A span of
        :data:`_CONTEXT_S` or longer is cut alone with no context, as before (its own first 30 s
        tell its language); so is every span of a point without a media id. The others are logged
        (no ``what``). Asks ``stop`` before each cut (ffmpeg: a remote source can take seconds).
        No context is cut for a transcriber whose ``transcribe_many`` takes no ``contexts``
        (a subclass written before it)."""
        takes = _takes(self.transcriber.transcribe_many, "contexts")
        window_s = _CONTEXT_S if takes and not self.transcriber.options.language else 0.0
        contexts: dict[tuple[str, str], np.ndarray] = {}  # item -> the context of its first span cut
        cut: list[_Cut] = []
        for at, hit in enumerate(hits):
            _check(stop, f"before cutting {len(hits) - at} segments for {what}")
            item = (hit.media_id, hit.source)
            short = bool(hit.media_id) and hit.end_s - hit.start_s < window_s
            shared = contexts.get(item) if short else None
            try:
                audio = span_in_context(
                    hit,
                    window_s=window_s if shared is None else 0.0,
                    ffmpeg=self.ffmpeg,
                    timeout_s=self.timeout_s,
                    allow_private_hosts=self.allow_private_hosts,
                )
            except MediaDecodeError as exc:
                log.warning("no %s for %s %.3f–%.3fs: %s", what, hit.source, hit.start_s, hit.end_s, exc)
                continue
            if shared is None and audio.has_context:
                shared = audio.audio
                if short:
                    contexts[item] = shared
            cut.append(_Cut(hit, audio.span, shared))
        return cut

    def _keep(self, pid: str, words: Transcript) -> None:
        """Store a span's words; on a full disk they are returned unstored (the next search that
        returns the span transcribes it again), with a warning, rather than failing the search."""
        try:
            self.store.set_words(
                [pid], words.text, language=words.language, model=words.model, english=words.english
            )
        except StoreFullError as exc:
            log.warning("the words of point %s were not stored: %s", pid, exc)

    def _key(self, pid: str) -> str:
        return f"{self.store.backend}:{self.store.location}/{self.store.collection}/{pid}"

    def _stored_words(self, pids: list[str]) -> dict[str, Transcript]:
        """The words of those points that another query stored after this search read them."""
        words: dict[str, Transcript] = {}
        for point in self.store.points(pids):
            text = transcript_of(point.payload)
            if text is not None:
                meta = point.payload["metadata"]
                words[str(point.id)] = _stored_transcript(text, meta, meta.get("transcript_en"))
        return words


def _check(stop: Callable[[], bool], where: str) -> None:
    """Raise :class:`Stopped` (saying ``where`` the search gave up) if ``stop()`` says so."""
    if stop():
        log.debug("a search gave up %s (cancelled, or its retriever closing)", where)
        raise Stopped(
            f"the search gave up {where}: it was cancelled, or its retriever was closed while it "
            "ran; search again with an open retriever"
        )


def _stored_transcript(text: str, meta: dict[str, Any], english: str | None) -> Transcript:
    """The :class:`Transcript` of words stored in a point's ``meta``."""
    return Transcript(
        text, str(meta.get("transcript_language", "")), str(meta.get("transcript_model", "")), english
    )


def _declared_language(hit: SpanHit) -> str | None:
    """The language the hit's item declares (``metadata.language``: its feed's, its audio
    track's tag), if any."""
    language = hit.payload.get("metadata", {}).get("language")
    return str(language) if language else None


def _stored_language(hit: SpanHit) -> str | None:
    """The language of the words stored for the hit (a translation is made from those words'
    language, not from the one its item declares)."""
    language = hit.payload.get("metadata", {}).get("transcript_language")
    return str(language) if language else None


def _lacks_english(payload: dict[str, Any]) -> bool:
    """Words stored in a language other than English, without their translation."""
    meta = payload.get("metadata", {})
    text = transcript_of(payload)
    return (
        bool(text) and meta.get("transcript_language") not in (None, "", "en") and "transcript_en" not in meta
    )


def _distinct(hits: Sequence[SpanHit]) -> list[SpanHit]:
    seen: dict[str, SpanHit] = {}
    for hit in hits:
        if hit.point_id is None:
            raise ValueError(f"hit of {hit.source!r} carries no point id; pass hits from QdrantStore.search")
        seen.setdefault(str(hit.point_id), hit)
    return list(seen.values())
