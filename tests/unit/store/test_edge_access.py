"""The embedded store shared by several users, and read in any locale: a refused file is named
with the remedy that opens every file up (not "make the folder writable" for a folder that is
``drwxrwxrwx``), and the engine's files are read as UTF-8 under ``LC_ALL=C``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import EdgeStore, open_store
from tests.unit.store.conftest import DIM, MODEL, make_media

COLLECTION = "clasp_segments"
CONFIG = Path(COLLECTION) / "shard" / "edge_config.json"
not_as_root = pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes every file")


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Path]:
    """A store with one item; every mode changed in it is set back at the end."""
    item = make_media("file:///a.wav", "v1", 6, seed=1)
    with EdgeStore(tmp_path) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(item.ref, MODEL, item.batches())
    yield tmp_path
    tmp_path.chmod(0o700)
    for root, dirs, files in os.walk(tmp_path):
        for name in [*dirs, *files]:
            Path(root, name).chmod(0o700)


def _remedy(store: Path, culprit: Path) -> str:
    return (
        rf"a file '{culprit}' of the embedded Qdrant store '{store}' cannot be read or written "
        rf"\(Permission denied\), though the store's folder can.*give every user of the store access to "
        rf"all its files \(chmod -R a\+rwX '{store}'"
    )


def test_a_file_the_engine_may_not_open_is_named_with_the_remedy_for_all_files(
    filled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What Qdrant Edge says of a 0600 file another user made, in a world-writable store."""
    import qdrant_edge as qe

    culprit = filled / CONFIG

    class PrivateConfig:
        @staticmethod
        def load(path: str) -> None:
            raise Exception(
                f"Service runtime error: IO Error: failed to open file `{culprit}`: Permission denied "
                "(os error 13)"
            )

    monkeypatch.setattr(qe, "EdgeShard", PrivateConfig)
    with pytest.raises(StoreError, match=_remedy(filled, culprit)) as raised:
        open_store(path=filled)
    assert "is not writable" not in str(raised.value)


@not_as_root
def test_a_private_file_in_a_shared_store_is_named(filled: Path) -> None:
    (filled / CONFIG).chmod(0)  # as if another user made it with umask 077
    with pytest.raises(StoreError, match=_remedy(filled, filled / CONFIG)):
        open_store(path=filled)


@not_as_root
def test_a_private_lock_file_is_named_and_a_folder_that_is_not_writable_is_said_so(filled: Path) -> None:
    lock = filled / f".{COLLECTION}.lock"
    lock.chmod(0o400)
    with pytest.raises(StoreError, match=_remedy(filled, lock)):
        open_store(path=filled)
    lock.unlink()
    filled.chmod(0o500)  # the lock cannot be made: the folder is at fault
    with pytest.raises(StoreError, match=rf"store '{filled}' is not writable \(Permission denied\)"):
        open_store(path=filled)


def test_the_engine_config_is_read_as_utf8_in_the_c_locale(filled: Path) -> None:
    """Under ``LC_ALL=C PYTHONUTF8=0`` Python's default encoding is ASCII."""
    code = textwrap.dedent(
        """
        import json, pathlib, sys
        from clasp_ingest.store import EdgeStore
        with EdgeStore(sys.argv[1]) as store:
            config = pathlib.Path(sys.argv[1], sys.argv[2])
            data = json.loads(config.read_bytes())
            config.write_bytes(json.dumps({**data, "note": "caf\\u00e9"}, ensure_ascii=False).encode())
            print(store.index_config()["hnsw"]["m"])
        """
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"}
    done = subprocess.run([sys.executable, "-c", code, str(filled), str(CONFIG)],
                          env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()
