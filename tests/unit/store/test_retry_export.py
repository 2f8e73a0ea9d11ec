"""Retries with backoff, and copying an embedded collection to a qdrant-client store or folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import CollectionMismatchError, ConfigError, StoreError
from clasp_ingest.store import (
    ExportReport,
    QdrantStore,
    RetryOptions,
    StoreNames,
    export_collection,
    export_to,
    open_store,
)
from clasp_ingest.store.base import CLI_NAMES, STATE_COMPLETE, with_retry
from clasp_ingest.store.export import open_export_target
from clasp_ingest.store.filters import meta_equals
from tests.unit.store.conftest import DIM, MODEL, Media, make_media


class Flaky:
    def __init__(self, failures: int, exc: Exception) -> None:
        self.failures, self.exc, self.calls = failures, exc, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "ok"


def test_transient_errors_are_retried_with_backoff() -> None:
    waits: list[float] = []
    flaky = Flaky(3, ConnectionError("reset"))
    opts = RetryOptions(attempts=5, initial_s=0.1, max_s=0.3)
    result = with_retry(flaky, options=opts, is_transient=lambda e: isinstance(e, ConnectionError),
                        what="upsert", sleep=waits.append)  # fmt: skip
    assert result == "ok" and flaky.calls == 4 and waits == pytest.approx([0.1, 0.2, 0.3])


def test_retries_give_up_with_a_store_error_and_permanent_errors_pass_through() -> None:
    with pytest.raises(StoreError, match="failed 2 times"):
        with_retry(Flaky(5, ConnectionError()), options=RetryOptions(attempts=2), is_transient=lambda e: True,
                   what="upsert", sleep=lambda s: None)  # fmt: skip
    permanent = Flaky(1, ValueError("bad point"))
    with pytest.raises(ValueError, match="bad point"):
        with_retry(
            permanent, options=RetryOptions(), is_transient=lambda e: False, what="x", sleep=lambda s: None
        )
    assert permanent.calls == 1


def test_export_copies_an_embedded_collection(tmp_path: Path) -> None:
    items = [make_media(f"file:///e{i}.wav", "v1", 40, seed=i) for i in range(3)]
    with open_store(path=tmp_path) as edge, open_store(url=":memory:", collection="copy") as target:
        edge.ensure_collection(MODEL, DIM)
        for item in items:
            edge.write_media(item.ref, MODEL, item.batches())
        seen: list[tuple[int, int]] = []
        assert export_collection(edge, target, batch_size=32, on_progress=lambda *p: seen.append(p)) == 120
        assert seen == [(0, 120), (32, 120), (64, 120), (96, 120), (120, 120)]
        assert export_collection(edge, target, batch_size=32) == 120  # idempotent
        assert target.count() == 120 and target.identity == edge.identity
        q = items[1].vectors[5]
        a, b = edge.search(q, k=5), target.search(q, k=5)
        assert [h.url for h in a] == [h.url for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
        assert target.has_media(items[2].ref.media_id, "v1")


def test_open_store_arguments(tmp_path: Path) -> None:
    from clasp_ingest.errors import ConfigError
    from clasp_ingest.store import EdgeStore, ServerStore

    with pytest.raises(ConfigError, match="no store given"):
        open_store()
    with pytest.raises(ConfigError, match="not both"):
        open_store(url="http://localhost:6333", path=tmp_path)
    with pytest.raises(ConfigError, match="unknown store backend"):
        open_store(path=tmp_path, backend="faiss")
    with open_store(path=tmp_path / "e") as edge, open_store(path=tmp_path / "c", backend="client") as local:
        assert isinstance(edge, EdgeStore) and isinstance(local, ServerStore)


def test_export_to_a_qdrant_client_folder_is_idempotent_and_records_the_model(tmp_path: Path) -> None:
    items = [make_media(f"file:///e{i}.wav", "v1", 30, seed=i) for i in range(2)]
    folder = tmp_path / "copy"
    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(MODEL, DIM, source="presets/test")
        for item in items:
            edge.write_media(item.ref, MODEL, item.batches())
        first = export_to(edge, str(folder), collection="talks", batch_size=16)
        again = export_to(edge, str(folder), collection="talks", batch_size=16)  # reopens the folder
        assert first == again == ExportReport(60, "talks", str(folder), 60)
        q = items[0].vectors[3]
        expected = [(h.point_id, h.url) for h in edge.search(q, k=5)]
    with open_store(path=folder, collection="talks") as copy:  # "auto" knows a qdrant-client folder
        assert copy.backend == "client" and copy.identity is not None
        assert (copy.identity.model_id, copy.identity.dim, copy.identity.source) == (
            MODEL,
            DIM,
            "presets/test",
        )
        assert [(h.point_id, h.url) for h in copy.search(q, k=5)] == expected
        with pytest.raises(StoreError, match="open in another process or client"):
            open_store(path=folder, collection="talks")


def test_export_targets_that_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.md").write_text("x")
    with open_store(path=tmp_path / "edge") as edge:
        with pytest.raises(StoreError, match="does not exist"):
            export_to(edge, str(tmp_path / "never"))
        assert not (tmp_path / "never").exists()  # nothing created for a missing source
        edge.ensure_collection(MODEL, DIM)
        refused = {
            str(tmp_path / "file.txt"): "it is a file",
            str(tmp_path / "notes"): "a non-empty folder",
            str(tmp_path / "edge"): "an embedded (Qdrant Edge) store",
            "qdrant.local:6333": "write the server URL as http://qdrant.local:6333",
            "grpc://qdrant.local:6334": "starts with http:// or https://",
        }
        for target, message in refused.items():
            with pytest.raises(ConfigError, match=re.escape(message)):
                export_to(edge, target)
        empty = tmp_path / "empty"
        empty.mkdir()
        assert export_to(edge, str(empty)).exported == 0  # an empty folder is fine


def _versions(store: QdrantStore) -> list[tuple[str, str, str, int]]:
    return [(m.source, m.version, m.state, m.spans) for m in store.media()]


def _change_and_delete(edge: QdrantStore, items: list[Media]) -> None:
    """items[0] changes (v2 replaces v1), items[1] is deleted, items[2] is left half-written."""
    changed = make_media(items[0].ref.uri, "v2", 12, seed=7)
    edge.write_media(changed.ref, MODEL, changed.batches())
    edge.delete_media(items[1].ref.media_id)
    half = make_media(items[2].ref.uri, "v2", 5, seed=8)  # a run killed while writing v2
    edge.upsert_points(edge._points_for(half.ref, MODEL, half.segments, half.vectors, "2026-01-01"))


@pytest.mark.parametrize("kind", ["folder", "memory"])
def test_export_again_mirrors_changed_deleted_and_half_written_items(tmp_path: Path, kind: str) -> None:
    items = [make_media(f"file:///m{i}.wav", "v1", 10, seed=i) for i in range(3)]
    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(MODEL, DIM)
        for item in items:
            edge.write_media(item.ref, MODEL, item.batches())
        if kind == "folder":  # a new qdrant-client store object on each export, as the CLI does
            folder = str(tmp_path / "copy")
            assert export_to(edge, folder).removed == 0
            _change_and_delete(edge, items)
            report = export_to(edge, folder)
            assert (report.exported, report.target_points, report.removed) == (22, 22, 20)
            with open_store(path=Path(folder)) as copy:
                mirrored, hits = _versions(copy), copy.search(items[0].vectors[0], k=30)
        else:
            with open_store(url=":memory:") as copy:
                assert export_collection(edge, copy) == 30
                _change_and_delete(edge, items)
                assert export_collection(edge, copy) == 22  # the half-written v2 is not copied
                mirrored, hits = _versions(copy), copy.search(items[0].vectors[0], k=30)
        expected = [(m.source, m.version, m.state, m.spans) for m in edge.media() if m.state != "writing"]
    assert (
        mirrored
        == expected
        == [("file:///m0.wav", "v2", "complete", 12), ("file:///m2.wav", "v1", "complete", 10)]
    )
    assert len(hits) == 22 and len({(h.media_id, h.start_s) for h in hits}) == 22  # each span once


def test_export_again_mirrors_a_rewrite_of_the_same_version(tmp_path: Path) -> None:
    # 'ingest --force' with other segments writes the stored version again (new write id); the
    # copy held the spans of the earlier write, some of them written before writes had ids
    a = make_media("file:///a.wav", "v1", 10, seed=1)
    with open_store(path=tmp_path / "edge") as edge, open_store(url=":memory:") as copy:
        edge.ensure_collection(MODEL, DIM)
        edge.upsert_points(edge._points_for(a.ref, MODEL, a.segments, a.vectors, "2026-01-01"))  # no write id
        edge._set_state(meta_equals("media_id", a.ref.media_id), STATE_COMPLETE)  # as older releases left it
        assert export_collection(edge, copy) == 10
        again = make_media("file:///a.wav", "v1", 4, seed=2, offset_s=0.5)
        edge.write_media(again.ref, MODEL, again.batches())
        assert edge.count() == 4  # the write replaced the points without a write id too
        assert export_collection(edge, copy) == 4
        assert copy.count() == 4 and _versions(copy) == [("file:///a.wav", "v1", "complete", 4)]
        edge.write_media(again.ref, MODEL, again.batches())  # and once more, a write with an id
        export_collection(edge, copy)
        assert copy.count() == 4 and {p.id for p in copy.iter_points()} == {p.id for p in edge.iter_points()}


def test_export_refuses_a_target_of_another_model_naming_the_export_options(tmp_path: Path) -> None:
    with open_store(path=tmp_path / "other", backend="client") as other:
        other.ensure_collection("another-model", 8)
    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(MODEL, DIM)
        message = (
            f"to collection 'clasp_segments' in '{tmp_path / 'other'}': it holds 8-d vectors of model "
            "'another-model'; export to another collection (--to-collection NAME) or target (--to)"
        )
        with pytest.raises(CollectionMismatchError, match=re.escape(message)):
            export_to(edge, str(tmp_path / "other"))
        for name, why in [("../x", "holds '/'"), ("", "must be 1-255 bytes")]:
            with pytest.raises(ConfigError, match=re.escape(why) + r".*\(--to-collection\)$"):
                export_to(edge, str(tmp_path / "never"), collection=name)
        assert not (tmp_path / "never").exists()  # refused before the target was made
        target = open_export_target("http://127.0.0.1:9", collection="c")  # no request made yet
        assert target.names.url == "--to"
        target.close()
    with pytest.raises(StoreError, match=re.escape("the URL is right (--to)")):
        with_retry(Flaky(5, ConnectionError()), options=RetryOptions(attempts=2), is_transient=lambda e: True,
                   what="upsert", sleep=lambda s: None, url_option="--to")  # fmt: skip


def test_a_malformed_qdrant_url_is_a_config_error_naming_it() -> None:
    for url, why in [
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:70000", "Port out of range"),
        ("http://qdrant host:6333", "invalid character ' '"),
        ("http://:6333", "no host"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(f"the Qdrant URL {url!r} is not valid")) as error:
            open_store(url=url)
        assert why in str(error.value) and str(error.value).endswith("(open_store(url=...))")
    with pytest.raises(ConfigError, match=r"\(--qdrant-url, CLASP_QDRANT_URL\)$"):  # the CLI's names
        open_store(url="http://:6333", names=CLI_NAMES)
    with pytest.raises(ConfigError, match=r"the Qdrant URL is empty; .*\(--to\)$"):
        open_store(url=" ", names=StoreNames(url="--to"))


def test_an_exported_no_speech_marker_is_no_hit_for_other_clients(tmp_path: Path) -> None:
    """An item without speech is one "empty" marker whose vector (the embedded engine needs one) is
    a unit axis. Exported with it, langchain-qdrant on the copy listed "demo (no speech found)"
    among its first hits; the copy's marker has no vector, and still makes the item skipped."""
    from qdrant_client import QdrantClient

    speech, silent = (
        make_media("file:///talk.wav", "v1", 5, seed=1),
        make_media("file:///hiss.wav", "v1", 0, seed=2),
    )
    folder = tmp_path / "copy"
    with open_store(path=tmp_path / "edge") as edge:
        edge.ensure_collection(MODEL, DIM)
        edge.write_media(speech.ref, MODEL, speech.batches())
        edge.write_media(silent.ref, MODEL, iter(()))
        assert edge.has_media(silent.ref.media_id, "v1")
        export_to(edge, str(folder), collection="talks")
    client = QdrantClient(path=str(folder))  # another client, as langchain-qdrant uses it
    try:
        axis = np.eye(DIM, dtype=np.float32)[0]  # the marker's old vector: the best match it could have
        hits = client.query_points("talks", query=axis.tolist(), using="clasp", limit=10, with_payload=True)
        assert [p.payload["metadata"]["state"] for p in hits.points] == ["complete"] * 5  # type: ignore[index]
        assert client.count("talks").count == 6  # the marker is there
    finally:
        client.close()
    with open_store(path=folder, collection="talks") as copy:
        assert copy.has_media(silent.ref.media_id, "v1") and copy.has_media(speech.ref.media_id, "v1")
