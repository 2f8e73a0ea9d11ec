"""Decoding from URLs: a real HTTP server on loopback, and one that stalls mid-stream."""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.media import DecodeOptions, decode_audio, segment_media
from tests import loopback
from tests.fixtures_audio import SENTENCES, SpokenTrack, build_track, convert


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SpokenTrack, Path]]:
    folder = tmp_path_factory.mktemp("served")
    track = build_track(SENTENCES[:3], folder / "talk.wav", pauses=[0.9])
    mp3 = convert(track.path, folder / "talk.mp3", "-b:a", "64k")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with loopback.serving(handler) as base_url:
        yield base_url, track, mp3


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_source_gives_the_same_segments(served: tuple[str, SpokenTrack, Path]) -> None:
    base, _, mp3 = served
    local = [(s.segment.start_s, s.segment.end_s) for s in segment_media(mp3)]
    remote = [(s.segment.start_s, s.segment.end_s) for s in segment_media(f"{base}/{mp3.name}")]
    assert len(local) == 3 and remote == local


def test_http_404_names_the_url(served: tuple[str, SpokenTrack, Path]) -> None:
    url = f"{served[0]}/missing.mp3"
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(url)
    assert url in str(info.value) and "404" in info.value.stderr_tail


@pytest.fixture
def stalling_url(served: tuple[str, SpokenTrack, Path]) -> Iterator[str]:
    """A server that sends headers and 4 KB of MP3, then goes silent with the socket open."""
    head = served[2].read_bytes()[:4096]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 10000000\r\n\r\n" + head
            )
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/stalled.mp3"
    listener.close()
    for conn in held:
        conn.close()


def test_stalled_http_stream_times_out(stalling_url: str) -> None:
    started = time.monotonic()
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(stalling_url, DecodeOptions(read_timeout_s=2.0))
    assert stalling_url in str(info.value)
    assert time.monotonic() - started < 15
