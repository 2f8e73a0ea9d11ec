"""What a server does to a document or a file on the way: a redirect moves the base of a page's
relative links, a Content-Encoding the client did not ask for is decoded within the size
limits, a Content-Disposition names a file whose URL does not. Servers on 127.0.0.1, started
here."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from clasp_ingest.connectors import FeedConnector, FsspecConnector, MediaTooLargeError, OpenOptions
from clasp_ingest.connectors.http import Target, download, fetch_page

from clasp_ingest.errors import ConnectorError, TransientConnectorError
from clasp_ingest.types import media_id_for
from tests import loopback
from tests.integration.connectors.conftest import HttpSite
from tests.integration.connectors.helpers import Episode, rss, write_tone
from tests.integration.connectors.hostile import Hostile, hostile_server

#: What ``/bomb.wav`` inflates to, from about 64 KiB on the wire.
_BOMB_BYTES = 64 * 1024 * 1024


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(bytes(_BOMB_BYTES), compresslevel=9)


class _Encoding(http.server.BaseHTTPRequestHandler):
    """``/<coding>/<name>``: the file ``name`` of ``root`` sent with ``Content-Encoding: <coding>``
    (``gzip``, ``deflate``: zlib-wrapped, ``rawdeflate`` and ``gzdeflate``: raw deflate and gzip
    sent as ``deflate``, ``br``: sent as is);
    ``/cut/<name>``: its gzip cut in half; ``/bomb.wav``: a gzip of 64 MiB of zeros;
    ``/download?id=N``: a file named only by ``Content-Disposition``."""

    root: Path

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        coding, _, name = parts.path.strip("/").partition("/")
        if parts.path == "/download":
            number = parse_qs(parts.query)["id"][0]
            disposition = f"attachment; filename=\"ignored.mp3\"; filename*=UTF-8''..%2Fepisode-{number}.wav"
            self._send((self.root / "a.wav").read_bytes(), "", [("Content-Disposition", disposition)])
        elif parts.path == "/bomb.wav":
            self._send(_bomb(), "gzip")
        else:
            self._encoded(coding, (self.root / name).read_bytes())

    def _encoded(self, coding: str, data: bytes) -> None:
        raw_deflate = zlib.compressobj(wbits=-15)
        body = {
            "gzip": lambda: gzip.compress(data),
            "cut": lambda: gzip.compress(data)[: len(gzip.compress(data)) // 2],
            "deflate": lambda: zlib.compress(data),
            "rawdeflate": lambda: raw_deflate.compress(data) + raw_deflate.flush(),
            "gzdeflate": lambda: gzip.compress(data),
            "br": lambda: data,
        }[coding]()
        self._send(body, {"cut": "gzip", "rawdeflate": "deflate", "gzdeflate": "deflate"}.get(coding, coding))

    def _send(self, body: bytes, coding: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Last-Modified", "Tue, 03 Jun 2025 09:00:00 GMT")
        self.send_header("Content-Length", str(len(body)))
        for key, value in ([("Content-Encoding", coding)] if coding else []) + (headers or []):
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET


@pytest.fixture(scope="module")
def encoding_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("enc")
    write_tone(root / "a.wav", 0.3)
    (root / "noise.wav").write_bytes(os.urandom(200_000))  # gzip makes it larger, not smaller
    (root / "podcast.rss").write_text(rss("Zipped", [Episode("One", "a.wav", 1)]))
    return root


@pytest.fixture(scope="module")
def encoding_site(encoding_root: Path) -> Iterator[str]:
    handler = type("Handler", (_Encoding,), {"root": encoding_root})
    with loopback.serving(handler) as base_url:
        yield base_url


@pytest.fixture
def moved(tmp_path: Path) -> Iterator[Hostile]:
    root = tmp_path / "moved"
    write_tone(root / "feeds" / "new" / "ep" / "s1.wav", 0.3)
    (root / "feeds" / "new" / "feed.rss").write_text(rss("Moved", [Episode("S1", "ep/s1.wav", 1)]))
    with hostile_server(root) as server:
        yield server


def _bytes(url: str, options: OpenOptions | None = None) -> bytes:
    sink = io.BytesIO()
    download(Target(url, frozenset({"127.0.0.1"})), sink, options or OpenOptions())
    return sink.getvalue()


def test_a_redirected_feeds_relative_enclosures_resolve_against_its_new_address(moved: Hostile) -> None:
    feed = FeedConnector(f"{moved.base_url}/redirect?to=/feeds/new/feed.rss")
    (ref,) = feed.discover()
    # before: '/ep/s1.wav', resolved against the URL first asked for (HTTP 404)
    assert ref.uri == f"{moved.base_url}/feeds/new/ep/s1.wav"
    with feed.open(ref) as local:  # the feed's host, the one given, stays trusted
        assert Path(local).read_bytes() == (moved.root / "feeds/new/ep/s1.wav").read_bytes()


def test_an_index_page_redirected_to_its_folder_lists_its_files(http_site: HttpSite) -> None:
    write_tone(http_site.root / "podcasts" / "ep1.wav", 0.3)
    write_tone(http_site.root / "podcasts" / "ep2.wav", 0.3)
    # http.server, nginx and Apache answer a folder without its '/' with 301 to 'podcasts/'
    refs = list(FsspecConnector(f"{http_site.base_url}/podcasts").discover())
    assert [r.uri for r in refs] == [f"{http_site.base_url}/podcasts/ep{n}.wav" for n in (1, 2)]


def test_a_page_redirected_to_another_private_host_is_still_refused(moved: Hostile, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    with hostile_server(tmp_path / "other", host="127.0.0.2") as other:
        feed = FeedConnector(f"{moved.base_url}/redirect?to={other.base_url}/feed.rss")
        with pytest.raises(
            ConnectorError, match=r"redirected to 'http://127\.0\.0\.2:\d+/feed\.rss'.*loopback"
        ):
            list(feed.discover())
        assert other.requests == []


@pytest.mark.parametrize("coding", ["gzip", "deflate", "rawdeflate", "gzdeflate"])
def test_an_encoded_body_is_decoded(encoding_site: str, coding: str, encoding_root: Path) -> None:
    expected = (encoding_root / "a.wav").read_bytes()
    assert _bytes(f"{encoding_site}/{coding}/a.wav") == expected  # before: the encoded bytes


def test_an_encoded_feed_is_read(encoding_site: str) -> None:
    (ref,) = FeedConnector(f"{encoding_site}/gzip/podcast.rss").discover()  # before: not well-formed
    assert ref.uri == f"{encoding_site}/gzip/a.wav"


def test_a_gzip_bomb_meets_the_size_limit_on_its_decoded_size(encoding_site: str) -> None:
    class Sink(io.BytesIO):
        largest = 0

        def write(self, data: Any) -> int:
            self.largest = max(self.largest, len(data))
            return super().write(data)

    sink = Sink()
    options = OpenOptions(max_bytes=1024 * 1024, chunk_bytes=64 * 1024)
    with pytest.raises(MediaTooLargeError, match=r"bomb\.wav"):
        download(Target(f"{encoding_site}/bomb.wav", frozenset({"127.0.0.1"})), sink, options)
    assert sink.tell() <= options.max_bytes and sink.largest <= options.chunk_bytes
    with pytest.raises(ConnectorError, match="larger than 2048 bytes, the most read of a feed"):
        fetch_page(Target(f"{encoding_site}/bomb.wav", frozenset({"127.0.0.1"})), OpenOptions(), 2048)


def test_an_encoded_length_is_not_the_size_limit(encoding_site: str, encoding_root: Path) -> None:
    noise = (encoding_root / "noise.wav").read_bytes()
    # the gzip of random bytes is larger than they are: its Content-Length is over the limit, the file is not
    assert _bytes(f"{encoding_site}/gzip/noise.wav", OpenOptions(max_bytes=len(noise))) == noise
    with pytest.raises(MediaTooLargeError):
        _bytes(f"{encoding_site}/gzip/noise.wav", OpenOptions(max_bytes=len(noise) - 1))


def test_encoded_bodies_that_cannot_be_decoded_name_the_url_and_reason(encoding_site: str) -> None:
    with pytest.raises(TransientConnectorError, match=r"/cut/a\.wav'.*ends inside its gzip stream"):
        _bytes(f"{encoding_site}/cut/a.wav")
    with pytest.raises(ConnectorError, match=r"/br/a\.wav'.*Content-Encoding: br.*only gzip and deflate"):
        _bytes(f"{encoding_site}/br/a.wav")


def test_an_encoded_media_url_is_ingested_as_its_decoded_file(
    encoding_site: str, encoding_root: Path
) -> None:
    connector = FsspecConnector(f"{encoding_site}/gzip/a.wav")
    (ref,) = connector.discover()
    assert "size_bytes" not in ref.metadata  # the encoded length is not the file's size
    with connector.open(ref) as local:
        assert Path(local).read_bytes() == (encoding_root / "a.wav").read_bytes()


def test_a_download_endpoint_is_titled_by_its_content_disposition(encoding_site: str) -> None:
    url = f"{encoding_site}/download?id=7"
    (ref,) = FsspecConnector(url).discover()
    assert (ref.title, ref.metadata["filename"]) == ("episode-7", "episode-7.wav")  # before: 'download'
    assert (ref.uri, ref.media_id) == (url, media_id_for(url))  # the item is still the URL
    # a name in the URL path is kept
    (named,) = FsspecConnector(f"{encoding_site}/gzip/a.wav").discover()
    assert named.title == "a"
