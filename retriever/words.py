"""Lazy transcripts with write-back: the words of returned spans, transcribed once.

:class:`LazyWords` takes the segments a search returned; each one whose point has no
``metadata.transcript`` is cut from its source (ffmpeg decodes only that stretch,
:func:`~clasp_ingest.retriever.audio.span_samples`), transcribed
(:class:`~clasp_ingest.transcribe.Transcriber`) and its point's payload updated
(:meth:`~clasp_ingest.store.QdrantStore.set_words`), so later searches return the words
without transcribing again.

Concurrency: an in-process lock per point (keyed by store, collection and point id, shared by
every :class:`LazyWords` of the process) makes concurrent queries (threads, ``ainvoke``,
several retrievers over one store) wait for a segment another query is transcribing instead
of transcribing it again: once it holds the lock it reads the point again and takes the words
stored meanwhile. Two processes searching one server store at once can still both transcribe
a segment (the same words, written twice); an embedded store is open in one process only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from clasp_ingest.retriever.audio import span_samples

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import QdrantStore, transcript_of
from clasp_ingest.transcribe import Transcriber, Transcript
from clasp_ingest.types import SpanHit

__all__ = ["LazyWords", "WordsReport"]

log = get_logger("retriever.words")


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
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if users[0] == 0:
                    del self._locks[key]


_LOCKS = _KeyedLocks()


class LazyWords:
    """Transcribes segments that lack words and writes the words back into ``store``.

    ``ffmpeg``: the ffmpeg to cut with (default: PATH, else imageio-ffmpeg's);
    ``timeout_s``: the longest one cut may take (remote sources).
    """

    def __init__(
        self,
        store: QdrantStore,
        transcriber: Transcriber,
        *,
        ffmpeg: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        self.store = store
        self.transcriber = transcriber
        self.ffmpeg = ffmpeg
        self.timeout_s = timeout_s

    def fill(self, hits: Sequence[SpanHit]) -> tuple[dict[str, Transcript], WordsReport]:
        """Words for every hit without them, by point id (each point once), and what was done.

        A segment whose source cannot be read is logged and left without words (a search
        still returns it).
        """
        found: dict[str, Transcript] = {}
        stored = failed = transcribed = 0
        for hit in _distinct(hits):
            if transcript_of(hit.payload) is not None:
                stored += 1
                continue
            words, fresh = self._words_for(hit)
            if words is None:
                failed += 1
                continue
            found[str(hit.point_id)] = words
            transcribed += fresh
            stored += not fresh
        return found, WordsReport(transcribed=transcribed, stored=stored, failed=failed)

    def _words_for(self, hit: SpanHit) -> tuple[Transcript | None, bool]:
        """The hit's words and whether this call transcribed them (False: another query did)."""
        pid = str(hit.point_id)
        key = f"{self.store.backend}:{self.store.location}/{self.store.collection}/{pid}"
        with _LOCKS.hold(key):
            done = self._stored_words(pid)
            if done is not None:
                return done, False
            try:
                samples = span_samples(hit, ffmpeg=self.ffmpeg, timeout_s=self.timeout_s)
            except MediaDecodeError as exc:
                log.warning("no words for %s %.3f–%.3fs: %s", hit.source, hit.start_s, hit.end_s, exc)
                return None, False
            words = self.transcriber.transcribe(samples)
            self.store.set_words(
                [pid], words.text, language=words.language, model=words.model, english=words.english
            )
            return words, True

    def _stored_words(self, pid: str) -> Transcript | None:
        """The point's words when another query stored them after this search read it."""
        for point in self.store.points([pid]):
            text = transcript_of(point.payload)
            if text is not None:
                meta = point.payload["metadata"]
                english = meta.get("transcript_en")
                return Transcript(text, str(meta.get("transcript_language", "")),
                                  str(meta.get("transcript_model", "")), english)  # fmt: skip
        return None


def _distinct(hits: Sequence[SpanHit]) -> list[SpanHit]:
    seen: dict[str, SpanHit] = {}
    for hit in hits:
        if hit.point_id is None:
            raise ValueError(f"hit of {hit.source!r} carries no point id; pass hits from QdrantStore.search")
        seen.setdefault(str(hit.point_id), hit)
    return list(seen.values())
