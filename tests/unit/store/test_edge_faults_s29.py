"""Faults of the machine, not of the collection's files: a nearly full disk at open (SIGBUS),
out of memory, a store folder moved away, a WAL the engine may not truncate."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from clasp_ingest.errors import StoreError, StoreFullError
from clasp_ingest.store import EdgeOptions, EdgeStore, open_store
from tests.unit.store.conftest import DIM, MODEL, make_media

COLLECTION = "clasp_segments"


def _filled(path: Path) -> Path:
    media = make_media("file:///a.wav", "v1", 6, seed=1)
    with open_store(path=path) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(media.ref, MODEL, media.batches())
    return path


def test_a_store_whose_files_may_grow_past_the_free_space_is_not_opened(tmp_path: Path) -> None:
    # opening maps the shard's files and writes to some: a copied store took 154 MiB of a disk
    # with 10 MiB free and the process died of SIGBUS (exit 135, no message), even for
    # `store list`. Here a sparse file in the shard stands for holes larger than the disk.
    store_dir = _filled(tmp_path / "q")
    hole = store_dir / COLLECTION / "shard" / "holes.bin"
    with hole.open("wb") as f:
        f.truncate(shutil.disk_usage(tmp_path).free + 2**30)  # holes past the free space, no block taken
    if hole.stat().st_blocks * 512 >= 2**20:
        pytest.skip("this file system does not make sparse files")
    said = (
        r"disk of the embedded store .* is full \(\d+ MiB free; opening collection 'clasp_segments' "
        r"may take up to \d+ MiB more, .*; only ingest --recreate, which deletes its points, can "
        r"still drop it here\); free space there"
    )
    with open_store(path=store_dir, edge=EdgeOptions(min_free_bytes=2**62)) as store:
        assert store.exists()  # what the collection is can be read: only its shard is not opened
        with pytest.raises(StoreFullError, match=said):
            store.count()
        with pytest.raises(StoreFullError, match=said):
            store.search([1.0] * DIM, k=1)
    with open_store(path=store_dir, edge=EdgeOptions(min_free_bytes=2**62)) as store:
        store.drop()  # what --recreate does first: the disk gets its space back
        assert not store.exists() and not (store_dir / COLLECTION).exists()
    _filled(store_dir)
    hole = store_dir / COLLECTION / "shard" / "holes.bin"
    with hole.open("wb") as f:
        f.truncate(shutil.disk_usage(tmp_path).free + 2**30)
    # at most min_free_bytes are asked for: the default (128 MiB) is free here
    hole.unlink()
    with open_store(path=store_dir) as store:
        assert store.count() == 6


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (
            "Service runtime error: Out of memory, free: 21882793984, IO Error: Cannot allocate memory "
            "(os error 12)",
            r"out of memory; free memory \(or raise ulimit -v\)",
        ),
        (
            "Service runtime error: IO Error: Too many open files (os error 24)",
            r"too many open files; raise the limit \(ulimit -n\)",
        ),
        (
            "Service runtime error: IO Error: Input/output error (os error 5)",
            "input/output error; check the disk",
        ),
    ],
)
def test_machine_faults_are_not_called_damage(tmp_path: Path, message: str, said: str) -> None:
    with open_store(path=_filled(tmp_path / "q")) as store:
        assert isinstance(store, EdgeStore)
        failed = store._engine_error("update", Exception(message))
    assert isinstance(failed, StoreError) and "damaged" not in str(failed) and "--recreate" not in str(failed)
    assert str(failed).startswith(f"writing to the embedded store {str(tmp_path / 'q')!r} failed")
    assert re.search(said, str(failed))


def test_a_wal_that_may_not_be_truncated_is_refused_access_not_damage(tmp_path: Path) -> None:
    # the engine's Rust debug form of an OS error: "damaged; ingest again with --recreate" for
    # a store whose every item had been written
    message = (
        "Service runtime error: WAL ack failed: Can't truncate WAL: Os { code: 1, kind: "
        'PermissionDenied, message: "Operation not permitted" }'
    )
    with open_store(path=_filled(tmp_path / "q")) as store:
        assert isinstance(store, EdgeStore)
        failed = store._engine_error("flush", Exception(message))
    assert isinstance(failed, StoreError) and "damaged" not in str(failed)
    assert "Operation not permitted" in str(failed)


def test_a_store_folder_moved_away_while_writing_is_said_so(tmp_path: Path) -> None:
    store_dir = _filled(tmp_path / "q")
    message = (
        "Service runtime error: Failed to flush id_tracker mapping: Service runtime error: IO Error: "
        f"failed to open file `{store_dir}/{COLLECTION}/shard/segments/x/mutable_id_tracker.mappings`: "
        "No such file or directory (os error 2)"
    )
    with open_store(path=store_dir) as store:
        assert isinstance(store, EdgeStore)
        in_place = store._engine_error("flush", Exception(message))
        store_dir.rename(tmp_path / "moved")
        try:
            moved = store._engine_error("flush", Exception(message))
        finally:
            (tmp_path / "moved").rename(store_dir)
    assert "is damaged" in str(in_place)  # a file missing from a folder still there: damage
    assert isinstance(moved, StoreError) and "damaged" not in str(moved)
    assert f"its folder {str(store_dir / COLLECTION)!r} is gone (moved or deleted" in str(moved)


def test_a_shard_that_cannot_be_opened_for_memory_is_not_called_damaged(tmp_path: Path) -> None:
    # `store list` under `ulimit -v` 400 MB said "damaged: its shard cannot be opened (... Out of
    # memory ... (os error 12)); ingest again with --recreate" of an intact store (tester 5)
    message = "Service runtime error: Out of memory, free: 0, IO Error: Cannot allocate memory (os error 12)"

    def out_of_memory(path: str) -> None:
        raise Exception(message)

    with open_store(path=_filled(tmp_path / "q")) as store:
        assert isinstance(store, EdgeStore)
        with pytest.raises(StoreError, match=r"opening the embedded store .* out of memory") as raised:
            store._open(out_of_memory, None)
    assert "damaged" not in str(raised.value) and "--recreate" not in str(raised.value)
