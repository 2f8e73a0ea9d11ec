"""Servers on 127.0.0.1 that answer in part (tester 5, bugs 2-4): headers trickled a byte at a
time meet the minimum rate, a 206 to a request for the whole file is refused, a body that ends
short of the size its server or listing gave fails, and a broken chunked body says so in words."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from clasp_ingest.connectors import OpenOptions
from clasp_ingest.connectors.http import HttpStatusError, Target, download, open_http

from clasp_ingest.errors import ConnectorError, TransientConnectorError

BODY = bytes(range(256)) * 40  # 10240 bytes

#: What the server sends after reading a request: raw bytes, or a function of the socket.
Answer = bytes | Callable[[socket.socket], None]


@contextmanager
def raw_server(answer: Answer) -> Iterator[str]:
    """A server on 127.0.0.1 that reads a request, sends ``answer`` and closes; its base URL."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if callable(answer):
                    answer(conn)
                else:
                    conn.sendall(answer)
            except OSError:  # the client cut the connection
                pass

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()


def _get(url: str, options: OpenOptions | None = None, expected_size: int | None = None) -> bytes:
    buffer = io.BytesIO()
    target = Target(url, frozenset({"127.0.0.1"}))
    download(target, buffer, options or OpenOptions(), expected_size=expected_size)
    return buffer.getvalue()


def _head(status: str, *headers: str) -> bytes:
    return "\r\n".join([f"HTTP/1.1 {status}", *headers, "", ""]).encode()


def test_headers_trickled_fail_on_the_minimum_rate_not_the_deadline() -> None:
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(200):  # a header byte every 0.1 s: each read well within the read timeout
            conn.sendall(b"X")
            time.sleep(0.1)

    options = OpenOptions(min_rate_bytes_s=100, rate_window_s=1.0, deadline_s=6.0)
    with raw_server(trickle) as base:
        started = time.monotonic()
        with pytest.raises(ConnectorError) as info:
            _get(f"{base}/ep.mp3", options)
        seconds = time.monotonic() - started
    message = str(info.value)
    assert f"{base}/ep.mp3" in message and "minimum download rate of 100 bytes/s over 1 s" in message
    assert "headers unfinished" in message and "--min-download-rate" in message
    assert "--download-deadline" not in message
    assert 0.9 < seconds < 3.0


def test_headers_that_arrive_in_time_are_not_cut() -> None:
    def slow_but_fine(conn: socket.socket) -> None:
        head = _head("200 OK", f"Content-Length: {len(BODY)}")
        for i in range(0, len(head), 8):
            conn.sendall(head[i : i + 8])
            time.sleep(0.02)
        conn.sendall(BODY)

    with raw_server(slow_but_fine) as base:
        assert _get(f"{base}/ep.mp3", OpenOptions(min_rate_bytes_s=100, rate_window_s=1.0)) == BODY


def test_a_206_to_a_request_for_the_whole_file_is_refused(tmp_path: Path) -> None:
    part = BODY[:1000]
    answer = _head("206 Partial Content", f"Content-Range: bytes 0-999/{len(BODY)}", "Content-Length: 1000")
    with raw_server(answer + part) as base, pytest.raises(HttpStatusError) as info:
        url = f"{base}/ep1.opus"
        with open_http(Target(url, frozenset({"127.0.0.1"})), OpenOptions(temp_dir=tmp_path)):
            pass
    message = str(info.value)
    assert url in message and "answered with part of the file (bytes 0-999 of 10240)" in message
    assert "HTTP 206" in message and info.value.status == 206
    assert not isinstance(info.value, TransientConnectorError)
    assert list(tmp_path.iterdir()) == []


def test_a_206_without_content_range_is_refused() -> None:
    answer = _head("206 Partial Content", "Content-Length: 1000") + BODY[:1000]
    with raw_server(answer) as base, pytest.raises(HttpStatusError, match="part of the file, HTTP 206"):
        _get(f"{base}/ep.mp3")


def test_a_206_of_the_whole_file_is_the_file() -> None:
    whole = f"Content-Range: bytes 0-{len(BODY) - 1}/{len(BODY)}"
    with raw_server(_head("206 Partial Content", whole, f"Content-Length: {len(BODY)}") + BODY) as base:
        assert _get(f"{base}/ep.mp3") == BODY


def test_a_body_short_of_its_content_range_total_fails() -> None:
    answer = _head("200 OK", f"Content-Range: bytes 0-999/{len(BODY)}", "Content-Length: 1000")
    with raw_server(answer + BODY[:1000]) as base, pytest.raises(TransientConnectorError) as info:
        _get(f"{base}/ep.mp3")
    assert "broke off after 1000 bytes of the 10240 its Content-Range gives" in str(info.value)


def test_a_body_without_a_length_short_of_the_listed_size_fails() -> None:
    with raw_server(_head("200 OK", "Connection: close") + BODY[:4000]) as base:
        url = f"{base}/ep.mp3"
        with pytest.raises(TransientConnectorError) as info:
            _get(url, expected_size=len(BODY))
        assert url in str(info.value)
        assert "broke off after 4000 bytes of the 10240 its listing recorded" in str(info.value)
        assert _get(url, expected_size=4000) == BODY[:4000]  # the listed size: whole
        assert _get(url) == BODY[:4000]  # nothing to compare with: taken as it came


def test_a_body_with_its_own_length_is_not_held_to_the_listed_size() -> None:
    """The file may have changed since it was listed: its own complete answer is the file."""
    with raw_server(_head("200 OK", "Content-Length: 4000") + BODY[:4000]) as base:
        assert _get(f"{base}/ep.mp3", expected_size=len(BODY)) == BODY[:4000]


def test_a_broken_chunked_body_says_how_much_arrived_in_words() -> None:
    chunked = b"400\r\n" + BODY[:1024] + b"\r\n400\r\n" + BODY[:100]  # cut inside the second chunk
    answer = _head("200 OK", "Transfer-Encoding: chunked") + chunked
    with raw_server(answer) as base, pytest.raises(TransientConnectorError) as info:
        _get(f"{base}/ep.mp3")
    message = str(info.value)
    assert "the download broke off after 1124 bytes (its chunked body is cut short or malformed)" in message
    assert "IncompleteRead" not in message


def test_a_listed_url_whose_body_ends_short_of_its_head_length_fails(tmp_path: Path) -> None:
    """The connector passes the size its listing's HEAD gave on to the download: a GET whose
    body has no length of its own and ends before it is a cut download, not the file."""
    from clasp_ingest.connectors import FsspecConnector

    def serve(conn: socket.socket) -> None:
        request = conn.recv(65536)
        if request.startswith(b"HEAD"):
            conn.sendall(_head("200 OK", f"Content-Length: {len(BODY)}", 'ETag: "v1"'))
        else:
            conn.sendall(_head("200 OK", "Connection: close") + BODY[:4000])

    server = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                serve(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/ep.mp3"
        connector = FsspecConnector(url, open_options=OpenOptions(temp_dir=tmp_path))
        (ref,) = list(connector.discover())
        assert ref.metadata["size_bytes"] == len(BODY)
        cut = pytest.raises(TransientConnectorError, match="broke off after 4000 bytes of the 10240")
        with cut, connector.open(ref):
            pass
    finally:
        server.close()
