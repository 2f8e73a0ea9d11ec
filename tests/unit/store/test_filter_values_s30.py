"""Filter values the engines cannot take are a ``FilterError`` naming the field, on both engines
(tester 2 of session 30): a NaN range bound made Qdrant Edge panic and call an intact collection
damaged (remedy ``--recreate``, which deletes it); a long value, surrogate escapes and a huge
number raised bare ``OSError``, ``TypeError`` and ``OverflowError``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models

from clasp_ingest.errors import FilterError, StoreError
from clasp_ingest.store import EdgeStore, QdrantStore, SearchFilter
from clasp_ingest.store.edge import _edge
from tests.unit.store.conftest import DIM, MODEL, make_media

QUERY = np.ones(DIM, np.float32)


@pytest.fixture
def filled(store: QdrantStore) -> QdrantStore:
    item = make_media("file:///talks/a.wav", "v1", 5, seed=1)
    store.write_media(item.ref, MODEL, item.batches())
    return store


def _range(**bounds: Any) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="metadata.start_s", range=models.Range(**bounds))])


@pytest.mark.parametrize(
    "flt",
    [
        _range(gte=float("nan")),
        _range(lt=float("inf")),
        {"must": [{"key": "metadata.start_s", "range": {"gte": float("nan")}}]},  # its JSON form
    ],
    ids=["nan", "inf", "json-nan"],
)
def test_a_range_bound_that_is_no_finite_number_is_a_filter_error(filled: QdrantStore, flt: Any) -> None:
    with pytest.raises(
        FilterError, match=r"filter range on 'metadata\.start_s': (gte = nan|lt = inf) is not a"
    ):
        filled.search(QUERY, k=3, filters=flt)
    assert len(filled.search(QUERY, k=3)) == 3  # nothing else changed


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (models.MatchValue(value="caf\udce9"), "filter value for 'metadata.source'"),
        (models.MatchAny(any=["caf\udce9"]), "filter value for 'metadata.source'"),
    ],
)
def test_a_match_value_utf8_cannot_encode_is_a_filter_error(
    filled: QdrantStore, value: Any, named: str
) -> None:
    flt = models.Filter(must=[models.FieldCondition(key="metadata.source", match=value)])
    with pytest.raises(FilterError, match=f"{named} 'caf\\\\udce9' is not text"):
        filled.count(flt)


def test_an_integer_past_64_bits_is_a_filter_error(filled: QdrantStore) -> None:
    flt = models.Filter(
        must=[models.FieldCondition(key="metadata.segment_index", match=models.MatchValue(value=2**70))]
    )
    with pytest.raises(FilterError, match=r"'metadata\.segment_index' is out of range"):
        filled.count(flt)


@pytest.mark.parametrize(
    ("fields", "found"),
    [
        ({"media_id": "a" * 300}, 0),
        ({"media_id": "é" * 200}, 0),
        ({"source": "x" * 5000}, 0),
        ({"source": ("talks/" + "y" * 300, "file:///talks/a.wav")}, 5),
    ],
    ids=["media_id", "multibyte", "source", "several"],
)
def test_a_value_too_long_for_a_file_name_matches_as_text(
    filled: QdrantStore, fields: dict[str, Any], found: int
) -> None:
    """Not a local file: it matches what is stored under it, as README says (a dict too)."""
    assert filled.count(SearchFilter(**fields)) == found
    assert filled.count(dict(fields)) == found


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"source": "http://ex.org/caf\udce9.mp3"}, "SearchFilter source"),
        ({"media_id": "m\udce9"}, "SearchFilter media_id"),
        ({"media_id": "https://ex.org/\udcc3\udca9.mp3"}, "SearchFilter media_id"),
        ({"source": ["file:///talks/a.wav", "s3://b/\udce9"]}, "SearchFilter source"),
    ],
)
def test_text_utf8_cannot_encode_is_a_filter_error_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(FilterError, match=f"{named} '.*' is not text: it holds bytes that are not UTF-8"):
        SearchFilter(**fields)


def test_a_local_path_keeps_its_bytes(tmp_path: Path) -> None:
    """A file name that is no UTF-8 is a file all the same: its URI holds its bytes."""
    assert SearchFilter(source="/talks/caf\udce9.wav").source == "file:///talks/caf%E9.wav"


@pytest.mark.parametrize("huge", [10**400, -(10**400)], ids=["big", "negative"])
def test_a_time_bound_past_floats_is_a_filter_error(huge: int) -> None:
    with pytest.raises(FilterError, match="SearchFilter start_s_gte must be a number of seconds"):
        SearchFilter(start_s_gte=huge)


def test_an_engine_panic_on_a_search_of_an_intact_store_is_not_called_damage(tmp_path: Path) -> None:
    """The engine's own answer to a NaN bound (sent past the filters, as no caller can now): a
    Rust panic, which said "damaged; ingest again with --recreate" of an intact collection."""
    item = make_media("file:///talks/a.wav", "v1", 5, seed=1)
    with EdgeStore(tmp_path) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(item.ref, MODEL, item.batches())
        qe = _edge()
        nan = qe.Filter(must=[qe.FieldCondition("metadata.start_s", range=qe.RangeFloat(gte=float("nan")))])
        request = qe.QueryRequest(limit=3, query=qe.Query.Nearest(QUERY.tolist(), using="clasp"), filter=nan)
        with pytest.raises(StoreError) as raised:
            store._require_shard().query(request)
        said = str(raised.value)
        assert "is damaged" not in said and "--recreate" not in said, said
        assert said.startswith("Qdrant Edge failed on a query of the embedded collection 'clasp_segments'")
        assert 'key="metadata.start_s", range=RangeFloat(gte=NaN)' in said and "reads fine" in said
        assert len(store.search(QUERY, k=3)) == 3 and store.count() == 5
