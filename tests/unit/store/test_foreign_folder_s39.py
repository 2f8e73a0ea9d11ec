"""A folder in the embedded store's folder that has the collection's name but is not one of its
collections (the user's media folder, a ``store export`` copy, notes) is never removed: a
reviewer's ``ingest lectures/ --qdrant-path . -c lectures`` deleted the lectures it was given,
with a warning ("removing the half-made collection folder") and exit 0. A create that was cut
off is still replaced, and ``--recreate`` of a real collection keeps a file put inside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import StoreError
from clasp_ingest.store import EdgeStore
from clasp_ingest.store.metric import QueryMetric
from tests.unit.pipeline.speech import SENTENCES, speak
from tests.unit.store.conftest import DIM, MODEL, make_media


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "entries",
    [{"l1.wav": b"RIFF lecture"}, {"deep/notes.txt": b"important"}, {"collection.json.bak": b"{}"}],
    ids=["media", "nested-notes", "look-alike"],
)
def test_a_folder_that_is_no_collection_is_refused_and_kept(
    tmp_path: Path, entries: dict[str, bytes]
) -> None:
    folder = tmp_path / "lectures"
    for name, data in entries.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    with EdgeStore(tmp_path, "lectures") as store:
        refused = r"'.*/lectures' is in the store's folder .* no collection of it"
        with pytest.raises(StoreError, match=refused):
            store.ensure_collection(MODEL, DIM)
        assert not store.exists()
    assert _files(folder) == entries


def test_a_file_with_the_collections_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "talks").write_bytes(b"a file")
    with pytest.raises(StoreError, match=r"holds a file .* where collection 'talks' keeps its folder"):
        EdgeStore(tmp_path, "talks")  # at opening, as before
    assert (tmp_path / "talks").read_bytes() == b"a file"


def test_a_cut_off_create_is_still_replaced(tmp_path: Path) -> None:
    half = tmp_path / "clasp_segments"
    (half / "shard.partial" / "segments").mkdir(parents=True)
    (half / "shard.partial" / "segments" / "x").write_bytes(b"half a segment")
    QueryMetric.fit(np.random.default_rng(1).standard_normal((64, DIM))).save(half / "query_metric.npz")
    (half / "collection.json.partial").write_text("{")
    with EdgeStore(tmp_path) as store:
        assert store.ensure_collection(MODEL, DIM) is True
    assert sorted(p.name for p in half.iterdir()) == ["collection.json", "shard"]


def test_dropping_a_collection_keeps_a_file_put_inside_it(tmp_path: Path) -> None:
    item = make_media("file:///a.wav", "v1", 3, seed=1)
    with EdgeStore(tmp_path) as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(item.ref, MODEL, item.batches())
    (tmp_path / "clasp_segments" / "README.txt").write_text("ours")
    with EdgeStore(tmp_path) as store:
        store.drop()
        assert not store.exists()
    assert _files(tmp_path / "clasp_segments") == {"README.txt": b"ours"}


def test_ingest_into_a_media_folder_named_like_the_collection(tmp_path: Path) -> None:
    """The reviewer's command, with the tiny model: one error line, exit 1, the files there."""
    lectures = tmp_path / "lectures"
    lectures.mkdir()
    speak(lectures / "l1.wav", SENTENCES[:1])
    before = _files(lectures)
    result = CliRunner().invoke(
        app,
        ["ingest", str(lectures), "--qdrant-path", str(tmp_path), "-c", "lectures", "--model", "tiny-random"],
    )
    assert result.exit_code == 1, result.output
    assert "no collection of it (it holds 'l1.wav')" in result.stderr and "--collection NAME" in result.stderr
    assert _files(lectures) == before
