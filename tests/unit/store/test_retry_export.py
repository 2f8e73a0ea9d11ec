"""Retries with backoff, and copying an embedded collection into a qdrant-client store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import RetryOptions, export_collection, open_store
from clasp_ingest.store.base import with_retry
from tests.unit.store.conftest import DIM, MODEL, make_media


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
        assert export_collection(edge, target, batch_size=32) == 120
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
