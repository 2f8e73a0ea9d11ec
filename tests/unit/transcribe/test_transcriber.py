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
    with pytest.raises(ModelLoadError, match=r"'tiny.en'.*Hugging Face Hub is reachable") as info:
        transcriber.load()  # tests run offline (HF_HUB_OFFLINE=1, no sockets)
    assert "\n" not in str(info.value)  # one error line, though the Hub's own text has several


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


@pytest.mark.slow
def test_spans_transcribed_together_get_the_words_each_alone_gets(
    whisper: Transcriber, tmp_path: Path
) -> None:
    spans = [
        read_wav(synth_speech("The library opens at nine in the morning.", tmp_path / "en.wav")),
        read_wav(synth_speech("Der Zug kam zu spät.", tmp_path / "de.wav", voice="de")),
        np.zeros(16_000, dtype=np.float32),  # a second of silence
        read_wav(synth_speech("El museo cierra los lunes.", tmp_path / "es.wav", voice="es")),
        np.zeros(0, dtype=np.float32),
    ]

    together = whisper.transcribe_many(spans)
    alone = [whisper.transcribe(span) for span in spans]

    # the same languages and words; case and punctuation may differ (the batch decodes from
    # the window the language was detected from, one log-mel frame longer)
    assert [t.language for t in together] == [a.language for a in alone]
    assert [_words(t.text) for t in together] == [_words(a.text) for a in alone]
    assert [t.language for t in together[:2]] == ["en", "de"] and together[3].language == "es"
    assert {"library", "morning"} <= _words(together[0].text) and together[4].text == ""
    assert all(t.model == "faster-whisper:whisper-base" and t.english is None for t in together)
    given = whisper.transcribe_many(spans[:2], language="de")
    assert [t.language for t in given] == ["de", "de"] and given[1].text == together[1].text
    assert whisper.transcribe_many([]) == []


@pytest.mark.slow
def test_a_whole_file_keeps_speech_after_silence_and_finds_its_language_past_a_silent_opening(
    whisper: Transcriber,
) -> None:
    """Whisper's "no speech" guess dropped a window's confident words (speech after a long
    silence), and a silent first 30 s made the file English: Spanish speech lost its words."""
    from clasp_ingest.media import decode_audio
    from clasp_ingest.words import transcribe_media

    spanish = decode_audio(Path(__file__).parents[3] / "clasp_ingest/data/samples/demo_es.opus")[: 16_000 * 9]
    silence = np.zeros(16_000 * 36, dtype=np.float32)
    media = transcribe_media([silence, spanish, silence, spanish], whisper)  # type: ignore[arg-type]
    assert media.language == "es"
    late = [w for w in media.words if w.start_s > 36 + 9 + 30]
    assert {"médico", "recomienda", "caminar"} <= _words(" ".join(w.text for w in late))


def test_a_declared_language_is_named_as_this_whisper_names_it(whisper: Transcriber) -> None:
    # ISO 639-2 track tags, feeds' regional tags and ISO 639-1 codes Whisper spells otherwise
    assert [whisper.declared_language(tag) for tag in ("it", "ita", "pt-BR", "jv", "nb", "iw", "haw")] == [
        "it", "it", "pt", "jw", "no", "he", "haw",
    ]  # fmt: skip
    # none, none Whisper knows, or one Whisper-base's vocabulary lacks (large-v3 added "yue"): detected
    assert [whisper.declared_language(tag) for tag in (None, "", "und", "xx", "tlh", "yue")] == [None] * 6


@pytest.mark.slow
def test_spans_in_a_declared_language_are_not_detected_and_the_others_are(
    whisper: Transcriber, tmp_path: Path
) -> None:
    """Short spans of Italian were detected as another language (espeak Italian heard as Spanish
    or Japanese); a language the item declares is used instead, in the same shared batch as
    spans whose language is detected; a language the transcriber was set to wins over both."""
    italian = read_wav(synth_speech("Domani andiamo al mare con gli amici.", tmp_path / "it.wav", voice="it"))
    english = read_wav(synth_speech("The library opens at nine.", tmp_path / "en.wav"))

    got = whisper.transcribe_many([italian, english], languages=["ita", None])

    assert [t.language for t in got] == ["it", "en"]
    assert {"mare", "amici"} & _words(got[0].text) and {"library", "nine"} & _words(got[1].text)
    with pytest.raises(ValueError, match="1 languages for 2 spans"):
        whisper.transcribe_many([italian, english], languages=["it"])
    english_only = Transcriber(TranscriberOptions(language="en"))
    english_only._model = whisper.load()  # the same loaded Whisper, set to English
    assert [t.language for t in english_only.transcribe_many([italian], languages=["it"])] == ["en"]
    # a declared language the audio clearly contradicts loses: a WebM/MKV track without a
    # Language element reads as 'eng', and Italian speech was transcribed as English (translated)
    clear = [
        read_wav(synth_speech(text, tmp_path / f"{voice}2.wav", voice=voice))
        for text, voice in (("Mañana vamos a la playa con los amigos.", "es"),
                            ("Mangiamo la carne, il tempo sarà bello domani.", "it"))
    ]  # fmt: skip
    contradicted = [t.language for t in whisper.transcribe_many(clear, languages=["eng", "eng"])]
    detected = [t.language for t in whisper.transcribe_many(clear)]
    assert contradicted == detected and "en" not in detected  # as with nothing declared
    assert whisper.choose_language(clear[0], "en") == "es" and whisper.choose_language(italian, "it") == "it"


def test_a_declared_language_is_taken_unless_detection_contradicts_it() -> None:
    from clasp_ingest.transcribe import _preferred

    ranked = [("ja", 0.31), ("it", 0.14), ("es", 0.10), ("en", 0.003)]  # espeak Italian, 3 s
    assert _preferred(ranked, "it") == "it" and _preferred(ranked, None) == "ja"
    assert _preferred(ranked, "en") == "ja"  # under 5 %: a default tag, not the language spoken
