"""Two-stage ranking: CLASP's top N reordered by the fused CLASP and text scores, on real speech.

The store holds the spoken talk (espeak-ng, real Whisper transcription) with each segment's
vector leaning the wrong way: segment ``i`` carries clasp-mini's vectors of sentences ``i`` and
``i + 1`` summed (the latter weighted 1.2), so for every query CLASP alone ranks the segment
*before* the right one first (by 0.03–0.05), and the words put the right one back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever
from clasp_ingest.retriever.rerank import TEXT_WEIGHT, Fusion, TextScorer
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.model.query import QueryModel, load_query_model
from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.transcribe import Transcriber
from clasp_ingest.types import MediaRef, Segment
from tests.unit.retriever.conftest import SPOKEN, Counting

Talk = tuple[MediaRef, list[Segment]]


@pytest.fixture(scope="module")
def mini() -> QueryModel:
    return load_query_model("clasp-mini", device="cpu")


def fill_shifted(store: QdrantStore, model: QueryModel, talk: Talk) -> None:
    """Segment ``i`` of the talk stored leaning towards sentence ``i + 1`` (wrapping)."""
    ref, segments = talk
    store.ensure_collection(model.model_id, model.dim)
    own = model.encode_text(list(SPOKEN))
    leaning = own + 1.2 * np.roll(own, -1, axis=0)
    vectors = leaning / np.linalg.norm(leaning, axis=1, keepdims=True)
    store.write_media(ref, model.model_id, [(segments, vectors.astype(np.float32))])


@pytest.fixture(params=["client", "edge"])
def shifted_store(
    request: pytest.FixtureRequest, tmp_path: Path, mini: QueryModel, spoken_talk: Talk
) -> Iterator[QdrantStore]:
    target = open_store(url=":memory:") if request.param == "client" else open_store(path=tmp_path / "q")
    with target:
        fill_shifted(target, mini, spoken_talk)
        yield target


# ----- fusion (fast)


def test_fusion_weights_move_between_the_two_rankings() -> None:
    clasp, text = np.array([0.9, 0.5, 0.1]), np.array([0.1, 0.2, 0.8])
    for method in ("weighted", "zscore", "rrf"):
        assert np.argmax(Fusion(0.0, method).fuse(clasp, text)) == 0
        assert np.argmax(Fusion(1.0, method).fuse(clasp, text)) == 2
    assert np.allclose(Fusion(0.25).fuse(clasp, text), 0.75 * clasp + 0.25 * text)
    assert Fusion().text_weight == TEXT_WEIGHT and Fusion().method == "weighted"


@pytest.mark.parametrize("args", [(1.5, "weighted"), (-0.1, "weighted"), (0.5, "max")])
def test_fusion_refuses_bad_settings(args: tuple[float, str]) -> None:
    with pytest.raises(ValueError, match=r"text_weight|method"):
        Fusion(*args)


def test_text_scores_are_cosines_and_the_cache_changes_nothing(mini: QueryModel) -> None:
    texts = [SPOKEN[1], None, SPOKEN[0], "  "]
    fresh = TextScorer(mini).scores(SPOKEN[0], texts)
    tiny = TextScorer(mini, cache_size=1)  # smaller than one call's texts
    first, again = tiny.scores(SPOKEN[0], texts), tiny.scores(SPOKEN[0], texts)
    assert np.isnan(fresh[[1, 3]]).all() and np.argmax(np.nan_to_num(fresh, nan=-1)) == 2
    assert -1.0 <= fresh[0] < fresh[2] <= 1.0 + 1e-6
    assert np.allclose(first, fresh, equal_nan=True) and np.allclose(again, fresh, equal_nan=True)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])  # "10" is read as k is
def test_bad_rerank_values_are_refused(mini: QueryModel, bad: object) -> None:
    with open_store(url=":memory:") as store, pytest.raises(ValueError, match="rerank"):
        ClaspRetriever(store=store, model=mini, k=1, rerank=bad)


def test_rerank_smaller_than_k_is_refused_everywhere(mini: QueryModel) -> None:
    with open_store(url=":memory:") as store:
        with pytest.raises(ValueError, match="rerank=3 is smaller than k=5"):
            ClaspRetriever(store=store, model=mini, k=5, rerank=3)
        with pytest.raises(ValueError, match="rerank=2 is smaller than k=4"):
            ClaspRetriever(store=store, model=mini, search_kwargs={"k": 4, "rerank": 2})
        retriever = ClaspRetriever(store=store, model=mini, k=4)
        with pytest.raises(ValueError, match="give rerank >= k"):
            retriever.invoke("snow", rerank=2)
        with pytest.raises(ValueError, match="rerank"):
            retriever.invoke("snow", rerank=0)


def test_search_refuses_rerank_below_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    result = CliRunner().invoke(app, ["search", "snow", "--k", "5", "--rerank", "3"])
    said = " ".join(result.output.replace("│", " ").split())  # without typer's box
    assert result.exit_code == 2 and "'--rerank': 3 is smaller than --k 5" in said, result.output
    assert "--rerank" in CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "200"}).stdout


# ----- on real speech (slow: Whisper transcribes a few spans)


@pytest.mark.slow
def test_rerank_reorders_by_fused_score_and_a_repeat_transcribes_nothing(
    shifted_store: QdrantStore, mini: QueryModel, whisper: Transcriber
) -> None:
    counting = Counting(whisper)
    plain = ClaspRetriever(store=shifted_store, model=mini, k=2).invoke(SPOKEN[0])
    assert plain[0].metadata["segment_indices"] == [3]  # CLASP alone: the wrong segment first

    retriever = ClaspRetriever(store=shifted_store, model=mini, k=2, rerank=4, transcriber=counting)
    docs = retriever.invoke(SPOKEN[0])

    assert counting.calls == 4  # the rerank candidates, each once
    assert docs[0].metadata["segment_indices"] == [0]  # the words put the right segment first
    assert "photosynthesis" in docs[0].page_content.lower()
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True) and len(docs) == 2
    for doc in docs:
        meta = doc.metadata
        fused = Fusion().fuse(np.array([meta["clasp_score"]]), np.array([meta["text_score"]]))[0]
        assert meta["score"] == pytest.approx(fused, abs=1e-6)
    assert docs[0].metadata["text_score"] > docs[1].metadata["text_score"]

    again = retriever.invoke(SPOKEN[0])
    assert counting.calls == 4  # a repeated query transcribes nothing
    assert [d.metadata["score"] for d in again] == pytest.approx(scores)
    per_call = ClaspRetriever(store=shifted_store, model=mini, k=2, transcriber=counting)
    assert per_call.invoke(SPOKEN[0], rerank=4)[0].id == docs[0].id and counting.calls == 4


@pytest.mark.slow
def test_search_rerank_shows_the_fused_scores(
    tmp_path: Path, mini: QueryModel, spoken_talk: Talk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASP_QDRANT_PATH", str(tmp_path / "q"))
    monkeypatch.setenv("CLASP_MODEL", "clasp-mini")
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        fill_shifted(store, mini, spoken_talk)
    runner = CliRunner()
    query = SPOKEN[1]  # CLASP alone ranks segment 0 (leaning towards sentence 1) first

    result = runner.invoke(app, ["search", query, "--k", "1", "--rerank", "4", "--json"])

    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert "snow" in row["text"].lower() and row["start_s"] > 3.0  # segment 1, not segment 0
    assert row["text_score"] > 0.8
    fused = Fusion().fuse(np.array([row["clasp_score"]]), np.array([row["text_score"]]))[0]
    assert row["score"] == pytest.approx(fused, abs=1e-6)
