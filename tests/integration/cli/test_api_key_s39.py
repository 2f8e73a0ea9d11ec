"""``--api-key`` reaches the Qdrant server from every command that opens a store (``ingest``
had none: only ``CLASP_QDRANT_API_KEY``), ``--flow`` included, and the key given to one run
does not stay in the process's environment.

The server is a loopback recorder that refuses every request (401, as Qdrant does without the
right key): what is tested is the request the command sends, and the one error line after.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from tests.loopback import serving

SAMPLE = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_en.opus"
KEY = "k3y-for-this-test-only"


class _Refusing(http.server.BaseHTTPRequestHandler):
    keys: ClassVar[list[str | None]] = []
    lock = threading.Lock()

    def _refuse(self) -> None:
        with self.lock:
            self.keys.append(self.headers.get("api-key"))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b'{"status":{"error":"Must provide an API key or an Authorization bearer token"},"time":0.0}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _refuse

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def qdrant_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _Refusing.keys = []
    for name in ("CLASP_QDRANT_API_KEY", "CLASP_QDRANT_URL", "CLASP_QDRANT_PATH", "CLASP_QDRANT_GRPC"):
        monkeypatch.delenv(name, raising=False)
    with serving(_Refusing) as url:
        yield url


@pytest.mark.integration
@pytest.mark.parametrize(
    "command",
    [["ingest", str(SAMPLE)], ["ingest", "--flow", str(SAMPLE)], ["search", "hello"], ["store", "info"]],
    ids=["ingest", "ingest-flow", "search", "store-info"],
)
def test_the_api_key_option_reaches_the_server(command: list[str], qdrant_url: str) -> None:
    result = CliRunner().invoke(app, [*command, "--qdrant-url", qdrant_url, "--api-key", KEY])
    assert result.exit_code == 1, result.output
    assert _Refusing.keys and set(_Refusing.keys) == {KEY}, _Refusing.keys
    assert qdrant_url in result.stderr and KEY not in result.output + result.stderr
    assert "UserWarning" not in result.stderr  # qdrant-client's raw warning: loopback is your own
    assert "CLASP_QDRANT_API_KEY" not in os.environ  # the run's key is not left behind
