"""Session fixtures for the media tests: synthesised once, reused by every test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_audio import (
    SENTENCES,
    SR,
    SpokenTrack,
    build_track,
    convert,
    mux_video,
    noise,
    synth_speech,
    video_only,
    write_wav,
)

#: Pauses between the sentences of the long track (seconds), cycled.
PAUSES = [0.6, 0.9, 1.2, 1.5, 0.75]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def long_track(media_dir: Path) -> SpokenTrack:
    """Twenty known sentences separated by known pauses (~85 s)."""
    return build_track(SENTENCES, media_dir / "long.wav", pauses=PAUSES)


@pytest.fixture(scope="session")
def short_track(media_dir: Path) -> SpokenTrack:
    """Four sentences (~15 s): the source of the container/codec variants."""
    return build_track(SENTENCES[:4], media_dir / "short.wav", pauses=[0.8, 1.1, 0.7])


@pytest.fixture(scope="session")
def variants(short_track: SpokenTrack, media_dir: Path) -> dict[str, Path]:
    """The short track as wav (16 kHz mono), stereo 44.1 kHz flac, mp3, opus, m4a, mp4 and webm videos."""
    src = short_track.path
    return {
        "wav": src,
        "flac": convert(src, media_dir / "short.flac", "-ac", "2", "-ar", "44100"),
        "mp3": convert(src, media_dir / "short.mp3", "-b:a", "64k"),
        "opus": convert(src, media_dir / "short.opus", "-c:a", "libopus", "-b:a", "32k"),
        "m4a": convert(src, media_dir / "short.m4a", "-c:a", "aac", "-b:a", "64k"),
        "mp4": mux_video(src, media_dir / "short.mp4"),
        "webm": mux_video(src, media_dir / "short.webm"),
    }


@pytest.fixture(scope="session")
def bad_inputs(media_dir: Path, short_track: SpokenTrack) -> dict[str, Path]:
    """Inputs that must fail with MediaDecodeError."""
    empty = media_dir / "empty.wav"
    empty.write_bytes(b"")
    text = media_dir / "notes.mp3"
    text.write_text("These are meeting notes, not audio.\n" * 20)
    random = media_dir / "random.mp3"
    random.write_bytes(np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    mp3 = convert(short_track.path, media_dir / "whole.mp3")
    truncated = media_dir / "truncated.mp3"
    truncated.write_bytes(mp3.read_bytes()[:300])
    silent_video = media_dir / "no_audio.mp4"
    video_only(silent_video)
    return {
        "empty": empty,
        "text": text,
        "random": random,
        "truncated": truncated,
        "no_audio": silent_video,
        "missing": media_dir / "does_not_exist.wav",
    }


@pytest.fixture(scope="session")
def silence_wav(media_dir: Path) -> Path:
    return write_wav(media_dir / "silence.wav", np.zeros(20 * SR, dtype=np.float32))


@pytest.fixture(scope="session")
def noise_wav(media_dir: Path) -> Path:
    return write_wav(media_dir / "noise.wav", noise(20.0, amplitude=0.1))


@pytest.fixture(scope="session")
def short_word(media_dir: Path) -> Path:
    return synth_speech("Yes.", media_dir / "yes.wav")
