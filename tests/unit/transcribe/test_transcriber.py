"""The transcriber: real faster-whisper with the bundled Whisper-base on espeak-ng speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.transcribe import Transcriber, TranscriberOptions
from tests.fixtures_audio import read_wav, synth_speech


def _words(text: str) -> set[str]:
    return {w.strip(".,!?").lower() for w in text.split()}


def test_nothing_loads_until_a_span_needs_words() -> None:
    transcriber = Transcriber(TranscriberOptions(model="/no/such/folder"))
    assert not transcriber.loaded and transcriber.model_id == "faster-whisper:/no/such/folder"
    with pytest.raises(ModelLoadError, match="/no/such/folder"):
        transcriber.transcribe(np.zeros(16_000, dtype=np.float32))


def test_a_hub_name_that_is_not_cached_fails_with_the_remedy(tmp_path: Path) -> None:
    transcriber = Transcriber(TranscriberOptions(model="tiny.en", device="cpu"), cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match=r"'tiny.en'.*Hugging Face Hub is reachable"):
        transcriber.load()  # tests run offline (HF_HUB_OFFLINE=1, no sockets)


@pytest.mark.parametrize(
    ("field", "value"),
    [("beam_size", 0), ("cpu_threads", -1), ("language", "e n"), ("device", "tpu"), ("model", "")],
)
def test_options_reject_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TranscriberOptions(**{field: value})  # type: ignore[arg-type]


@pytest.mark.slow
def test_english_speech_gives_its_words_and_language(whisper: Transcriber, tmp_path: Path) -> None:
    text = "Photosynthesis turns sunlight into chemical energy for plants."
    audio = read_wav(synth_speech(text, tmp_path / "en.wav"))

    got = whisper.transcribe(audio)

    assert got.language == "en" and got.model == "faster-whisper:whisper-base"
    assert {"photosynthesis", "sunlight", "energy", "plants"} <= _words(got.text)
    assert got.english is None
    assert whisper.transcribe(np.zeros(0, dtype=np.float32)).text == ""


@pytest.mark.slow
def test_translate_adds_english_for_a_german_span(tmp_path: Path) -> None:
    audio = read_wav(synth_speech("Der Zug hatte wegen des Schnees zwanzig Minuten Verspätung.",
                                  tmp_path / "de.wav", voice="de"))  # fmt: skip
    transcriber = Transcriber(TranscriberOptions(translate=True))

    got = transcriber.transcribe(audio)

    assert got.language == "de" and {"zug", "minuten"} & _words(got.text)
    assert got.english is not None and "minutes" in _words(got.english)  # espeak's German: rough
    assert transcriber.transcribe(audio, language="de").language == "de"
