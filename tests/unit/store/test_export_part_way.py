"""An export that stops part-way (a full disk, Ctrl-C) leaves no item in the target that looks
whole and is not, and says so; running it again completes the copy (tester 1 of session 29, bug 3)."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import QdrantStore, export_collection, export_to, open_store
from tests.unit.store.conftest import DIM, MODEL, Media, make_media


def _source(path: Path, items: list[Media]) -> QdrantStore:
    edge = open_store(path=path)
    edge.ensure_collection(MODEL, DIM)
    for item in items:
        edge.write_media(item.ref, MODEL, item.batches())
    return edge


def _whole_or_hidden(target: QdrantStore, items: list[Media]) -> list[str]:
    """The items searches return in ``target`` (asserting each is whole there: every span, complete)."""
    shown = []
    for m in target.media():
        item = next(i for i in items if i.ref.uri == m.source)
        if m.state == "complete":
            assert m.spans == len(item.segments) and target.has_media(item.ref.media_id, "v1"), m
        else:
            assert m.state == "writing" and m.spans == 0, m
        hits = target.search(item.vectors[0], k=100)
        assert {h.media_id for h in hits if h.media_id == item.ref.media_id} == (
            {item.ref.media_id} if m.state == "complete" else set()
        )
        shown += [m.source] if m.state == "complete" else []
    return sorted(shown)


def _cap_sqlite(target: QdrantStore, extra_pages: int) -> None:
    """Let the target's qdrant-client folder grow by ``extra_pages`` pages only: its SQLite then
    fails as on a full disk (SQLITE_FULL, "database or disk is full")."""
    local = target.client._client  # type: ignore[attr-defined]
    db = local.collections[target.collection].storage.storage
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_an_export_onto_a_full_disk_names_the_target_and_leaves_no_half_item(tmp_path: Path) -> None:
    items = [make_media(f"file:///f{i}.wav", "v1", 30, seed=i) for i in range(6)]
    folder = tmp_path / "copy"
    with _source(tmp_path / "edge", items) as edge:
        with open_store(path=folder, backend="client") as target:
            target.ensure_collection(MODEL, DIM)
            _cap_sqlite(target, extra_pages=12)  # room for some of the 180 points, not all
            message = (
                f"the export to '{folder}' stopped part-way: the disk there is full (database or disk is "
                "full); free space on it (or export elsewhere, --to) and run the export again"
            )
            with pytest.raises(StoreError, match=re.escape(message)) as error:
                export_collection(edge, target, batch_size=16)
            assert isinstance(error.value.__cause__, sqlite3.OperationalError)
            assert 0 < target.count() < 180
            assert _whole_or_hidden(target, items) == []  # points of many items copied, none shown
        report = export_to(edge, str(folder))  # with room again
        assert (report.exported, report.target_points) == (180, 180)
    with open_store(path=folder) as copy:
        assert _whole_or_hidden(copy, items) == sorted(i.ref.uri for i in items)


def test_an_export_interrupted_part_way_keeps_what_the_target_held_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = [make_media(f"file:///o{i}.wav", "v1", 10, seed=i) for i in range(3)]
    new = [make_media(f"file:///n{i}.wav", "v1", 10, seed=10 + i) for i in range(3)]

    def interrupt(read: int, total: int) -> None:
        if read >= 32:  # Ctrl-C after two batches, amid the items' points
            raise KeyboardInterrupt

    folder = str(tmp_path / "copy")
    with _source(tmp_path / "edge", old) as edge:
        export_to(edge, folder)
        for item in new:
            edge.write_media(item.ref, MODEL, item.batches())
        with caplog.at_level(logging.WARNING, logger="clasp_ingest"), pytest.raises(KeyboardInterrupt):
            export_to(edge, folder, batch_size=16, on_progress=interrupt)
        with open_store(path=Path(folder)) as copy:
            assert copy.count() > 30  # points of new items are there,
            assert _whole_or_hidden(copy, old + new) == sorted(i.ref.uri for i in old)  # but not shown
        assert f"the export to {folder} stopped part-way" in caplog.text
        assert "marked 'writing' there, and no search returns them; running the export again" in caplog.text
        assert export_to(edge, folder).target_points == 60
    with open_store(path=Path(folder)) as copy:
        assert _whole_or_hidden(copy, old + new) == sorted(i.ref.uri for i in old + new)
