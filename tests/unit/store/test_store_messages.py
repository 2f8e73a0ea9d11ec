"""What the store commands say: a URL where no Qdrant server answers, the options ``store export``
has, the media items ``store list`` counts."""

from __future__ import annotations

import functools
import http.server
import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import StoreError
from clasp_ingest.store import EdgeStore, ServerStore
from tests.unit.store.conftest import DIM, MODEL, make_media

URL = "http://127.0.0.1:8766"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def address_string(self) -> str:  # a Unix socket has no client address
        return "local"

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """``python -m http.server`` (a web server, not Qdrant) on a Unix socket: its path."""
    socket_path = str(tmp_path / "http.sock")
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = socketserver.ThreadingUnixStreamServer(socket_path, handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield socket_path
    finally:
        server.shutdown()
        server.server_close()


def _server_store(url: str, transport: httpx.BaseTransport) -> ServerStore:
    from qdrant_client import QdrantClient

    client = QdrantClient(url=url, transport=transport, check_compatibility=False)
    return ServerStore(client, owns_client=True, location=url, check_version=True)


def test_a_web_server_that_is_not_qdrant_is_named_with_the_remedy(web_server: str) -> None:
    said = rf"'{URL}' did not answer as a Qdrant server \(reading the server version: JSONDecodeError"
    web = httpx.HTTPTransport(uds=web_server)
    python_names = r"\(open_store\(url=\.\.\.\)\)"  # a Python caller's store
    with _server_store(URL, web) as store, pytest.raises(StoreError, match=f"{said}.*{python_names}"):
        store.identity  # noqa: B018 - the first contact of every store command
    missing = r"'.*/a/b' did not answer as a Qdrant server \(.*HTTP 404"
    with _server_store(f"{URL}/a/b", web) as store, pytest.raises(StoreError, match=missing):
        store.identity  # noqa: B018


def _answering(body: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(body)


def test_json_that_is_not_qdrants_is_not_retried_and_names_the_url() -> None:
    asked: list[str] = []

    def other_json(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json={"status": "ok"})

    said = rf"'{URL}' did not answer as a Qdrant server.*\(open_store\(url=\.\.\.\)\)"
    with _server_store(URL, _answering(other_json)) as store, pytest.raises(StoreError, match=said):
        store.identity  # noqa: B018
    assert asked == ["/"]  # an answer, not a connection problem: asked once


def test_the_url_in_the_message_hides_credentials() -> None:
    def page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html></html>")

    secret = "http://user:secret@127.0.0.1:8766"
    with _server_store(secret, _answering(page)) as store, pytest.raises(StoreError) as raised:
        store.identity  # noqa: B018
    assert "secret" not in str(raised.value) and "did not answer as a Qdrant server" in str(raised.value)


def test_store_export_names_only_its_own_options(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
    result = CliRunner().invoke(
        app,
        [
            "store",
            "export",
            "--qdrant-path",
            str(tmp_path / "q"),
            "--collection",
            "nosuch",
            "--to",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("pass the right --collection / --qdrant-path"), result.stderr
    assert not (tmp_path / "out").exists()


def test_store_list_counts_media_items_not_versions(tmp_path: Path) -> None:
    a, b = make_media("file:///a.wav", "v1", 4, seed=1), make_media("file:///b.wav", "v1", 3, seed=2)
    with EdgeStore(tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
        store.write_media(a.ref, MODEL, a.batches())
        store.write_media(b.ref, MODEL, b.batches())
        changed = make_media("file:///a.wav", "v2", 6, seed=3)  # a run that stopped while writing v2
        store.upsert_points(store._points_for(changed.ref, MODEL, changed.segments, changed.vectors, "now"))
    runner = CliRunner()
    listed = runner.invoke(app, ["store", "list", "--qdrant-path", str(tmp_path / "q")])
    assert listed.exit_code == 0, listed.output
    assert (
        listed.stdout.splitlines()[-1] == "2 media items (3 versions), 7 searchable spans in 'clasp_segments'"
    )
    items = json.loads(
        runner.invoke(app, ["store", "list", "--qdrant-path", str(tmp_path / "q"), "--json"]).stdout
    )
    assert [(i["source"], i["state"]) for i in items] == [
        ("file:///a.wav", "complete"),
        ("file:///a.wav", "writing"),
        ("file:///b.wav", "complete"),
    ]
    with EdgeStore(tmp_path / "q") as store:
        store.delete_version(a.ref.media_id, "v2")
        store.delete_media(b.ref.media_id)
    one = runner.invoke(app, ["store", "list", "--qdrant-path", str(tmp_path / "q")])
    assert one.stdout.splitlines()[-1] == "1 media item, 4 searchable spans in 'clasp_segments'"


def test_store_info_of_a_missing_collection_is_an_error_naming_the_store(tmp_path: Path) -> None:
    """A mistyped --collection or --qdrant-path printed "model": null, 0 points and exit 0, as an
    empty store: a health check read the typo as "fine" (store list and search said error)."""
    with EdgeStore(tmp_path / "q") as store:
        store.ensure_collection(MODEL, DIM)
    runner = CliRunner()
    store_q, store_qq = str(tmp_path / "q"), str(tmp_path / "qq")
    typo = runner.invoke(app, ["store", "info", "--qdrant-path", store_q, "--collection", "clasp_segmnets"])
    assert (typo.exit_code, typo.stdout) == (1, ""), typo.output
    assert typo.stderr == (
        f"error: collection 'clasp_segmnets' does not exist in the edge store '{store_q}' (it holds "
        "'clasp_segments'); ingest some media first, or pass the right --collection / --qdrant-path "
        "/ --qdrant-url\n"
    )
    gone = runner.invoke(app, ["store", "info", "--qdrant-path", store_qq])
    assert (gone.exit_code, gone.stdout) == (1, ""), gone.output
    assert gone.stderr == (
        f"error: collection 'clasp_segments' does not exist: there is no embedded store at '{store_qq}' "
        "(no such folder); check the path, or ingest some media into it first (--collection / "
        "--qdrant-path / --qdrant-url)\n"
    )
    assert not (tmp_path / "qq").exists()
    there = runner.invoke(app, ["store", "info", "--qdrant-path", store_q])
    assert there.exit_code == 0 and json.loads(there.stdout)["model"] == MODEL, there.output
