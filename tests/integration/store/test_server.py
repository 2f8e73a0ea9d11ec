"""Against real sockets: a Qdrant server named by $QDRANT_URL, and retries on a dead port."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clasp_ingest.errors import StoreError
from clasp_ingest.store import QdrantStore, RetryOptions, StoredPoint, WriteOptions, open_store
from tests.unit.store.test_congruence import _scenario

pytestmark = pytest.mark.integration

QDRANT_URL = os.environ.get("QDRANT_URL")


@pytest.fixture
def server_store() -> Iterator[QdrantStore]:
    if not QDRANT_URL:
        pytest.skip("set QDRANT_URL (and QDRANT_API_KEY) to run against a Qdrant server")
    name = f"clasp_test_{uuid.uuid4().hex[:8]}"
    store = open_store(url=QDRANT_URL, api_key=os.environ.get("QDRANT_API_KEY"), collection=name)
    try:
        yield store
    finally:
        store.drop()
        store.close()


def test_server_agrees_with_the_embedded_engine(server_store: QdrantStore, tmp_path: Path) -> None:
    with open_store(path=tmp_path) as edge:
        expected = _scenario(edge)
    got = _scenario(server_store)
    for key, value in expected.items():
        if key.startswith("scores"):
            assert got[key] == pytest.approx(value, abs=1e-4), key
        else:
            assert got[key] == value, key


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
def test_unreachable_server_is_retried_then_reported() -> None:
    retry = RetryOptions(attempts=3, initial_s=0.05, max_s=0.1)
    store = open_store(url=f"http://127.0.0.1:{_dead_port()}", write=WriteOptions(retry=retry), timeout_s=2)
    point = StoredPoint(str(uuid.uuid4()), {"metadata": {}}, [1.0, 0.0])
    start = time.monotonic()
    with pytest.raises(StoreError, match=r"failed 3 times.*reachable"):
        store.upsert_points([point])
    assert time.monotonic() - start >= 0.15  # backed off 0.05 + 0.1 s between the attempts


@pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
def test_an_unreachable_grpc_server_is_one_line_naming_the_grpc_port() -> None:
    """qdrant-client's gRPC error is a multi-line report; the message quotes its details, which
    name the port dialled (6334, the gRPC port), not the URL's."""
    retry = RetryOptions(attempts=2, initial_s=0.05, max_s=0.1)
    url = f"http://127.0.0.1:{_dead_port()}"
    store = open_store(url=url, write=WriteOptions(retry=retry), timeout_s=2, prefer_grpc=True)
    point = StoredPoint(str(uuid.uuid4()), {"metadata": {}}, [1.0, 0.0])
    with pytest.raises(StoreError) as caught:
        store.upsert_points([point])
    message = str(caught.value)
    assert "\n" not in message and "failed 2 times (failed to connect to all addresses" in message
    assert "127.0.0.1:6334" in message and "debug_error_string" not in message
