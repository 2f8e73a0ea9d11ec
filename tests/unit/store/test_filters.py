"""qdrant-client ``Filter``\\ s (and their JSON form) on both engines; what does not map is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from qdrant_client import models

from clasp_ingest.errors import ClaspIngestError, FilterError
from clasp_ingest.store import QdrantStore, SearchFilter, Where, to_where
from clasp_ingest.store.filters import Condition
from tests.unit.store.conftest import MODEL, make_media

Meta = dict[str, Any]


def _value(key: str, value: str | int) -> models.FieldCondition:
    return models.FieldCondition(key=f"metadata.{key}", match=models.MatchValue(value=value))


def _any(key: str, values: list[str] | list[int]) -> models.FieldCondition:
    return models.FieldCondition(key=f"metadata.{key}", match=models.MatchAny(any=values))


ES, FR = _value("language", "es"), _value("language", "fr")
B_OR_C = ["file:///b.wav", "file:///c.wav"]

#: (filter, the same condition written in Python over a point's metadata)
CASES: dict[str, tuple[Any, Callable[[Meta], bool]]] = {
    "match value": (models.Filter(must=[ES]), lambda m: m["language"] == "es"),
    "match any": (models.Filter(must=[_any("source", B_OR_C)]), lambda m: m["source"] in B_OR_C),
    "must_not": (models.Filter(must_not=[_value("language", "en")]), lambda m: m["language"] != "en"),
    "strict range": (
        models.Filter(must=[models.FieldCondition(key="metadata.start_s", range=models.Range(gt=4, lt=10))]),
        lambda m: 4 < m["start_s"] < 10,
    ),
    "should": (
        models.Filter(should=[ES, _value("segment_index", 0)]),
        lambda m: m["language"] == "es" or m["segment_index"] == 0,
    ),
    "nested groups": (
        models.Filter(
            must=[models.Filter(should=[ES, FR]), models.Filter(should=[_any("segment_index", [1, 2]), FR])]
        ),
        lambda m: m["language"] in ("es", "fr") and (m["segment_index"] in (1, 2) or m["language"] == "fr"),
    ),
    "nested must_not": (
        models.Filter(
            must_not=[
                models.Filter(
                    must=[ES, models.FieldCondition(key="metadata.start_s", range=models.Range(gte=6))]
                )
            ]
        ),
        lambda m: not (m["language"] == "es" and m["start_s"] >= 6),
    ),
    "json form": (
        {
            "must": [{"key": "metadata.language", "match": {"value": "fr"}}],
            "must_not": [{"key": "metadata.segment_index", "match": {"any": [0]}}],
        },
        lambda m: m["language"] == "fr" and m["segment_index"] != 0,
    ),
}


def _fill(store: QdrantStore) -> dict[str, Meta]:
    for i, (name, lang) in enumerate([("a", "en"), ("b", "es"), ("c", "fr"), ("d", "es")]):
        item = make_media(f"file:///{name}.wav", "v1", 8, seed=i, language=lang)
        store.write_media(item.ref, MODEL, item.batches())
    return {p.id: p.payload["metadata"] for p in store.iter_points()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_qdrant_filters_select_the_same_points_on_both_engines(store: QdrantStore, case: str) -> None:
    qfilter, holds = CASES[case]
    points = _fill(store)
    expected = {pid for pid, meta in points.items() if holds(meta)}
    assert 0 < len(expected) < len(points)  # the filter does select
    assert {p.id for p in store.iter_points(qfilter)} == expected
    assert store.count(qfilter) == len(expected)
    query = make_media("file:///q.wav", "v1", 1, seed=99).vectors[0]
    assert {h.point_id for h in store.search(query, k=len(points), filters=qfilter)} == expected
    groups = store.search_groups(query, k=4, group_size=2, filters=qfilter)
    assert groups and {h.point_id for h in groups} <= expected


def test_where_keeps_two_should_groups_apart() -> None:
    either = Where(should=(Condition("metadata.a", value=1), Condition("metadata.a", value=2)))
    other = Where(should=(Condition("metadata.b", value=1), Condition("metadata.b", value=2)))
    assert either & other == Where(must=(either, other))
    plain = Where((Condition("metadata.c", value=3),))
    assert (either & plain).should == either.should and (either & plain).must == plain.must
    assert to_where({"language": "fr"}) == SearchFilter(language="fr").where()


def test_languages_are_matched_in_the_form_they_are_stored() -> None:
    """Tracks' tags (``fre``) and feeds' languages (``en-US``) are stored as ISO 639-1: a filter
    spelled either way means the same (it matched nothing, silently)."""
    for spelled in ("fr", "FR", "fre", "fra", "fr-FR", "fr_CA", " fr "):
        assert SearchFilter(language=spelled).language == "fr", spelled
    assert SearchFilter(language=["eng", "de-AT", "yue"]).language == ("en", "de", "yue")
    assert to_where({"language": "en-US"}) == SearchFilter(language="en").where()
    assert SearchFilter(language="iw").language == "he"  # a withdrawn code, as old tags carry it
    for bad in ("english", "", "e", "zz", "xx-notalang"):  # two letters but no language ("und": below)
        with pytest.raises(FilterError, match=f"language must be a language code .*got {bad!r}"):
            SearchFilter(language=bad)
    assert to_where(None).empty


def _field(**kwargs: Any) -> models.FieldCondition:
    return models.FieldCondition(key="metadata.x", **kwargs)


UNSUPPORTED: list[tuple[Any, str]] = [
    (
        models.Filter(must=[ES], min_should=models.MinShould(conditions=[FR], min_count=1)),
        "filter.min_should",
    ),
    (models.Filter(must=[_field(match=models.MatchExcept(**{"except": ["a"]}))]), "MatchExcept"),
    (models.Filter(must=[_field(match=models.MatchText(text="hello"))]), "MatchText"),
    (models.Filter(should=[_field(match=models.MatchValue(value=True))]), "filter.should[0].match"),
    (models.Filter(must=[_field(match=models.MatchAny(any=[]))]), "filter.must[0].match"),
    (models.Filter(must=[_field(range=models.DatetimeRange(gte="2026-01-01T00:00:00Z"))]), "DatetimeRange"),
    (models.Filter(must=[_field(range=models.Range())]), "without bounds"),
    (models.Filter(must=[_field(is_empty=True)]), "is_empty"),
    (models.Filter(must=[_field(values_count=models.ValuesCount(gte=1))]), "values_count"),
    (
        models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="metadata.x"))]),
        "IsEmpty",
    ),
    (models.Filter(must_not=[models.HasIdCondition(has_id=[1])]), "filter.must_not[0] (HasIdCondition)"),
    (
        models.Filter(must=[models.Filter(should=[ES, models.HasIdCondition(has_id=[1])])]),
        "must[0].should[1]",
    ),
    (
        models.Filter(must=[models.FieldCondition(key="language", match=models.MatchValue(value="fr"))]),
        "'metadata.language'",
    ),
    ({"must": [{"key": "metadata.x", "match": {"value": [1, 2]}}]}, "must.0.match.value = [1, 2]"),
    ({"speaker": "x"}, "unknown filter keys ['speaker']"),
    ("language = fr", "got str"),
]


@pytest.mark.parametrize(("qfilter", "named"), UNSUPPORTED)
def test_what_does_not_map_is_refused_by_name(qfilter: Any, named: str) -> None:
    with pytest.raises(FilterError) as caught:
        to_where(qfilter)
    assert named in str(caught.value)
    assert isinstance(caught.value, ClaspIngestError) and isinstance(caught.value, ValueError)


def test_the_store_refuses_a_bad_filter_before_searching(store: QdrantStore) -> None:
    bad = models.Filter(must=[_field(match=models.MatchText(text="x"))])
    with pytest.raises(FilterError, match="MatchText"):
        store.search(make_media("file:///q.wav", "v1", 1, seed=1).vectors[0], filters=bad)
    with pytest.raises(FilterError, match="MatchText"):
        store.count(bad)


def test_a_search_filter_takes_several_ids_in_any_collection(store: QdrantStore) -> None:
    as_list = SearchFilter(source=["file:///b.wav", "file:///c.wav"])  # the engines want a tuple
    assert as_list == SearchFilter(source=("file:///b.wav", "file:///c.wav"))
    assert store.count(as_list) == store.count(SearchFilter(source=tuple(B_OR_C)))
    assert SearchFilter(media_id={"m1"}).media_id == ("m1",)
    with pytest.raises(FilterError, match="media_id must be a string or strings, got 3"):
        SearchFilter(media_id=3)  # type: ignore[arg-type]


def test_several_languages_match_any_and_bad_values_are_refused_by_name(store: QdrantStore) -> None:
    _fill(store)
    assert store.count(SearchFilter(language=["en", "fr"])) == 16  # a (en) and c (fr), 8 spans each
    assert store.count({"language": ["es"]}) == 16
    for bad, named in (
        ({"start_s_gte": "10"}, "start_s_gte must be a number of seconds, got '10'"),
        ({"end_s_lte": float("nan")}, "end_s_lte must be a number of seconds"),
        ({"start_s_gte": True}, "start_s_gte must be a number of seconds"),
        ({"language": 7}, "language must be a string or strings, got 7"),
    ):
        with pytest.raises(FilterError, match=named):
            to_where(bad)
    with pytest.raises(FilterError, match="time range is empty"):
        SearchFilter(start_s_gte=5, end_s_lte=1)


def test_an_http_source_is_matched_in_the_percent_encoded_form_it_is_stored_in() -> None:
    """Remote items are stored percent-encoded (``sp%20ace``); a filter, ``--media-id`` or
    ``store delete`` spelling the URL as typed ('café talk') matched nothing."""
    from clasp_ingest.store.filters import stored_form
    from clasp_ingest.types import media_id_for

    typed, stored = "http://h/media/café talk.opus", "http://h/media/caf%C3%A9%20talk.opus"
    assert SearchFilter(source=typed).source == stored
    assert SearchFilter(media_id=typed).media_id == media_id_for(stored)
    assert stored_form("source", stored) == stored  # the stored form stays as it is


def test_a_language_matches_the_withdrawn_codes_older_stores_hold() -> None:
    """Feeds tagged 'iw' (Hebrew) were stored as 'iw' before the filter read it as 'he': a filter
    of either found nothing there. 'sh' and Whisper's 'jw' were stored, and refused as filters."""
    assert SearchFilter(language="he").where() == SearchFilter(language="iw").where()
    [he] = SearchFilter(language="he").where().must
    assert he.any_of == ("he", "iw")  # type: ignore[union-attr]
    [mixed] = SearchFilter(language=["jw", "en"]).where().must
    assert mixed.any_of == ("jv", "jw", "en")  # type: ignore[union-attr]
    assert SearchFilter(language="sh").language == "sh" and SearchFilter(language="mo").language == "ro"


def test_a_code_for_no_language_is_refused_saying_why() -> None:
    """'und', 'mul', 'zxx' are valid ISO 639-2 codes: "must be a language code" misled."""
    for code in ("und", "mul", "zxx", "UND"):
        with pytest.raises(FilterError, match=r"names no language .* leave language out"):
            SearchFilter(language=code)
