"""Shared fixtures of the pipeline tests: the tiny random model and a small speech folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from clasp_ingest.model.base import AudioTextEncoder
from tests.unit.pipeline.speech import SENTENCES, convert, speak


@pytest.fixture(scope="session")
def tiny_model() -> AudioTextEncoder:
    from clasp_ingest.model import load_model

    return load_model("tiny-random", device="cpu")


@pytest.fixture(scope="session")
def speech_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three short talks (wav, mp3, m4a) of 3, 2 and 1 sentences, made once per session."""
    root = tmp_path_factory.mktemp("speech")
    one = speak(root / "one.wav", SENTENCES[0:3])
    two = speak(root / "two_src.wav", SENTENCES[3:5], voice="en-us")
    three = speak(root / "three_src.wav", SENTENCES[5:6], voice="en-gb")
    return {
        "one.wav": one,
        "two.mp3": convert(two, root / "two.mp3"),
        "three.m4a": convert(three, root / "three.m4a"),
    }
