"""Corpus builder: fortune parsing, sentence filter, deterministic plan, real synthesis."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.training.corpus import (
    CorpusOptions,
    build_corpus,
    collect_sentences,
    is_sentence_like,
    plan_corpus,
    read_fortunes,
    split_sentences,
)

FORTUNES_EN = """The early bird catches the worm. But the second mouse gets the cheese!
\t\t-- Anonymous
%
Q: What is green and red?
A: A frog in a blender.
%
Visit http://example.com for more wisdom today.
%
Never put off until tomorrow what you can do the day after tomorrow.
%
THIS IS ALL SHOUTING AND NOT MUCH ELSE.
%
Short one.
%
the early bird   catches the WORM.
"""

FORTUNES_DE = "Wer zuletzt lacht, denkt zu langsam.\n%\nMorgenstund hat Gold im Mund, sagt man oft.\n%\n"
FORTUNES_ES = "Más vale tarde que nunca, dice el refrán.\n%\n¿Quién sabe dónde está la llave?\n%\n"


@pytest.fixture
def fortunes_root(tmp_path: Path) -> Path:
    root = tmp_path / "fortunes"
    (root / "de").mkdir(parents=True)
    (root / "es").mkdir()
    (root / "fortunes").write_text(FORTUNES_EN, encoding="utf-8")
    (root / "fortunes.dat").write_bytes(b"\x00\x01binary")
    (root / "de" / "sprueche").write_text(FORTUNES_DE, encoding="utf-8")
    (root / "de" / "asciiart").write_text("Dies ist ASCII Kunst hier.\n", encoding="utf-8")
    (root / "es" / "refranes.fortunes").write_text(FORTUNES_ES, encoding="utf-8")
    return root


def test_read_and_split_fortunes(fortunes_root: Path) -> None:
    entries = list(read_fortunes(fortunes_root / "fortunes"))
    assert len(entries) == 7
    assert split_sentences(entries[0]) == [
        "The early bird catches the worm.",
        "But the second mouse gets the cheese!",
    ]
    assert split_sentences(entries[1]) == []  # Q:/A: dialogue dropped


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("Never put off until tomorrow what you can do today.", True),
        ("¿Quién sabe dónde está la llave?", True),
        ("Short one.", False),
        ("Visit http://example.com for more wisdom today.", False),
        ("THIS IS ALL SHOUTING AND NOT MUCH ELSE.", False),
        ("no capital letter at the start here.", False),
        ("An unfinished thought without an end", False),
        ("Use x = y * 2 in the loop, it works.", False),
        (" ".join(["word"] * 30).capitalize() + ".", False),
    ],
)
def test_sentence_filter(sentence: str, ok: bool) -> None:
    assert is_sentence_like(sentence) is ok


def test_collect_dedupes_and_skips_ascii_art(fortunes_root: Path) -> None:
    en = collect_sentences("en", fortunes_root)
    assert en.count("The early bird catches the worm.") == 1
    assert not any("WORM" in s for s in en)
    assert "Never put off until tomorrow what you can do the day after tomorrow." in en
    assert collect_sentences("de", fortunes_root) == sorted(
        ["Wer zuletzt lacht, denkt zu langsam.", "Morgenstund hat Gold im Mund, sagt man oft."]
    )


def _sentences(n: int) -> dict[str, list[str]]:
    return {lang: [f"{lang} sentence number {i} is here." for i in range(n)] for lang in ("en", "de", "es")}


def test_plan_is_deterministic_balanced_and_split_by_sentence() -> None:
    opts = CorpusOptions(n=300, seed=7, languages=("en", "de", "es"), clips_per_sentence=2, val_fraction=0.1)
    plan = plan_corpus(opts, _sentences(200), piper=True)
    assert plan == plan_corpus(opts, _sentences(200), piper=True)
    assert plan != plan_corpus(
        CorpusOptions(n=300, seed=8, languages=("en", "de", "es"), clips_per_sentence=2),
        _sentences(200),
        piper=True,
    )
    assert [j.index for j in plan] == list(range(300))
    counts = {lang: sum(j.language == lang for j in plan) for lang in ("en", "de", "es")}
    assert max(counts.values()) - min(counts.values()) <= 2
    split_of: dict[str, set[str]] = {}
    for j in plan:
        split_of.setdefault(j.text, set()).add(j.split)
    assert all(len(s) == 1 for s in split_of.values())
    assert {j.split for j in plan} == {"train", "val", "test"}
    assert {j.engine for j in plan if j.language != "en"} == {"espeak"}
    assert "piper" in {j.engine for j in plan if j.language == "en"}
    assert len({j.voice for j in plan}) > 5


def test_plan_spreads_leftover_to_languages_with_text() -> None:
    sents = {"en": ["One two three four."], "de": [f"Satz nummer {i} hier." for i in range(50)]}
    plan = plan_corpus(CorpusOptions(n=10, languages=("en", "de")), sents, piper=False)
    assert sum(j.language == "en" for j in plan) == 1 and len(plan) == 10


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="languages"):
        CorpusOptions(n=5, languages=("xx",))
    with pytest.raises(ConfigError):
        CorpusOptions(n=0)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng needed (make system-deps)")
def test_build_small_corpus_reads_back_as_training_manifest(fortunes_root: Path, tmp_path: Path) -> None:
    import soundfile as sf

    from clasp_ingest.training.manifest import read_manifest

    opts = CorpusOptions(
        n=6, seed=3, languages=("en", "de", "es"), fortunes_root=fortunes_root, piper_fraction=0.5
    )
    report = build_corpus(opts, tmp_path / "a")
    assert report.clips == 6 and report.seconds_of_audio > 3
    rows = read_manifest(tmp_path / "a" / "manifest.jsonl")
    assert len(rows) == 6 and {r.language for r in rows} == {"en", "de", "es"}
    for row in rows:
        audio, sr = sf.read(row.audio, dtype="float32")
        assert sr == 16_000 and audio.ndim == 1 and 0.5 < len(audio) / sr < 15 and np.abs(audio).max() > 0.05
    meta = [json.loads(x) for x in (tmp_path / "a" / "synthesis.jsonl").read_text().splitlines()]
    assert [m["audio"] for m in meta] == [
        json.loads(x)["audio"] for x in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()
    ]
    # same seed -> same manifest and same audio
    build_corpus(opts, tmp_path / "b")
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (
        tmp_path / "b" / "manifest.jsonl"
    ).read_bytes()
    for row in rows:
        rel = row.audio.relative_to(tmp_path / "a")
        assert (tmp_path / "b" / rel).read_bytes() == row.audio.read_bytes(), rel


def test_clips_are_checked_with_ffmpeg(tmp_path: Path) -> None:
    from clasp_ingest.training.corpus import ffmpeg_decodes, write_clip

    t = np.arange(2 * 16_000) / 16_000
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    clip = tmp_path / "clip.flac"
    write_clip(clip, audio.astype(np.float32))
    assert ffmpeg_decodes(clip)
    # a FLAC with damaged frame data (what libsndfile occasionally writes) is caught
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    damaged = tmp_path / "damaged.flac"
    damaged.write_bytes(bytes(data))
    assert not ffmpeg_decodes(damaged)
    assert not ffmpeg_decodes(tmp_path / "missing.flac")


def test_exclude_leaves_out_held_out_sentences_and_says_when_none_are_left(
    fortunes_root: Path, tmp_path: Path
) -> None:
    from clasp_ingest.training.corpus import _gather_text

    spanish = collect_sentences("es", fortunes_root)
    held_out = tmp_path / "heldout.jsonl"
    held_out.write_text(
        json.dumps({"audio": "a.flac", "text": spanish[0], "language": "es", "split": "test"}) + "\n",
        encoding="utf-8",
    )
    opts = CorpusOptions(n=4, languages=("de", "es"), fortunes_root=fortunes_root, exclude=(held_out,))
    assert _gather_text(opts)["es"] == spanish[1:]
    held_out.write_text(
        "".join(json.dumps({"audio": "a.flac", "text": s}) + "\n" for s in spanish), encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"every es sentence \(2\) is in an --exclude manifest"):
        _gather_text(opts)


def test_add_text_adds_files_to_one_language_only(fortunes_root: Path, tmp_path: Path) -> None:
    from clasp_ingest.training.corpus import _gather_text

    (fortunes_root / "startrek").write_text("Space is the final frontier of our time.\n%\n", encoding="utf-8")
    outside = tmp_path / "mine.fortunes"
    outside.write_text("Our own lecture notes are read aloud here.\n%\nShort.\n%\n", encoding="utf-8")
    base = collect_sentences("en", fortunes_root)
    assert "Space is the final frontier of our time." not in base  # not one of the default files
    opts = CorpusOptions(
        n=4,
        languages=("en", "de"),
        fortunes_root=fortunes_root,
        extra_text=(("en", ("startrek",)), ("en", (str(outside),))),
    )
    text = _gather_text(opts)
    assert text["en"] == sorted(
        [*base, "Space is the final frontier of our time.", "Our own lecture notes are read aloud here."]
    )
    assert text["de"] == collect_sentences("de", fortunes_root)


def test_add_text_refuses_unknown_files_languages_and_bad_syntax(fortunes_root: Path, tmp_path: Path) -> None:
    from clasp_ingest.training.corpus import main

    with pytest.raises(ConfigError, match=r"en=nosuch: .*nosuch does not exist"):
        CorpusOptions(n=2, languages=("en",), fortunes_root=fortunes_root, extra_text=(("en", ("nosuch",)),))
    with pytest.raises(ConfigError, match="es is not among --languages"):
        CorpusOptions(n=2, languages=("en",), fortunes_root=fortunes_root, extra_text=(("es", ("es",)),))
    out = tmp_path / "never"
    for value in ("en", "en=", "=startrek"):
        assert (
            main(["--out", str(out), "--n", "2", "--fortunes-root", str(fortunes_root), "--add-text", value])
            == 2
        )
    assert not out.exists()


def test_kokoro_fraction_zero_keeps_every_existing_plan() -> None:
    opts = CorpusOptions(n=120, seed=7, languages=("en", "de", "es"))
    assert plan_corpus(opts, _sentences(200), piper=True) == plan_corpus(
        opts, _sentences(200), piper=True, kokoro=True
    )


def test_kokoro_reads_its_share_of_its_languages_with_seeded_voices() -> None:
    opts = CorpusOptions(n=300, seed=7, languages=("en", "de", "es"), kokoro_fraction=0.5)
    plan = plan_corpus(opts, _sentences(200), piper=True, kokoro=True)
    assert plan == plan_corpus(opts, _sentences(200), piper=True, kokoro=True)
    kokoro = [j for j in plan if j.engine == "kokoro"]
    assert {j.language for j in kokoro} == {"en", "es"}  # German is not one of Kokoro's languages
    share = len(kokoro) / sum(j.language in ("en", "es") for j in plan)
    assert 0.35 < share < 0.65
    assert len({j.voice for j in kokoro}) > 20 and all(j.voice.startswith("kokoro:") for j in kokoro)
    assert {j.rate for j in kokoro} <= {0.85, 0.92, 1.0, 1.08, 1.15}
    with pytest.raises(ConfigError, match="kokoro_fraction"):
        CorpusOptions(n=5, kokoro_fraction=1.5)


def test_kokoro_voice_names_round_trip_and_bad_mixes_are_refused() -> None:
    import random

    from clasp_ingest.training.kokoro import KokoroVoice, random_voice

    voice = random_voice(random.Random(3))
    assert KokoroVoice.parse(voice.name, voice.speed).name == voice.name
    with pytest.raises(ConfigError, match="styles"):
        KokoroVoice((("jf_nobody", 1.0),))
    with pytest.raises(ConfigError, match="not a Kokoro voice"):
        KokoroVoice.parse("kokoro:jf_alpha")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng needed (make system-deps)")
def test_english_ipa_gets_kokoros_own_symbols() -> None:
    from clasp_ingest.training.kokoro import ipa_phonemes

    ipa = ipa_phonemes("The brown cow joined my train.", "en-us")
    assert "A" in ipa and "W" in ipa and "Y" in ipa and "I" in ipa  # train, brown/cow, joined, my
    assert "eɪ" not in ipa and "aʊ" not in ipa
    assert "ˈ" in ipa  # stress marks are Kokoro symbols too


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng needed (make system-deps)")
def test_kokoro_speech_is_heard_by_whisper() -> None:
    """Real Kokoro-82M output, 16 kHz, recognisable: Whisper-base writes the sentence back."""
    from clasp_ingest.training.kokoro import Kokoro, KokoroVoice
    from clasp_ingest.transcribe import Transcriber, TranscriberOptions

    voice = KokoroVoice((("jf_alpha", 0.5), ("jm_kumo", 0.5)))
    audio = Kokoro(threads=2).speak("The library opens early on every weekday.", "en-us", voice)
    assert audio.dtype == np.float32 and 1.5 < len(audio) / 16_000 < 6
    words = Transcriber(TranscriberOptions(language="en")).transcribe(audio).text.lower()
    assert "library" in words and "opens early" in words, words


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng needed (make system-deps)")
def test_build_with_kokoro_writes_its_clips_and_records_the_voice(
    fortunes_root: Path, tmp_path: Path
) -> None:
    import soundfile as sf

    opts = CorpusOptions(
        n=3, seed=1, languages=("en", "es"), fortunes_root=fortunes_root, kokoro_fraction=1.0, workers=1
    )
    report = build_corpus(opts, tmp_path / "k")
    assert report.by_engine == {"kokoro": 3}
    meta = [json.loads(x) for x in (tmp_path / "k" / "synthesis.jsonl").read_text().splitlines()]
    assert all(m["engine"] == "kokoro" and m["voice"].startswith("kokoro:") for m in meta)
    for m in meta:
        audio, sr = sf.read(tmp_path / "k" / m["audio"], dtype="float32")
        assert sr == 16_000 and 0.5 < len(audio) / sr < 15 and np.abs(audio).max() > 0.05
