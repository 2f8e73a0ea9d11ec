"""Local HTTP servers for the fault suite, on loopback addresses only.

:class:`MediaServer` serves registered files with an ETag (HEAD and GET; the query string is
ignored, as an object store ignores it after checking a signature) in one of three ways: whole,
trickled (one byte every ``trickle_interval_s``), or stalled (headers, then nothing). Any other
path is a 404. Every request is recorded, so a test can tell that a host was never contacted.
:func:`closed_port` gives a loopback port nothing listens on (a Qdrant that is down).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Literal
from urllib.parse import urlsplit

from tests.loopback import LoopbackServer

__all__ = ["MediaServer", "Served", "Site", "closed_port", "publish"]

Mode = Literal["whole", "trickle", "stall"]


@dataclass(frozen=True)
class Served:
    """One file the server answers with."""

    body: bytes
    mode: Mode = "whole"
    content_type: str = "application/octet-stream"

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


class MediaServer:
    """A threaded HTTP server on ``host`` (a loopback address), port chosen by the OS."""

    def __init__(self, host: str = "127.0.0.1", *, trickle_interval_s: float = 1.0) -> None:
        self.files: dict[str, Served] = {}
        self.requests: list[tuple[str, str]] = []
        self.trickle_interval_s = trickle_interval_s
        self.stopping = threading.Event()
        self._httpd = LoopbackServer((host, 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fault-http", daemon=True)

    @property
    def base(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes, mode: Mode = "whole", content_type: str = "") -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        self.files[path] = Served(body, mode, content_type or _guess_type(path))
        return self.url(path)

    def requested(self, path: str, method: str = "GET") -> bool:
        return (method, path) in self.requests

    def wait_for(self, path: str, method: str = "GET", timeout_s: float = 60.0) -> bool:
        """Wait until a ``method`` request for ``path`` has arrived."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.requested(path, method):
                return True
            time.sleep(0.05)
        return False

    def __enter__(self) -> MediaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _guess_type(path: str) -> str:
    suffix = path.rsplit(".", 1)[-1].lower()
    types = {"opus": "audio/ogg", "mp3": "audio/mpeg", "wav": "audio/wav", "rss": "application/rss+xml"}
    return types.get(suffix, "application/octet-stream")


def _handler_for(server: MediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            path = urlsplit(self.path).path
            server.requests.append((self.command, path))
            served = server.files.get(path)
            if served is None:
                self.send_error(404, "not found")
                return
            self.send_response(200)
            self.send_header("Content-Type", served.content_type)
            self.send_header("Content-Length", str(len(served.body)))
            self.send_header("ETag", served.etag)
            self.end_headers()
            if body:
                self._send_body(served)

        def _send_body(self, served: Served) -> None:
            try:
                if served.mode == "whole":
                    self.wfile.write(served.body)
                elif served.mode == "trickle":
                    self._trickle(served.body)
                else:
                    self.wfile.flush()
                    server.stopping.wait()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _trickle(self, data: bytes) -> None:
            for offset in range(len(data)):
                self.wfile.write(data[offset : offset + 1])
                self.wfile.flush()
                if server.stopping.wait(server.trickle_interval_s):
                    return

    return Handler


def closed_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that was just bound and closed again: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class Site:
    """The URLs of the fault suite's remote inputs (see :func:`publish`)."""

    good: str
    missing: str
    trickle: str
    stall: str
    signed: str
    secrets: tuple[str, str]
    broken_feed: str
    broken_enclosure: str
    hostile_feed: str
    hostile_enclosures: tuple[str, ...]
    other_host_path: str
    server: MediaServer
    other: MediaServer


SIGNATURE = "f00dfacecafe5ec12e7511a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
CREDENTIAL = "AKIAFAULTSUITE0SECRET/20260101/us-east-1/s3/aws4_request"


def publish(server: MediaServer, other: MediaServer, seeds: dict[str, bytes], local_audio: str) -> Site:
    """Serve the remote corpus: episodes, slow sources, a signed URL and two feeds.

    ``other`` stands for another private host (127.0.0.2) that a feed points at;
    ``local_audio`` is a ``file://`` URI of a real audio file that a hostile feed names.
    """
    from tests.integration.connectors.helpers import Episode, rss

    good = server.add("/ep/good.opus", seeds["es"])
    broken = server.add("/ep/broken.mp3", b"<html>gateway error</html>\n" * 64, content_type="audio/mpeg")
    other_path = "/ep/elsewhere.opus"
    elsewhere = other.add(other_path, seeds["de"])
    signed = server.add("/signed/talk.opus", seeds["de"])
    query = f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}&X-Amz-Signature={SIGNATURE}"
    hostile = ("file:///etc/passwd", local_audio, elsewhere)
    fine = Episode("fine", good, len(seeds["es"]), mime="audio/ogg")
    broken_feed = rss("Broken show", [fine, Episode("cut", broken, 1792, mime="audio/mpeg")])
    evil = [Episode(f"evil {n}", url, 1000, mime="audio/mpeg") for n, url in enumerate(hostile)]
    hostile_feed = rss("Hostile show", [fine, *evil])
    return Site(
        good=good,
        missing=server.url("/ep/missing.opus"),
        trickle=server.add("/slow/trickle.opus", seeds["de"], mode="trickle"),
        stall=server.add("/slow/stall.opus", seeds["de"], mode="stall"),
        signed=signed + query,
        secrets=(SIGNATURE, CREDENTIAL.split("/", 1)[0]),
        broken_feed=server.add("/feeds/broken.rss", broken_feed.encode()),
        broken_enclosure=broken,
        hostile_feed=server.add("/feeds/hostile.rss", hostile_feed.encode()),
        hostile_enclosures=hostile,
        other_host_path=other_path,
        server=server,
        other=other,
    )
