"""``ingest --prune`` over many folder sources reads the stored items once, not once per source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clasp_ingest.connectors import LocalConnector

from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.pipeline import PipelineOptions, StoredItems, ingest_source, prune_unlisted
from clasp_ingest.store import QdrantStore, StoredMedia, open_store
from clasp_ingest.types import MediaRef, media_id_for

PRUNE = PipelineOptions(embed_batch_size=2, retry_delay_s=0.01, prune=True)


class CountedStore:
    """Counts the calls of a real store's ``media()`` (each reads every stored item), which
    still runs."""

    def __init__(self, store: QdrantStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = store.media

        def media() -> list[StoredMedia]:
            self.calls += 1
            return real()

        monkeypatch.setattr(store, "media", media)


@pytest.fixture
def store(tmp_path: Path, tiny_model: AudioTextEncoder) -> Iterator[QdrantStore]:
    with open_store(path=tmp_path / "q") as opened:
        opened.ensure_collection(tiny_model.model_id, tiny_model.dim)
        yield opened


def _stored_folders(root: Path, store: QdrantStore, model_id: str, folders: int, files: int) -> list[Path]:
    """``folders`` subfolders of ``root`` of ``files`` files each, every one stored complete as
    an earlier run left it (its "empty" marker at the listed version: skipped, never decoded)."""
    made = []
    for k in range(folders):
        folder = root / f"d{k:02d}"
        folder.mkdir(parents=True)
        for j in range(files):
            (folder / f"c{j}.wav").write_bytes(b"RIFF")
        for ref in LocalConnector(folder).discover():
            store.write_media(ref, model_id, [])
        made.append(folder)
    return made


def test_a_run_with_many_folder_sources_reads_the_stored_items_once(
    tmp_path: Path, tiny_model: AudioTextEncoder, store: QdrantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each source's prune ran ``store.media()`` (every stored item read, two counts each):
    40 folders of a 2,000-item store took 6.7 s against 0.7 s for their parent folder."""
    folders = _stored_folders(tmp_path / "pk", store, tiny_model.model_id, folders=6, files=3)
    gone = folders[0] / "c0.wav"
    gone.unlink()
    moved = folders[4] / "c1.wav"
    moved.rename(tmp_path / "away.wav")
    counted = CountedStore(store, monkeypatch)
    # the parent folder too: it covers the first folder's deleted file, pruned (and reported) once
    sources = [LocalConnector(f) for f in folders] + [LocalConnector(tmp_path / "pk")]
    summary = ingest_source(sources, tiny_model, store, PRUNE)
    assert counted.calls == 1
    assert summary.pruned == tuple(sorted((gone.as_uri(), moved.as_uri())))
    assert (summary.media_ok, summary.media_skipped, summary.media_failed) == (0, 16, [])  # each file once
    assert len(store.media()) == 16


def test_a_run_that_prunes_no_source_reads_no_stored_item(
    tmp_path: Path, tiny_model: AudioTextEncoder, store: QdrantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A glob and a folder that lists nothing are not pruned: the stored items are not read."""
    (folder,) = _stored_folders(tmp_path / "pk", store, tiny_model.model_id, folders=1, files=2)
    empty = tmp_path / "unmounted"
    empty.mkdir()
    counted = CountedStore(store, monkeypatch)
    glob_source = LocalConnector(str(folder / "*.wav"))
    summary = ingest_source([glob_source, LocalConnector(empty)], tiny_model, store, PRUNE)
    assert (counted.calls, summary.pruned, summary.media_skipped) == (0, (), 2)


def test_an_item_stored_after_the_run_read_the_store_is_not_pruned(
    tmp_path: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    """Another process that stores an item while this run prunes its sources: the item is
    judged by the next run, which lists it or not, never by a later source of this run."""
    first, second = _stored_folders(tmp_path / "pk", store, tiny_model.model_id, folders=2, files=1)
    stored = StoredItems(store)
    assert (
        prune_unlisted(store, LocalConnector(first), list(LocalConnector(first).discover()), stored=stored)
        == []
    )
    late = (second / "not-yet-listed.wav").as_uri()  # no file (yet): a fresh read would prune it
    store.write_media(MediaRef(late, media_id_for(late), "v1"), tiny_model.model_id, [])
    refs = list(LocalConnector(second).discover())
    assert prune_unlisted(store, LocalConnector(second), refs, stored=stored) == []
    assert late in {item.source for item in store.media()}
    assert prune_unlisted(store, LocalConnector(second), refs) == [late]  # the next run's read


def test_an_item_deleted_after_the_run_read_the_store_is_not_reported_as_pruned(
    tmp_path: Path, tiny_model: AudioTextEncoder, store: QdrantStore
) -> None:
    """The run's read is older than each prune: an item another process deleted since (a
    ``store delete``) is not one this run pruned."""
    first, second = _stored_folders(tmp_path / "pk", store, tiny_model.model_id, folders=2, files=2)
    stored = StoredItems(store)
    assert (
        prune_unlisted(store, LocalConnector(first), list(LocalConnector(first).discover()), stored=stored)
        == []
    )
    (kept, gone) = sorted(second.iterdir())
    gone.unlink()
    assert store.delete_media(media_id_for(gone.as_uri())) == 1  # by another process
    refs = list(LocalConnector(second).discover())
    assert prune_unlisted(store, LocalConnector(second), refs, stored=stored) == []
    assert {item.source for item in store.media()} == {kept.as_uri(), *(f.as_uri() for f in first.iterdir())}
