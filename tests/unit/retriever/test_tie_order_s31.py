"""Equal scores (the same audio under two names) in the retriever's grouped search and rerank:
ordered by point id as ungrouped search orders them, the same first answers at every ``k`` (and
``rerank``), on both engines."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClaspRetriever
from clasp_ingest.retriever.rerank import TextScorer, rerank_spans
from clasp_ingest.retriever.spans import Span

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.store import QdrantStore, open_store
from clasp_ingest.store.base import STATE_COMPLETE, StoredPoint, build_payload
from clasp_ingest.types import Segment
from tests.unit.retriever.conftest import SENTENCES, media_ref, spans_of

COPIES = 6  # one talk under six names
SPANS = 4


def _points(model: AudioTextEncoder) -> list[StoredPoint]:
    """The copies' spans, with point ids that rank the copies in another order for each span;
    another item; in no id order."""
    rng = np.random.default_rng(6)
    vectors = model.encode_text(SENTENCES[: SPANS + 4])
    points = []

    def point(number: int, uri: str, segment: Segment, vector: np.ndarray) -> StoredPoint:
        payload = build_payload(media_ref(uri), model.model_id, segment, "2026-12-06T00:00:00+00:00")
        payload["metadata"]["state"] = STATE_COMPLETE
        return StoredPoint(str(uuid.UUID(int=number)), payload, [float(x) for x in vector])

    ranks = [COPIES - np.arange(COPIES), *(rng.permutation(COPIES) for _ in range(1, SPANS))]
    for copy in range(COPIES):
        uri = f"file:///feed{copy}/talk.wav"
        for segment, vector in zip(spans_of(media_ref(uri), SPANS), vectors, strict=False):
            points.append(
                point(100 * (segment.index + 1) + int(ranks[segment.index][copy]), uri, segment, vector)
            )
    other = "file:///other.wav"
    points += [
        point(900 + s.index, other, s, v)
        for s, v in zip(spans_of(media_ref(other), 4), vectors[SPANS:], strict=True)
    ]
    return [points[i] for i in rng.permutation(len(points))]


@pytest.fixture(params=["edge", "client"])
def copies(request: pytest.FixtureRequest, tmp_path: Path, model: AudioTextEncoder) -> Iterator[QdrantStore]:
    target = open_store(path=tmp_path / "q") if request.param == "edge" else open_store(url=":memory:")
    with target:
        target.ensure_collection(model.model_id, model.dim)
        target.upsert_points(_points(model))
        yield target


def _ids(retriever: ClaspRetriever, query: str, **options: object) -> list[str]:
    return [str(doc.id) for doc in retriever.invoke(query, **options)]


@pytest.mark.parametrize("group", [1, 2])
def test_grouped_answers_at_k_are_the_first_at_a_larger_k(
    copies: QdrantStore, model: AudioTextEncoder, group: int
) -> None:
    retriever = ClaspRetriever(store=copies, model=model)
    most = (COPIES + 1) * group
    for query in SENTENCES[:3]:
        full = _ids(retriever, query, k=most, group_by_media=group)
        assert len(full) == most
        for k in range(1, most):
            assert _ids(retriever, query, k=k, group_by_media=group) == full[:k], (query, k)


def test_grouped_answers_are_the_ungrouped_ones_where_no_cap_binds(
    copies: QdrantStore, model: AudioTextEncoder
) -> None:
    # each item's best two spans are the best 2 * (COPIES + 1): a cap of 2 per item leaves them all
    retriever = ClaspRetriever(store=copies, model=model)
    for query in SENTENCES[:3]:
        free = retriever.invoke(query, k=2 * COPIES)
        assert (
            max(
                sum(d.metadata["media_id"] == m for d in free) for m in {d.metadata["media_id"] for d in free}
            )
            <= 2
        )
        assert _ids(retriever, query, k=2 * COPIES, group_by_media=2) == [str(d.id) for d in free]
        one = [str(d.id) for d in free if d.metadata["score"] == free[0].metadata["score"]]
        assert _ids(retriever, query, k=COPIES, group_by_media=1) == one


def test_grouped_answers_agree_on_both_engines(tmp_path: Path, model: AudioTextEncoder) -> None:
    points = _points(model)
    with open_store(path=tmp_path / "edge") as edge, open_store(url=":memory:") as client:
        answers = []
        for store in (edge, client):
            store.ensure_collection(model.model_id, model.dim)
            store.upsert_points(points)
            retriever = ClaspRetriever(store=store, model=model)
            answers.append(
                [
                    _ids(retriever, q, k=k, group_by_media=g)
                    for q in SENTENCES[:3]
                    for k in (1, 3, 7)
                    for g in (1, 2)
                ]
            )
    assert answers[0] == answers[1]


# ----- rerank


def _span(i: int, score: float, words: str | None) -> Span:
    pid = str(uuid.UUID(int=i + 1))
    return Span(
        f"m{i}",
        f"file:///m{i}.wav",
        f"m{i}",
        0.0,
        2.5,
        score,
        (0,),
        point_id=pid,
        point_ids=(pid,),
        texts=(words,),
    )


def test_copies_with_the_same_words_keep_the_first_stage_order_at_every_rerank(
    model: AudioTextEncoder,
) -> None:
    # four copies of each of five spans (same words, same CLASP score), in the first stage's order
    first = [_span(5 * c + s, 0.5 - 0.01 * s, SENTENCES[s]) for s in range(5) for c in range(4)]
    scorer = TextScorer(model)
    for n in range(2, len(first) + 1):
        ranked = rerank_spans(first[:n], "fresh bread in the morning", scorer)
        for s in range(5):
            same = [span for span in ranked if span.texts == (SENTENCES[s],)]
            assert [span.point_id for span in same] == [
                span.point_id for span in first[:n] if span.texts == (SENTENCES[s],)
            ]
            assert (
                len({span.score for span in same}) <= 1
                and len({span.extra["text_score"] for span in same}) <= 1
            )


def test_equal_texts_score_equal_to_the_bit(model: AudioTextEncoder) -> None:
    texts = [SENTENCES[i % 3] for i in range(17)]
    scores = TextScorer(model).scores("fresh bread in the morning", texts)
    for i in range(3):
        assert len(set(scores[i::3].tolist())) == 1


def test_fused_scores_within_the_tolerance_keep_the_first_stage_order(model: AudioTextEncoder) -> None:
    # spans without words keep their CLASP score as their fused score
    first = [_span(0, 0.5, None), _span(1, 0.5000005, None), _span(2, 0.4999996, None), _span(3, 0.49, None)]
    ranked = rerank_spans(first, "query", TextScorer(model))
    assert [s.point_id for s in ranked] == [s.point_id for s in first]
    assert [s.score for s in ranked] == [0.5000005] * 3 + [0.49]
    assert [s.extra["clasp_score"] for s in ranked] == [0.5, 0.5000005, 0.4999996, 0.49]
