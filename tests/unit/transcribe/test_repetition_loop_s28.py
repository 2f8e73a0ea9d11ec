"""Ingest-time words (:meth:`Transcriber.transcribe_words`) under the guards query-time words
have: a token cap per window and no repetition loop kept as words."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from clasp_ingest.media.decode import decode_audio
from clasp_ingest.transcribe import _TEMPERATURES, Transcriber
from tests.fixtures_audio import read_wav, synth_speech


@pytest.mark.slow
def test_laughter_that_makes_whisper_loop_gives_no_runaway_word(whisper: Transcriber, tmp_path: Path) -> None:
    """2 s of espeak laughter made the whole-file pass loop at every temperature: one stored
    446-character "word" (``Fafafafa…``), 22-59 s of CPU; query-time words gave 33 characters."""
    laugh = read_wav(synth_speech("ha ha ha ha ha hee hee hee ha ha", tmp_path / "laugh.wav", rate=200))
    words, _ = whisper.transcribe_words(laugh, language="en")
    text = "".join(w.text for w in words)
    # at most the cap's worth of tokens for a 2 s window (37), no run-on "word"
    assert all(len(w.text.strip()) <= 24 for w in words), text
    assert len(text) <= 120, text


@pytest.mark.slow
def test_speech_that_repeats_for_real_keeps_its_words(whisper: Transcriber, tmp_path: Path) -> None:
    """A count said ten times compresses like a loop at every temperature; dropping such
    windows left it no words at all (the query-time words had them)."""
    counted = read_wav(synth_speech("one two three four. " * 10, tmp_path / "count.wav"))
    words, _ = whisper.transcribe_words(counted, language="en")
    heard = "".join(w.text for w in words).lower()
    assert len(words) >= 20 and heard.count("3") + heard.count("three") >= 5, heard


@pytest.mark.slow
def test_a_window_that_loops_at_every_temperature_prompts_no_window_after_it(
    whisper: Transcriber, caplog: pytest.LogCaptureFixture
) -> None:
    """Whisper-base hears the bundled espeak German as Welsh (on AVX2 and float32 alike): its
    second window looped at every temperature, and the 26 ms after it, prompted with that loop,
    was decoded three times more in a loop of its own (79 CPU-s of the pass, 33 without)."""
    audio = decode_audio(str(Path(__file__).parents[3] / "clasp_ingest/data/samples/demo_de.opus"))
    with caplog.at_level(logging.DEBUG, logger="faster_whisper"):
        whisper.transcribe_words(audio)
    said = [r.getMessage() for r in caplog.records if r.name == "faster_whisper"]
    windows = [i for i, line in enumerate(said) if line.startswith("Processing segment at")]
    assert windows, said
    last = f"not met with temperature {_TEMPERATURES[-1]:.1f}"
    for start, end in zip(windows, [*windows[1:], len(said)], strict=True):
        window = said[start:end]
        if any(last in line for line in window) and end < len(said):  # failed or needed the last retry
            assert any(line.startswith("Reset prompt") for line in window), window
