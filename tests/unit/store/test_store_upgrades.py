"""Stores written by older releases, read by this one (the upgrade path)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.store import open_store
from tests.unit.store.conftest import DIM, MODEL, make_media

OLD = "http://h/media/sp ace.opus"  # stored raw before 2026-12-06
NEW = "http://h/media/sp%20ace.opus"  # the same file, stored as sent since


def _store_of(tmp_path: Path, *sources: str) -> Path:
    path = tmp_path / "q"
    with open_store(path=path) as store:
        store.ensure_collection(MODEL, DIM)
        for seed, source in enumerate(sources):
            item = make_media(source, "v1", 3, seed=seed)
            store.write_media(item.ref, MODEL, item.batches())
    return path


def _delete(path: Path, target: str) -> dict[str, object]:
    run = CliRunner().invoke(app, ["store", "delete", target, "--yes", "--qdrant-path", str(path)])
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def test_deleting_an_old_items_source_leaves_its_current_copy(tmp_path: Path) -> None:
    """README's remedy for an item an older release stored under a raw URL, ``store delete
    OLD_URI``, deleted the copy stored since under the encoded URL too: both were gone."""
    path = _store_of(tmp_path, OLD, NEW)
    deleted = _delete(path, OLD)
    assert [d["source"] for d in deleted["deleted"]] == [OLD]  # type: ignore[index]
    with open_store(path=path) as store:
        assert [item.source for item in store.media()] == [NEW]


def test_another_spelling_still_names_the_item_when_nothing_is_stored_as_typed(tmp_path: Path) -> None:
    path = _store_of(tmp_path, NEW)
    assert [d["source"] for d in _delete(path, OLD)["deleted"]] == [NEW]  # type: ignore[index]


def test_an_item_of_an_older_release_reads_complete_while_it_is_rewritten(tmp_path: Path) -> None:
    """Points an older release wrote have no write id; while a current ``ingest --force``
    rewrote the item (or after it was killed), ``store list`` counted the rewrite's points as
    the old row's and showed the intact old copy as ``writing``."""
    from clasp_ingest.store.base import STATE_COMPLETE
    from clasp_ingest.store.cli_store import _list_summary
    from clasp_ingest.store.filters import meta_equals

    a = make_media("file:///a.wav", "v1", 6, seed=1)
    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
        store.upsert_points(store._points_for(a.ref, MODEL, a.segments, a.vectors, "then"))  # no write id
        store._set_state(meta_equals("media_id", a.ref.media_id), STATE_COMPLETE)
        rows, summary = [], []

        def rewriting():  # type: ignore[no-untyped-def]
            first, *rest = a.batches(size=2)
            yield first
            rows.extend(sorted((m.state, m.spans) for m in store.media()))
            summary.append(_list_summary(store.media(), store.collection))
            yield from rest

        store.write_media(a.ref, MODEL, rewriting())
        assert rows == [("complete", 6), ("writing", 0)]
        assert summary == ["1 media item (2 writes), 6 searchable spans in 'clasp_segments'"]  # not versions
        assert [(m.state, m.spans) for m in store.media()] == [("complete", 6)]


def test_a_collection_of_a_retired_model_is_not_sent_back_and_forth(tmp_path: Path) -> None:
    """A v0.12 collection: ``search`` said to pass --model or re-ingest, and ``search --model
    clasp-mini`` said to drop --model, which led back to the first error."""
    import pytest
    from clasp_ingest.retriever.loading import query_model_for

    from clasp_ingest.errors import CollectionMismatchError, ModelLoadError

    with open_store(path=tmp_path / "q") as store:
        store.ensure_collection("clasp-mini-v0.12", 385)
        with pytest.raises(ModelLoadError, match=r"--collection NAME\) or over this one \(--recreate"):
            query_model_for(store)
        with pytest.raises(CollectionMismatchError) as caught:
            query_model_for(store, "clasp-mini")
    said = str(caught.value)
    assert "drop --model" not in said and "--recreate" in said and "'clasp-mini-v0.12'" in said, said
