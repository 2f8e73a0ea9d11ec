"""``merge`` and ``context`` as a user relies on them: a larger ``k`` never swallows the first
spans, a widened span stays inside the search's filter; and the ``search`` options that do not
go together are bad usage (exit 2), on both engines with the real tiny-random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever
from langchain_core.documents import Document
from qdrant_client import models
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import QdrantStore, SearchFilter, open_store
from clasp_ingest.types import Segment
from tests.unit.retriever.conftest import LECTURE, SENTENCES, fill, media_ref, unit

#: The rank of each segment of the talk for its topic: segment 2 scores best, then 0, 7...
RANKS = (2, 0, 7, 5, 9, 1, 4, 10, 6, 3, 8)
TOPIC = "the same topic all along"


def _talk(store: QdrantStore, model: AudioTextEncoder) -> dict[str, str]:
    """Continuous speech: segments 0-9 0.2 s apart (each within the default merge gap of its
    neighbours), then segment 10 after a 5 s pause; segment ``RANKS[r]`` scores ``0.9 - 0.05 r``."""
    ref = media_ref("file:///media/continuous-talk.wav")
    times = [(2.2 * i, 2.2 * i + 2.0) for i in range(10)] + [(26.8, 28.8)]
    segments = [Segment(ref.media_id, i, start, end) for i, (start, end) in enumerate(times)]
    base = unit(model.encode_text([TOPIC])[0])
    aside = np.random.default_rng(0).standard_normal(base.shape)
    aside = unit(aside - (aside @ base) * base)  # orthogonal to the topic
    scores = {index: 0.9 - 0.05 * rank for rank, index in enumerate(RANKS)}
    vectors = np.stack([scores[i] * base + np.sqrt(1 - scores[i] ** 2) * aside for i in range(len(RANKS))])
    store.write_media(ref, model.model_id, [(segments, vectors.astype(np.float32))])
    return {"media_id": ref.media_id}


def _layout(docs: list[Document]) -> list[list[int]]:
    return [d.metadata["segment_indices"] for d in docs]


def test_merged_hits_never_chain_the_best_spans_into_one(store: QdrantStore, model: AudioTextEncoder) -> None:
    only = _talk(store, model)
    retriever = ClaspRetriever(store=store, model=model, filter=only, merge=True)
    five = retriever.invoke(TOPIC, k=5)
    assert _layout(five) == [[2], [0], [7], [5], [9]]
    # k=6: hits 1 and 4 rank above the sixth span's (segment 10) and join the best span they
    # are near (1 lies between 0 and 2: it joins 2's span and does not bridge the two)
    six = retriever.invoke(TOPIC, k=6)
    assert _layout(six) == [[1, 2], [0], [7], [4, 5], [9], [10]]
    assert [d.metadata["score"] for d in six] == pytest.approx([0.9, 0.85, 0.8, 0.75, 0.7, 0.55], abs=1e-4)
    assert (six[0].metadata["start_s"], six[0].metadata["end_s"]) == pytest.approx((2.2, 6.4))
    assert len(six[0].metadata["point_ids"]) == 2 and six[0].id == five[0].id  # the best hit's point
    # k=7: no seventh span can be made; the spans take in hit 6 (within the best 7) and stop
    # there: hits 3 and 8 would only widen them (they chained the whole talk into one span)
    seven = retriever.invoke(TOPIC, k=7)
    assert _layout(seven) == [[1, 2], [0], [7], [4, 5], [9], [10]]
    assert _layout(retriever.invoke(TOPIC, k=9)) == [[1, 2], [0], [6, 7], [4, 5], [9], [10]]


@pytest.mark.parametrize("context", [0, 1])
def test_a_larger_k_keeps_the_first_merged_spans_apart_and_in_order(
    store: QdrantStore, model: AudioTextEncoder, context: int
) -> None:
    only = _talk(store, model)
    retriever = ClaspRetriever(store=store, model=model, filter=only, merge=True, context=context)
    before: list[list[int]] = []
    for k in range(1, len(RANKS) + 2):
        docs = retriever.invoke(TOPIC, k=k)
        layout = _layout(docs)
        segments = [i for span in layout for i in span]
        assert len(segments) == len(set(segments)), (k, layout)  # no audio twice
        assert len(layout) in (len(before), len(before) + 1) and len(layout) <= k, (k, layout)
        kept = all(set(old) <= set(new) for old, new in zip(before, layout, strict=False))
        assert kept, (k, before, layout)
        scores = [d.metadata["score"] for d in docs]
        assert scores == sorted(scores, reverse=True)
        assert len(layout[0]) < len(RANKS), (k, layout)  # never the whole talk as one span
        if context == 0:  # the best k hits, and more only down to the best hit of the last span
            last = max(min(RANKS.index(i) for i in span) for span in layout)
            assert all(RANKS.index(i) < max(k, last + 1) for i in segments), (k, layout)
        before = layout


def test_a_wide_merge_gap_plays_the_segments_between_as_members(
    store: QdrantStore, model: AudioTextEncoder
) -> None:
    """Hits 2 and 0 lie 2.4 s apart, within a merge gap of 3 s: their span plays segment 1 too,
    so segment 1 is a member (its id, its words), not audio the span does not account for."""
    only = _talk(store, model)
    retriever = ClaspRetriever(store=store, model=model, filter=only, merge=True, merge_gap_s=3.0)
    first, second = retriever.invoke(TOPIC, k=2)
    meta = first.metadata
    assert (meta["segment_indices"], meta["start_s"], meta["end_s"]) == ([0, 1, 2], 0.0, 6.4)
    assert len(meta["point_ids"]) == 3 and first.id == retriever.invoke(TOPIC, k=1)[0].id
    assert meta["score"] == pytest.approx(0.9, abs=1e-4)
    assert second.metadata["segment_indices"] == [7]
    spans = [d.metadata["segment_indices"] for d in retriever.invoke(TOPIC, k=3)]
    assert spans == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10]]
    # a segment between that the filter leaves out is not played: the hits stay apart
    media = models.FieldCondition(key="metadata.media_id", match=models.MatchValue(value=only["media_id"]))
    not_one = models.Filter(
        must=[media],
        must_not=[models.FieldCondition(key="metadata.segment_index", match=models.MatchValue(value=1))],
    )
    apart = retriever.invoke(TOPIC, k=2, filter=not_one)
    assert _layout(apart) == [[2], [0]]


def test_context_stays_inside_the_search_filter(store: QdrantStore, model: AudioTextEncoder) -> None:
    """The lecture's segments lie at 3i..3i+2.5 s; segment 3 (9-11.5 s) is the best hit."""
    retriever = ClaspRetriever(store=store, model=model, k=1, context=1)
    assert _layout(retriever.invoke(SENTENCES[3])) == [[2, 3, 4]]
    late = retriever.invoke(SENTENCES[3], filter=SearchFilter(start_s_gte=9.0))[0].metadata
    assert (late["segment_indices"], late["start_s"], late["end_s"]) == ([3, 4], 9.0, 14.5)
    early = retriever.invoke(SENTENCES[3], filter={"end_s_lte": 11.5})[0].metadata
    assert (early["segment_indices"], early["start_s"], early["end_s"]) == ([2, 3], 6.0, 11.5)
    # any filter, not only time: a left-out segment also ends the widening (no audio over it)
    not_two = models.Filter(
        must_not=[models.FieldCondition(key="metadata.segment_index", match=models.MatchValue(value=2))]
    )
    wide = retriever.invoke(SENTENCES[3], filter=not_two, context=2)[0].metadata
    assert (wide["segment_indices"], wide["start_s"]) == ([3, 4, 5], 9.0)
    window = {"start_s_gte": 3.0, "end_s_lte": 14.5, "media_id": media_ref(LECTURE).media_id}
    for docs in (retriever.invoke(SENTENCES[0], k=6, filter=window, merge=merge) for merge in (False, True)):
        assert docs and all(d.metadata["start_s"] >= 3.0 and d.metadata["end_s"] <= 14.5 for d in docs)


def _said(result: Result) -> str:
    """A usage error's text without typer's box and line breaks."""
    return " ".join(result.output.replace("│", " ").split())


def test_search_options_that_do_not_go_together_are_bad_usage(
    tmp_path: Path, model: AudioTextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASP_DEVICE", "cpu")
    with open_store(path=tmp_path / "q") as store:
        fill(store, model)  # a collection without word vectors
    store_args = ["--qdrant-path", str(tmp_path / "q")]
    refused = {
        ("--hybrid", "--group", "1"): "'--hybrid': not with --rerank or --group",
        ("--hybrid", "--rerank", "5"): "'--hybrid': not with --rerank or --group",
        ("--k", "5", "--rerank", "3"): "'--rerank': 3 is smaller than --k 5",
    }
    for args, said in refused.items():
        result = CliRunner().invoke(app, ["search", SENTENCES[0], *args, *store_args])
        assert result.exit_code == 2 and said in _said(result), (args, result.output)
    # a store without word vectors is no usage error: the command cannot do its work (exit 1)
    words = CliRunner().invoke(app, ["search", SENTENCES[0], "--hybrid", *store_args])
    assert words.exit_code == 1 and words.stderr.startswith("error: collection 'clasp_segments' has no word")
