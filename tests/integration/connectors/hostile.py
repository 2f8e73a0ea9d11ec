"""A hostile or faulty HTTP server on a loopback address, started by the tests themselves.

Paths: ``/trickle/<name>`` sends headers, then one byte every ``trickle_s``; ``/stall/<name>``
sends headers and nothing more; ``/mute/<name>`` never answers at all; ``/redirect?to=URL``
answers 302; ``/signed/<name>`` serves a file only with an ``X-Amz-Signature`` in the query;
anything else is a file of ``root``. HEAD answers at once. Every request line is recorded.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests import loopback


@dataclass
class Hostile:
    base_url: str
    root: Path
    trickle_s: float = 0.2
    requests: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    got_body_request: threading.Event = field(default_factory=threading.Event)


class _Handler(http.server.SimpleHTTPRequestHandler):
    state: Hostile

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _headers(self, length: int = 100_000) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(length))
        self.send_header("Last-Modified", "Tue, 03 Jun 2025 09:00:00 GMT")
        self.end_headers()

    def do_HEAD(self) -> None:
        self.state.requests.append(f"HEAD {self.path}")
        path = urlsplit(self.path).path
        if path.startswith(("/trickle/", "/stall/", "/signed/")):
            self._headers()
        elif path.startswith("/mute/"):
            self.state.stop.wait()
        else:
            super().do_HEAD()

    def do_GET(self) -> None:
        self.state.requests.append(f"GET {self.path}")
        parts = urlsplit(self.path)
        self.state.got_body_request.set()
        if parts.path.startswith("/trickle/"):
            self._trickle()
        elif parts.path.startswith(("/stall/", "/mute/")):
            if parts.path.startswith("/stall/"):
                self._headers()
                self.wfile.flush()
            self.state.stop.wait()
        elif parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path.startswith("/signed/"):
            self._signed(parts.path.removeprefix("/signed/"), parse_qs(parts.query))
        else:
            super().do_GET()

    def _trickle(self) -> None:
        self._headers()
        try:
            while not self.state.stop.is_set():
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(self.state.trickle_s)
        except OSError:
            pass

    def _signed(self, name: str, query: dict[str, list[str]]) -> None:
        if "X-Amz-Signature" not in query:
            self.send_error(403, "signature required")
            return
        if not (self.state.root / name).is_file():
            self.send_error(404)
            return
        data = (self.state.root / name).read_bytes()
        self._headers(len(data))
        self.wfile.write(data)


@contextmanager
def hostile_server(root: Path, host: str = "127.0.0.1", trickle_s: float = 0.2) -> Iterator[Hostile]:
    """Serve ``root`` (and the hostile paths) on ``host`` until the context exits."""
    state = Hostile(base_url="", root=root, trickle_s=trickle_s)
    handler = type("Handler", (_Handler,), {"state": state})

    def make(*args: Any, **kwargs: Any) -> _Handler:
        return handler(*args, directory=str(root), **kwargs)

    with loopback.serving(make, host) as state.base_url:
        try:
            yield state
        finally:
            state.stop.set()  # trickling answers end before the server shuts down
