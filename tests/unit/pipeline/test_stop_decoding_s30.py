"""A Ctrl-C stops the decode at once where no speech comes (session 30, tester 1's bug 2): the
prefetching thread checked its stop only between segments, so the first Ctrl-C or SIGTERM
waited for the whole file (hours for a damaged header's 1 Hz WAV, as long for any silence)."""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clasp_ingest.errors import IngestInterrupted
from clasp_ingest.pipeline import PipelineOptions, _prefetched, _speech_of, items_stopping
from clasp_ingest.types import MediaRef

#: Wall time the silent source lasts: what the interrupted ingest waited for before the fix.
_SOURCE_S = 20.0


def _open_ended_wav_header(rate: int = 16_000) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown" (as written to a pipe)."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", 16) + fmt + b"data\xff\xff\xff\xff"


@pytest.fixture
def silence(tmp_path: Path) -> Iterator[Path]:
    """A FIFO that gives silence, 20x faster than real time, for :data:`_SOURCE_S` seconds."""
    fifo = tmp_path / "silence.wav"
    os.mkfifo(fifo)
    done = threading.Event()

    def write() -> None:
        try:
            with fifo.open("wb") as out:
                out.write(_open_ended_wav_header())
                second = bytes(32_000)
                ends = time.monotonic() + _SOURCE_S
                while time.monotonic() < ends and not done.is_set():
                    out.write(second)
                    time.sleep(0.05)
        except (BrokenPipeError, OSError):  # ffmpeg stopped: the decode ended
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    yield fifo
    done.set()
    with contextlib.suppress(OSError):  # a writer still waiting for a reader
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    writer.join(5)


def _speech(fifo: Path, stop: threading.Event) -> Iterator[object]:
    ref = MediaRef(fifo.as_uri(), "silence", "v1")
    return _prefetched(_speech_of(str(fifo), ref, PipelineOptions(), [0], [], stop=stop), 4, stop)


@pytest.fixture
def ctrl_c_interrupts() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt), whatever an earlier test in the process
    (a CLI run, a Prefect flow) left installed."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("ctrl_c_interrupts")
def test_ctrl_c_stops_a_decode_that_finds_no_speech_at_once(silence: Path) -> None:
    speech = _speech(silence, threading.Event())
    # a Ctrl-C: SIGINT to the main thread (where the CLI's ingest waits for segments)
    interrupt = threading.Timer(2.0, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    interrupt.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            next(speech)  # no segment ever comes: it waits here until the Ctrl-C
    finally:
        interrupt.cancel()
    assert time.monotonic() - started < 5, "the Ctrl-C waited for the decode to end"


def test_a_stopping_run_stops_a_decode_that_finds_no_speech(silence: Path) -> None:
    """A flow interrupted (items_stopping) waited for the item's next batch: none came."""
    speech = _speech(silence, threading.Event())
    started = time.monotonic()
    with pytest.raises(IngestInterrupted, match="interrupted"), items_stopping():
        next(speech)
    assert time.monotonic() - started < 5
