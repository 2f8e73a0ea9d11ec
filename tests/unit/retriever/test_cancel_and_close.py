"""A lazy search that is cancelled (a request timeout, a client gone) or whose retriever is
closed gives up at its next safe point instead of cutting and transcribing on for seconds in a
thread nobody waits for; quick searches keep the event loop's default executor."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever
from clasp_ingest.retriever import words as words_module
from clasp_ingest.retriever.words import LazyWords, Stopped

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import open_store
from clasp_ingest.store.base import transcript_of
from clasp_ingest.transcribe import Transcriber, Transcript
from clasp_ingest.types import MediaRef, Segment, SpanHit
from tests.unit.retriever.conftest import SPOKEN, Counting, fill_spoken

pytestmark = pytest.mark.slow  # the real Whisper-base


class Gated(Counting):
    """The real transcriber, held at the start of each batch until the test opens ``gate``
    (a search is then in the middle of transcribing, holding its segments' locks)."""

    def __init__(self, loaded: Transcriber) -> None:
        super().__init__(loaded)
        self.entered, self.gate = threading.Event(), threading.Event()

    def transcribe_many(
        self,
        spans: Sequence[np.ndarray],
        *,
        language: str | None = None,
        languages: Sequence[str | None] | None = None,
        contexts: Sequence[np.ndarray | None] | None = None,
    ) -> list[Transcript]:
        self.entered.set()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        return super().transcribe_many(spans, language=language, languages=languages, contexts=contexts)


@pytest.fixture
def talk_path(tmp_path: Path, model: AudioTextEncoder, spoken_talk: tuple[MediaRef, list[Segment]]) -> Path:
    """An embedded store of the spoken talk's 4 segments, none transcribed yet."""
    path = tmp_path / "q"
    with open_store(path=path) as store:
        store.ensure_collection(model.model_id, model.dim, source="tiny-random")
        fill_spoken(store, model, spoken_talk)
    return path


def _waiting_for_a_segment() -> bool:
    """Whether a search waits for a segment another one is transcribing."""
    return any(users[0] > 1 for _, users in list(words_module._LOCKS._locks.values()))


def _waiting_for_the_transcriber() -> bool:
    """Whether a search waits for the transcriber's turn (another one's batch to end)."""
    return any(users[0] > 1 for _, users in list(words_module._TURNS._locks.values()))


def _soon(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the searches did not get there"
        time.sleep(0.01)


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """``_soon`` on the event loop (without a thread: those may all be taken)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the searches did not get there"
        await asyncio.sleep(0.01)


def test_a_cancelled_lazy_ainvoke_gives_up_and_quick_searches_are_not_held_up(
    talk_path: Path, whisper: Transcriber
) -> None:
    counting, gated = Counting(whisper), Gated(whisper)
    owner = ClaspRetriever.from_path(talk_path, device="cpu", k=4, transcribe="lazy", transcriber=counting)
    holder = owner.model_copy(update={"k": 1, "transcriber": gated})  # transcribes segment 0
    quick = owner.model_copy(update={"transcribe": "never"})

    async def scenario() -> tuple[str, list[str | None]]:
        # a small default executor, as asyncio gives a 2-core server 6 threads
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        held = asyncio.ensure_future(holder.ainvoke(SPOKEN[0]))
        await _until(gated.entered.is_set, 30)
        lazy = asyncio.ensure_future(owner.ainvoke(SPOKEN[1]))  # all 4 segments: waits for segment 0
        await _until(_waiting_for_a_segment)
        lazy.cancel()  # a request timeout: the search is not wanted any more
        try:
            await asyncio.wait_for(quick.ainvoke(SPOKEN[2]), 5)
            outcome = "answered"
        except TimeoutError:  # it waited for a thread behind the lazy searches
            outcome = "timed out"
        finally:
            gated.gate.set()
        docs = await held
        return outcome, [doc.metadata["transcript"] for doc in docs]

    try:
        outcome, held_words = asyncio.run(scenario())
    finally:
        gated.gate.set()
        owner.close()  # waits for the searches in flight, the cancelled one too
    assert outcome == "answered"
    assert counting.calls == 0  # it transcribed nothing once cancelled (it transcribed 3 spans)
    assert gated.calls == 1 and held_words[0]  # the other search went on as usual


def test_a_cancelled_search_waiting_for_the_transcriber_gives_up(
    talk_path: Path, whisper: Transcriber, spoken_talk: tuple[MediaRef, list[Segment]]
) -> None:
    gated = Gated(whisper)  # one transcriber: one batch at a time
    owner = ClaspRetriever.from_path(talk_path, device="cpu", k=1, transcribe="lazy", transcriber=gated)
    after_first = {"start_s_gte": spoken_talk[1][1].start_s}  # segments 1-3: none the other search holds

    async def scenario() -> None:
        held = asyncio.ensure_future(owner.ainvoke(SPOKEN[0]))  # segment 0
        await _until(gated.entered.is_set, 30)
        gated.entered.clear()
        other = asyncio.ensure_future(owner.ainvoke(SPOKEN[1], k=3, filter=after_first))
        # it searches, cuts its 3 segments, and waits for the transcriber (it went into the batch)
        await _until(lambda: _waiting_for_the_transcriber() or gated.entered.is_set())
        other.cancel()
        await asyncio.sleep(0.3)
        gated.gate.set()
        await held

    try:
        asyncio.run(scenario())
    finally:
        gated.gate.set()
        owner.close()
    assert gated.calls == 1  # the first search's span; the cancelled one transcribed nothing (3)


def test_close_makes_searches_in_flight_give_up_and_finishes_a_batch_under_way(
    talk_path: Path, whisper: Transcriber
) -> None:
    counting, gated = Counting(whisper), Gated(whisper)
    owner = ClaspRetriever.from_path(talk_path, device="cpu", k=4, transcribe="lazy", transcriber=counting)
    holder = owner.model_copy(update={"k": 1, "transcriber": gated})
    with ThreadPoolExecutor(3) as pool:
        try:
            held = pool.submit(holder.invoke, SPOKEN[0])
            assert gated.entered.wait(30)
            waiting = pool.submit(owner.invoke, SPOKEN[1])
            _soon(_waiting_for_a_segment)
            closing = pool.submit(owner.close)
            # it waited until the batch ended, then transcribed the other 3 spans on a closed store
            with pytest.raises(Stopped, match="gave up while another search transcribed"):
                waiting.result(timeout=5)
            time.sleep(0.2)
            assert not closing.done()  # close() waits for the batch under way
        finally:
            gated.gate.set()
        docs = held.result(timeout=60)
        closing.result(timeout=10)
    assert counting.calls == 0
    assert docs[0].metadata["transcript"]  # the batch was finished and its words stored
    with pytest.raises(Stopped, match="store was closed; open it again"):  # a copy's later search
        holder.invoke(SPOKEN[0])
    with open_store(path=talk_path) as store:
        assert transcript_of(store.points([str(docs[0].id)])[0].payload) == docs[0].page_content
        assert sum(transcript_of(p.payload) is not None for p in store.iter_points()) == 1


@pytest.mark.parametrize(
    ("stop_at", "where"), [(2, "before cutting 3 segments"), (5, "before transcribing 4")]
)
def test_lazy_words_give_up_between_cuts_and_before_transcribing(
    talk_path: Path, model: AudioTextEncoder, whisper: Transcriber, stop_at: int, where: str
) -> None:
    counting = Counting(whisper)
    asked = 0

    def stop() -> bool:  # says "stop" from its stop_at-th question on
        nonlocal asked
        asked += 1
        return asked >= stop_at

    with open_store(path=talk_path) as store:
        hits: list[SpanHit] = store.search(model.encode_text([SPOKEN[0]])[0], k=4)
        with pytest.raises(Stopped, match=where):
            LazyWords(store, counting).fill(hits, stop=stop)
        assert counting.calls == 0
        assert all(transcript_of(p.payload) is None for p in store.iter_points())
    assert not words_module._LOCKS._locks  # it let its segments go
