"""The embedded store when things go wrong on disk: a create cut off, damaged files, a folder that
is read-only or not a folder. Every failure is one ``StoreError`` naming the store, the
collection and a remedy that works; nothing half-made stays in the way."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.pipeline import collection_for
from clasp_ingest.store import EdgeStore, open_store
from clasp_ingest.store.metric import QueryMetric
from tests.unit.store.conftest import DIM, MODEL, make_media

COLLECTION = "clasp_segments"


def _filled(path: Path, *, metric: bool = True) -> None:
    """A store at ``path`` with one item of 12 spans (and a query metric)."""
    item = make_media("file:///a.wav", "v1", 12, seed=1)
    query_metric = QueryMetric.fit(np.random.default_rng(3).standard_normal((64, DIM))) if metric else None
    with EdgeStore(path) as store:
        store.ensure_collection(MODEL, DIM, query_metric=query_metric)
        store.write_media(item.ref, MODEL, item.batches())


def _usable(path: Path) -> None:
    """The collection at ``path`` can be made (again) and written, and nothing else is left."""
    item = make_media("file:///b.wav", "v1", 5, seed=2)
    with EdgeStore(path) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(item.ref, MODEL, item.batches())
    with EdgeStore(path) as store:
        assert store.count() == 5 and [m.source for m in store.media()] == ["file:///b.wav"]
    assert sorted(p.name for p in (path / COLLECTION).iterdir()) == ["collection.json", "shard"]


# ----- a create cut off


_KILLED_CREATE = """
import os, sys
from pathlib import Path
import clasp_ingest.store.edge as edge

def killed(*args, **kwargs):
    os._exit(137)  # kill -9, power loss: nothing is cleaned up

if sys.argv[2] == "indexes":  # the shard is being built (shard.partial), cf. /tmp crash_in_create.py
    made = edge.EdgeStore._create_text_index
    def cut(self, key):
        made(self, key)
        self._shard.flush()
        killed()
    edge.EdgeStore._create_text_index = cut
else:  # the shard is complete, collection.json not yet written
    edge._write_durably = killed
edge.EdgeStore(Path(sys.argv[1])).ensure_collection("test-model", 16)
"""


@pytest.mark.parametrize("moment", ["indexes", "identity"])
def test_a_create_killed_half_way_is_replaced_by_the_next_one(
    tmp_path: Path, moment: str, caplog: pytest.LogCaptureFixture
) -> None:
    code = textwrap.dedent(_KILLED_CREATE)
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path), moment], check=False)
    assert killed.returncode == 137
    assert not (tmp_path / COLLECTION / "collection.json").exists()
    with EdgeStore(tmp_path) as store:  # reads: no collection yet
        assert store.identity is None and store.count() == 0 and not store.exists()
    with caplog.at_level(logging.WARNING, logger="clasp_ingest"):
        _usable(tmp_path)
    assert "half-made collection folder" in caplog.text


def test_a_half_made_collection_of_an_older_version_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import qdrant_edge as qe

    (tmp_path / COLLECTION).mkdir()  # how creates were cut off before: a shard, no collection.json
    config = qe.EdgeConfig(vectors={"clasp": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)})
    qe.EdgeShard.create(str(tmp_path / COLLECTION / "shard"), config).close()
    with caplog.at_level(logging.WARNING, logger="clasp_ingest"):
        _usable(tmp_path)
    assert "half-made collection folder" in caplog.text


def test_ctrl_c_while_a_collection_is_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: EdgeStore, key: str) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(EdgeStore, "_create_text_index", interrupted)
        with EdgeStore(tmp_path) as store, pytest.raises(KeyboardInterrupt):
            store.ensure_collection(MODEL, DIM)
    assert not (tmp_path / COLLECTION).exists()
    _usable(tmp_path)


# ----- damaged files


def _segment_file(path: Path, name: str) -> Path:
    (found,) = (path / COLLECTION / "shard" / "segments").glob(f"*/{name}")
    return found


_DAMAGE: dict[str, Callable[[Path], None]] = {
    "collection.json truncated": lambda p: (p / COLLECTION / "collection.json").write_text(""),
    "collection.json lost": lambda p: (p / COLLECTION / "collection.json").unlink(),
    "query metric lost": lambda p: (p / COLLECTION / "query_metric.npz").unlink(),
    "query metric truncated": lambda p: (p / COLLECTION / "query_metric.npz").write_bytes(b"PK\x03\x04"),
    "payloads truncated": lambda p: _segment_file(p, "payload_storage/page_0.dat").write_bytes(b""),
}


@pytest.mark.parametrize("damage", list(_DAMAGE))
def test_a_damaged_collection_is_reported_and_recreate_replaces_it(tmp_path: Path, damage: str) -> None:
    _filled(tmp_path)
    _DAMAGE[damage](tmp_path)
    folder = str(tmp_path / COLLECTION)
    said = rf"embedded collection '{COLLECTION}' in '{tmp_path}' is damaged: .*--recreate.*{folder}"
    with open_store(path=tmp_path) as store, pytest.raises(StoreError, match=said):
        store.media()  # store list
    if damage != "payloads truncated":  # (found where a payload is read, not on opening)
        with open_store(path=tmp_path) as store, pytest.raises(StoreError, match=said):
            store.ensure_collection(MODEL, DIM)  # ingest, without --recreate: nothing changed
    with (
        open_store(path=tmp_path) as store,
        collection_for(store, MODEL, DIM, recreate=True) as created,  # ingest --recreate's steps
    ):
        assert created
        item = make_media("file:///b.wav", "v1", 5, seed=2)
        store.write_media(item.ref, MODEL, item.batches())
    _usable(tmp_path)


def test_a_shard_that_cannot_be_opened_is_reported_with_a_remedy_that_works(tmp_path: Path) -> None:
    _filled(tmp_path)
    (tmp_path / COLLECTION / "shard" / "edge_config.json").write_text("")
    folder = str(tmp_path / COLLECTION)
    said = (
        rf"in '{tmp_path}' is damaged: its shard cannot be opened .*--recreate.*delete the folder '{folder}'"
    )
    with open_store(path=tmp_path) as store:
        with pytest.raises(StoreError, match=said):
            store.identity  # noqa: B018 - store info
        with pytest.raises(StoreError, match=said):
            store.search(np.ones(DIM, np.float32))
        with pytest.raises(StoreError, match=said):
            store.count()  # ingest --recreate cannot say how many points it drops, and drops them
        with collection_for(store, MODEL, DIM, recreate=True) as created:
            assert created
    _usable(tmp_path)


def test_a_bad_request_to_the_engine_is_not_called_damage(tmp_path: Path) -> None:
    _filled(tmp_path, metric=False)
    with EdgeStore(tmp_path) as store, pytest.raises(Exception, match="dimension") as raised:
        store._query([1.0, 0.0], 3, store._visible(None), None)  # a bug here, not the disk's
    assert not isinstance(raised.value, StoreError)


# ----- folders that cannot be used


def test_a_read_only_store_is_refused_naming_it_and_the_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clasp_ingest.store.edge as edge

    _filled(tmp_path)
    opened = edge.os.open

    def read_only(path: object, flags: int, *args: int) -> int:
        if flags & edge.os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return opened(path, flags, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(edge.os, "open", read_only)
    said = rf"store '{tmp_path}' is not writable \(Read-only file system\).*copy the folder.*--qdrant-path"
    with pytest.raises(StoreError, match=said):
        open_store(path=tmp_path)


@pytest.mark.parametrize("trouble", [errno.EROFS, errno.EACCES])
def test_a_read_only_qdrant_client_folder_is_refused_naming_it_and_the_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trouble: int
) -> None:
    """qdrant-client writes a lock file even to read: on a read-only mount it failed as a bare
    "Read-only file system: '.../.lock'", naming neither the store nor a remedy."""
    import qdrant_client.local.qdrant_local as local

    folder = tmp_path / "copy"
    with open_store(path=folder, backend="client") as store:
        store.ensure_collection("m", 2)
    (folder / ".lock").unlink()  # as a copy made elsewhere has none

    def read_only(path: str, mode: str = "r", *args: object, **kwargs: object) -> object:
        if str(path).endswith(".lock"):
            error = PermissionError if trouble == errno.EACCES else OSError
            raise error(trouble, os.strerror(trouble), str(path))
        return Path(path).open(mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(local, "open", read_only, raising=False)
    with pytest.raises(
        StoreError, match=rf"qdrant-client folder '{folder}' .*copy the folder to a writable place"
    ):
        open_store(path=folder)


def test_a_shard_the_engine_may_not_write_is_refused_naming_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qdrant_edge as qe

    _filled(tmp_path)

    class ReadOnlyShard:
        @staticmethod
        def load(path: str) -> None:
            raise Exception(
                f"Service runtime error: failed to open {path}: Read-only file system (os error 30)"
            )

    monkeypatch.setattr(qe, "EdgeShard", ReadOnlyShard)
    with pytest.raises(StoreError, match=rf"store '{tmp_path}' is not writable \(Read-only file system\)"):
        open_store(path=tmp_path)


def test_a_store_under_a_file_or_a_collection_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("hi")
    with open_store(path=tmp_path / "afile" / "sub") as store:
        assert store.identity is None  # reads: nothing there
        said = rf"'{tmp_path / 'afile'}' is a file, not a folder; give a folder \(open_store\(path=\.\.\.\)\)"
        with pytest.raises(StoreError, match=said):
            store.ensure_collection(MODEL, DIM)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / COLLECTION).write_text("x")
    said = rf"holds a file '{tmp_path / 'q' / COLLECTION}' where collection '{COLLECTION}' keeps its folder"
    with pytest.raises(StoreError, match=said):
        open_store(path=tmp_path / "q")
