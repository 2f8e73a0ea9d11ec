"""A loopback HTTP proxy that holds ffmpeg to the connectors' address rules.

A span of an http(s) source is cut by ffmpeg reading the URL itself (it seeks with byte
ranges instead of downloading the whole file). ffmpeg follows redirects and resolves hosts on
its own, so a server that redirects a stored URL elsewhere, or a name that now resolves to
another address, would reach any host this machine can: a cloud metadata service, a LAN
admin page. ffmpeg is therefore given ``-http_proxy`` pointing at a :class:`GuardedProxy`
on 127.0.0.1, which makes each connection itself: the source's own host as the ingest
allowed it (:mod:`clasp_ingest.connectors.addresses`: the host you give is trusted), every
other host only at public addresses unless private hosts are allowed. Plain http requests
are forwarded (``Connection: close``, one request per connection); https goes through
``CONNECT`` to the checked address, the TLS end to end between ffmpeg and the server.
A refused request is answered 403 and kept in :attr:`GuardedProxy.refused`; a server that
cannot be reached, 502, and why in :attr:`GuardedProxy.unreachable` (ffmpeg itself only sees
the proxy answer, and said "End of file"). A byte-range
request that a plain-http server answers with the whole file (200, not 206: ``python -m
http.server``) is cut off and noted in :attr:`GuardedProxy.ranges_ignored`, so the caller reads
the file from its start (ffmpeg's seeks in a WAV from such a server cut the wrong audio).
"""

from __future__ import annotations

import os
import selectors
import socket
import socketserver
import threading
from types import TracebackType
from urllib.parse import urlsplit

from clasp_ingest.connectors.addresses import BlockedAddressError
from clasp_ingest.connectors.http import connect_checked
from pydantic import TypeAdapter, ValidationError

__all__ = ["GuardedProxy", "private_hosts_allowed"]

_HEAD_LIMIT = 64 * 1024
_CHUNK = 64 * 1024
_HOP_HEADERS = ("connection", "proxy-connection", "proxy-authorization", "keep-alive")


def private_hosts_allowed() -> bool:
    """``CLASP_ALLOW_PRIVATE_HOSTS`` read as the settings read a boolean (1/0, true/false, yes/no,
    on/off, t/f, y/n); unset, empty or unreadable: False."""
    value = os.environ.get("CLASP_ALLOW_PRIVATE_HOSTS", "").strip()
    try:
        return bool(value) and TypeAdapter(bool).validate_python(value)
    except ValidationError:
        return False


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    guard: GuardedProxy


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(self.server.guard.timeout_s)
        try:
            head = _read_head(client)
            if head is None:
                return
            method, target, version, headers = head
            connect, parts = method.upper() == "CONNECT", urlsplit(target)
            try:
                if connect:
                    host, _, port = target.rpartition(":")
                    upstream = self.server.guard.connect(host.strip("[]"), int(port or 443))
                elif parts.scheme == "http" and parts.hostname:
                    upstream = self.server.guard.connect(parts.hostname, parts.port or 80)
                else:
                    upstream = None
            except OSError:  # noted in guard.unreachable
                return _answer(client, version, "502 Bad Gateway", _UNREACHABLE)
            if upstream is None:
                return _answer(client, version, "403 Forbidden", _REFUSED)
            with upstream:  # closed on every path from here
                seeking = False
                if connect:
                    client.sendall(f"{version} 200 Connection established\r\n\r\n".encode("latin-1"))
                else:
                    path = parts.path or "/"
                    kept = [
                        line for line in headers if line.split(":", 1)[0].strip().lower() not in _HOP_HEADERS
                    ]
                    request = [f"{method} {path}{'?' + parts.query if parts.query else ''} {version}", *kept]
                    upstream.sendall(("\r\n".join([*request, "Connection: close", "", ""])).encode("latin-1"))
                    seeking = _asks_range(kept) and not self.server.guard.ranges_ignored
                if seeking and not self._range_honoured(client, upstream):
                    return
                _pipe(client, upstream, self.server.guard.timeout_s)
        except (OSError, ValueError):
            return  # ffmpeg sees the connection end and reports the read error

    def _range_honoured(self, client: socket.socket, upstream: socket.socket) -> bool:
        """Pass on the start of the answer to a byte-range request (ffmpeg sends one to learn
        whether it may seek), unless the server ignored the range: after its 200, ffmpeg's
        seeks in a WAV cut the span from the wrong place (and its words were stored). Then the
        connection ends and :attr:`GuardedProxy.ranges_ignored` is set: the caller reads the
        file from its start, and this proxy passes every answer on from then."""
        first = b""
        while b"\r\n" not in first and len(first) < _HEAD_LIMIT:  # the whole status line
            chunk = upstream.recv(_CHUNK)
            if not chunk:
                break
            first += chunk
        status = first.split(b"\r\n", 1)[0].split(b" ")
        if len(status) > 1 and status[1] == b"200":
            self.server.guard.ranges_ignored = True
            return False
        client.sendall(first)
        return True


def _asks_range(headers: list[str]) -> bool:
    """Whether a request asks for a byte range (``Range: bytes=...``)."""
    for line in headers:
        name, _, value = line.partition(":")
        if name.strip().lower() == "range" and value.strip().lower().startswith("bytes="):
            return True
    return False


def _read_head(client: socket.socket) -> tuple[str, str, str, list[str]] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk or len(data) > _HEAD_LIMIT:
            return None
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    first, *headers = head.split("\r\n")
    method, target, version = first.split(" ", 2)
    return method, target, version, headers


_REFUSED = b"refused by clasp-ingest: not an address this source may lead to\n"
_UNREACHABLE = b"clasp-ingest: the server cannot be reached\n"


def _answer(client: socket.socket, version: str, status: str, body: bytes) -> None:
    head = f"{version} {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    client.sendall(head.encode("latin-1") + body)


def _pipe(one: socket.socket, other: socket.socket, timeout_s: float) -> None:
    """Copy bytes both ways until either side closes or nothing moves for ``timeout_s``."""
    with selectors.DefaultSelector() as selector:
        selector.register(one, selectors.EVENT_READ, other)
        selector.register(other, selectors.EVENT_READ, one)
        while True:
            ready = selector.select(timeout_s)
            if not ready:
                return
            for key, _ in ready:
                data = key.fileobj.recv(_CHUNK)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


class GuardedProxy:
    """``with GuardedProxy(host) as proxy_url:`` a proxy on 127.0.0.1 for ffmpeg's reads.

    ``host`` (one the user gave; None: none) is reached at any address; any other host must
    resolve to public addresses only, unless ``allow_private`` (default:
    ``CLASP_ALLOW_PRIVATE_HOSTS``)."""

    def __init__(
        self, host: str | None, *, allow_private: bool | None = None, timeout_s: float = 60.0
    ) -> None:
        self.trusted = frozenset({host.lower()}) if host else frozenset()
        self.allow_private = private_hosts_allowed() if allow_private is None else allow_private
        self.timeout_s = timeout_s
        self.refused: list[BlockedAddressError] = []
        self.unreachable: list[str] = []  # "host:port cannot be reached (why)", as the ingest says it
        self.ranges_ignored = False  # a plain-http server answered a seek with the whole file
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def connect(self, host: str, port: int) -> socket.socket | None:
        """A connection to ``host:port`` at an allowed address, or None (the refusal in
        ``refused``); ``OSError`` when it cannot be reached (why in ``unreachable``)."""
        check = not self.allow_private and host.lower() not in self.trusted
        try:
            return connect_checked((host, port), self.timeout_s, check)
        except BlockedAddressError as exc:
            self.refused.append(exc)
            return None
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
            self.unreachable.append(f"{host}:{port} cannot be reached ({why})")
            raise

    def __enter__(self) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.guard = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="clasp-proxy", daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{server.server_address[1]}"

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __repr__(self) -> str:
        return f"GuardedProxy(trusted={sorted(self.trusted)}, allow_private={self.allow_private})"
