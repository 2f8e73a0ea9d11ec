"""Test helpers: espeak-ng speech made on the spot (files of sentences separated by clear
pauses, or one sentence as 16 kHz samples) and a connector whose first opens fail like a
dropped connection."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors import LocalConnector

from clasp_ingest.media.decode import find_ffmpeg
from clasp_ingest.model.base import SAMPLE_RATE
from clasp_ingest.types import MediaRef

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Then it rests under a tall tree for a while.",
    "Later the fox runs home before the rain starts.",
    "Rivers carry water from the mountains to the sea.",
    "A small library opens early on every weekday.",
    "The train to the coast leaves at half past nine.",
)


def speak(path: Path, sentences: Sequence[str], *, voice: str = "en", pause_ms: int = 700) -> Path:
    """A wav of ``sentences`` spoken by espeak-ng with ``pause_ms`` of silence between them."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("these tests synthesise speech with espeak-ng: run `make system-deps`")
    ssml = f'<break time="{pause_ms}ms"/>'.join(sentences)
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["espeak-ng", "-m", "-v", voice, "-w", str(path), f"<speak>{ssml}</speak>"], check=True, timeout=60
    )
    return path


def speak_samples(text: str, voice: str, tmp: Path, *, rate: int | None = None) -> np.ndarray:
    """16 kHz mono float32 samples of ``text`` spoken by espeak-ng (``rate`` in words per
    minute, espeak's default if None), resampled by sox; skips the test without the tools."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed (make system-deps)")
    import soundfile as sf

    raw, wav = tmp / f"{voice}-raw.wav", tmp / f"{voice}.wav"
    speed = [] if rate is None else ["-s", str(rate)]
    subprocess.run(["espeak-ng", "-v", voice, *speed, "-w", str(raw), text], check=True, capture_output=True)
    # -R: sox dithers with a fixed seed, so the same text gives the same samples on every run
    subprocess.run(
        ["sox", "-R", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", str(wav)], check=True, capture_output=True
    )
    audio, sr = sf.read(wav, dtype="float32")
    assert sr == SAMPLE_RATE
    return np.asarray(audio, dtype=np.float32)


def convert(source: Path, target: Path, *extra: str) -> Path:
    """Re-encode with ffmpeg (the container/codec follows ``target``'s extension)."""
    subprocess.run(
        [find_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *extra, str(target)],
        check=True,
        timeout=60,
    )
    return target


def corrupt(path: Path) -> Path:
    """A file with a media extension that is not media."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ID3\x03\x00\x00\x00" + bytes(range(256)) * 40)
    return path


class FlakyConnector(LocalConnector):
    """A real local connector whose first ``failures`` opens hit a network-style error."""

    def __init__(self, location: Path, failures: int) -> None:
        super().__init__(location)
        self.failures = failures

    @contextmanager
    def open(self, ref: MediaRef) -> Iterator[str]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionResetError("connection reset by peer")
        with super().open(ref) as local:
            yield local
