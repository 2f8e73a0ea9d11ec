"""Rows that name one audio file (captions of one clip) are one candidate clip (t4, bug 1).

The encoder here embeds a tone by its pitch and a caption by the clip number it names, and
moves each audio vector by 1e-8 with its batch position, as the real fusion head does: the
same file at two positions then scores its caption a hair differently.
"""

from __future__ import annotations

import json
import re
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever.rerank import Fusion

from clasp_ingest.errors import ConfigError
from clasp_ingest.evaluation.evaluate import RESULT_KEYS, evaluate
from clasp_ingest.evaluation.rerank import SecondStage
from clasp_ingest.transcribe import Transcriber, Transcript

SR = 16_000
DIM = 8
PITCH = 300.0  # clip k is a (k + 1) * 300 Hz tone


class PitchTowers:
    """An ``AudioTextEncoder``: a tone → the basis vector of its clip number, plus batch noise;
    "clip k ..." → that basis vector plus a small caption-specific part."""

    model_id, dim = "pitch-towers", DIM

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(waveforms), DIM))
        for position, wave in enumerate(waveforms):
            peak = np.argmax(np.abs(np.fft.rfft(wave))) * SR / len(wave)
            out[position, round(peak / PITCH) - 1] = 1.0
            out[position, -1] = 1e-8 * position  # where in the batch it was embedded
        return out

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM))
        for i, text in enumerate(texts):
            match = re.match(r"clip (\d+)", text)
            assert match is not None, text
            out[i] = 0.05 * np.random.default_rng(zlib.crc32(text.encode())).uniform(0.1, 1.0, DIM)
            out[i, int(match.group(1))] += 1.0
        return out


class NamedWords(Transcriber):
    """Words without Whisper, counting the clips transcribed."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def transcribe(self, samples_16k: np.ndarray, *, language: str | None = None) -> Transcript:
        self.calls += 1
        return Transcript(text="a tone", language="en", model="named")


def _write(folder: Path, name: str, rows: Sequence[tuple[str, str]]) -> Path:
    import soundfile as sf

    for audio, _ in rows:
        k = int(audio.removeprefix("c").removesuffix(".wav"))
        if not (folder / audio).exists():
            t = np.arange(int(0.3 * SR)) / SR
            sf.write(folder / audio, (0.3 * np.sin(2 * np.pi * PITCH * (k + 1) * t)).astype(np.float32), SR)
    lines = [json.dumps({"audio": audio, "text": text}) + "\n" for audio, text in rows]
    (folder / name).write_text("".join(lines), encoding="utf-8")
    return folder / name


# 7 captions of 5 clips: clips 0 and 2 have two each
ROWS = [
    ("c0.wav", "clip 0 a cat asleep"),
    ("c1.wav", "clip 1 rain tonight"),
    ("c2.wav", "clip 2 fresh bread"),
    ("c0.wav", "clip 0 the cat sleeps"),
    ("c3.wav", "clip 3 a train"),
    ("c4.wav", "clip 4 the match"),
    ("c2.wav", "clip 2 she bought bread"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared")


def test_each_caption_of_a_clip_finds_it_whatever_the_row_order(folder: Path) -> None:
    got = evaluate(PitchTowers(), _write(folder, "m.jsonl", ROWS))
    assert got == {
        "hits@1": 1.0,
        "mrr": 1.0,
        "mean_rank": 1.0,
        "macro_f1": 1.0,  # own clip ~0.99, others < 0.1: every (query, clip) pair decided right
        "threshold": 0.5,
        "n_queries": 7,
        "candidates": "all",
        "n_clips": 5,
    }
    for seed in (1, 2, 3):
        shuffled = [ROWS[i] for i in np.random.default_rng(seed).permutation(len(ROWS))]
        assert evaluate(PitchTowers(), _write(folder, f"p{seed}.jsonl", shuffled)) == got


def test_one_row_per_clip_keeps_the_result_keys(folder: Path) -> None:
    got = evaluate(PitchTowers(), _write(folder, "one.jsonl", ROWS[:3] + ROWS[4:6]))
    assert list(got) == list(RESULT_KEYS) and got["n_queries"] == 5


def test_sampled_candidates_are_drawn_among_the_distinct_clips(folder: Path) -> None:
    manifest = _write(folder, "m.jsonl", ROWS)
    every = evaluate(PitchTowers(), manifest, 5)  # all 5 clips: the "all" numbers
    assert (every["hits@1"], every["mean_rank"], every["candidates"]) == (1.0, 1.0, 5)
    with pytest.raises(ConfigError, match=r"needs 2\.\.5 \(the split has 5 clips in 7 rows"):
        evaluate(PitchTowers(), manifest, 6)


def test_distractor_rows_of_one_file_are_one_clip(folder: Path) -> None:
    manifest = _write(folder, "m.jsonl", ROWS)
    rows = [("c5.wav", "clip 5 x"), ("c5.wav", "clip 5 y"), ("c0.wav", "clip 0 z")]  # c0: a query's
    extra = _write(folder, "d.jsonl", rows)
    got = evaluate(PitchTowers(), manifest, distractors=extra)
    assert got["distractors"] == 1 and got["hits@1"] == 1.0 and got["n_clips"] == 5


def test_rerank_transcribes_each_clip_once_and_keeps_the_first_stage_s_tie_rule(folder: Path) -> None:
    # c3 copied under another name is another clip with the same vector: "clip 3" queries tie
    shutil.copy(_write(folder, "m.jsonl", ROWS).parent / "c3.wav", folder / "c33.wav")
    rows = [*ROWS, ("c33.wav", "clip 3 the same train")]
    manifest = _write(folder, "tie.jsonl", rows)
    plain = evaluate(PitchTowers(), manifest)
    assert plain["hits@1"] == pytest.approx(6 / 8) and plain["mean_rank"] == 1.0
    words = NamedWords()
    stage = SecondStage(6, words, lambda query, texts: np.full(len(texts), np.nan), Fusion().fuse)
    reranked = evaluate(PitchTowers(), manifest, rerank=stage)
    assert {key: reranked[key] for key in plain} == plain  # words that change nothing
    assert reranked["transcribed"] == words.calls == 6  # 8 rows, 6 clips, each once
