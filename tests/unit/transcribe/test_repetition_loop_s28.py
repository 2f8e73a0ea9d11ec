"""Ingest-time words (:meth:`Transcriber.transcribe_words`) under the guards query-time words
have: a token cap per window and no repetition loop kept as words."""

from __future__ import annotations

from pathlib import Path

import pytest

from clasp_ingest.transcribe import Transcriber
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
