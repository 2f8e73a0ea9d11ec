"""URLs and servers that broke listing for everyone (session 22's findings): an odd character
in a URL, a link without version headers, a HEAD refused to a signed URL, an extensionless
media URL, cut connections and slow headers. Each item fails alone, named, or works."""

from __future__ import annotations

import http.server
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from clasp_ingest.connectors import FsspecConnector, OpenOptions, connector_for
from clasp_ingest.connectors.base import LISTING_ERROR
from clasp_ingest.connectors.http import Target, fetch_page, head

from clasp_ingest.errors import ConnectorError, MediaDecodeError, TransientConnectorError
from clasp_ingest.pipeline import discover_new, is_transient
from clasp_ingest.store import open_store
from clasp_ingest.types import MediaRef
from tests import loopback
from tests.integration.connectors.helpers import write_tone

pytestmark = pytest.mark.integration

_LAST_MODIFIED = "Tue, 03 Jun 2025 09:00:00 GMT"


class _Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base_url = ""
        self.requests: list[str] = []
        self.failures_left: dict[str, int] = {}


class _Handler(http.server.BaseHTTPRequestHandler):
    site: _Site
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        self.site.requests.append(f"{self.command} {self.path}")
        path = unquote(urlsplit(self.path).path)
        name = path.rsplit("/", 1)[-1]
        left = self.site.failures_left.get(path, 0)
        if left:
            self.site.failures_left[path] = left - 1
            self._status(503)
        elif path == "/head-403.wav":  # a presigned GET URL answers HEAD with 403
            self._file("a.wav", body) if body else self._status(403)
        elif path == "/no-version.wav":
            self._file("a.wav", body, version=False)
        elif path == "/always-503.wav":
            self._status(503)
        elif path == "/cut.wav":
            self._file("a.wav", body, cut=True)
        elif path == "/slow-headers.wav":
            self._slow_headers()
        elif path == "/download":
            self._file("a.wav", body)
        elif path == "/blob":
            self._file("a.wav", body, content_type="application/octet-stream")
        elif name.endswith(".html"):
            self._send((self.site.root / name).read_bytes(), "text/html", body)
        else:
            self._file(name, body)

    def _status(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _file(
        self,
        name: str,
        body: bool,
        *,
        version: bool = True,
        cut: bool = False,
        content_type: str = "audio/wav",
    ) -> None:
        path = self.site.root / name
        if not path.is_file():
            self._status(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if version:
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", _LAST_MODIFIED)
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(data[: len(data) // 2] if cut else data)
            if cut:
                self.close_connection = True

    def _send(self, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _slow_headers(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        try:
            for byte in b"Content-Type: audio/wav\r\nContent-Length: 10\r\n\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass
        self.close_connection = True


@pytest.fixture
def site(tmp_path: Path) -> Iterator[_Site]:
    root = tmp_path / "site"
    for name in ("a.wav", "b.wav", "café talk.wav"):
        write_tone(root / name, 0.3)
    state = _Site(root)
    handler = type("Handler", (_Handler,), {"site": state})
    with loopback.serving(handler) as state.base_url:
        yield state


def _page(site: _Site, name: str, *links: str) -> str:
    (site.root / name).write_text("".join(f'<a href="{link}">{link}</a>' for link in links))
    return f"{site.base_url}/{name}"


def _trusted(url: str) -> Target:
    """A URL the user typed (its host trusted as given, as the connectors do)."""
    return Target(url, frozenset({"127.0.0.1"}))


def _listed(url: str) -> list[MediaRef]:
    return list(connector_for(url, open_options=OpenOptions(deadline_s=10)).discover())


def test_non_ascii_and_spaces_in_urls_are_percent_encoded(site: _Site, tmp_path: Path) -> None:
    url = f"{site.base_url}/café talk.wav?token=s3cr3t"
    (ref,) = _listed(url)
    assert "s3cr3t" not in ref.uri and ref.metadata["filename"] == "café talk.wav"
    with FsspecConnector(url).open(ref) as local:
        assert Path(local).read_bytes() == (site.root / "café talk.wav").read_bytes()
    assert "GET /caf%C3%A9%20talk.wav?token=s3cr3t" in site.requests
    page = _page(site, "unicode.html", "/café talk.wav", "/b.wav")
    assert sorted(r.metadata["filename"] for r in _listed(page)) == ["b.wav", "café talk.wav"]


def test_a_link_that_cannot_be_versioned_or_reached_fails_alone(site: _Site, tmp_path: Path) -> None:
    page = _page(site, "links.html", "/a.wav", "/no-version.wav", "/always-503.wav")
    refs = {r.metadata.get("filename", r.uri.rsplit("/", 1)[-1]): r for r in _listed(page)}
    assert LISTING_ERROR not in refs["a.wav"].metadata
    assert "reports no ETag" in refs["no-version.wav"].metadata[LISTING_ERROR]
    assert "HTTP 503" in refs["always-503.wav"].metadata[LISTING_ERROR]
    with open_store(path=tmp_path / "q") as store:
        todo, known, errors = discover_new([connector_for(page)], store)
    assert [ref.uri for _, ref in todo] == [f"{site.base_url}/a.wav"] and errors == []
    assert sorted((r.status, r.uri.rsplit("/", 1)[-1]) for r in known) == [
        ("failed", "always-503.wav"),
        ("failed", "no-version.wav"),
    ]


def test_a_transient_listing_failure_is_tried_again(site: _Site, tmp_path: Path) -> None:
    site.failures_left["/b.wav"] = 1
    url = f"{site.base_url}/b.wav"
    with open_store(path=tmp_path / "q") as store:
        todo, _, errors = discover_new([connector_for(url)], store, retries=1, retry_delay_s=0.01)
        assert [ref.uri for _, ref in todo] == [url] and errors == []
        site.failures_left["/b.wav"] = 2
        todo, _, errors = discover_new([connector_for(url)], store, retries=1, retry_delay_s=0.01)
    assert todo == [] and "HTTP 503" in errors[0][1]


def test_head_refused_falls_back_to_get(site: _Site) -> None:
    info = head(_trusted(f"{site.base_url}/head-403.wav"), OpenOptions())
    assert info["type"] == "audio/wav" and info["Last-Modified"] == _LAST_MODIFIED
    assert site.requests == ["HEAD /head-403.wav", "GET /head-403.wav"]


def test_an_extensionless_media_url_is_media_by_its_content_type(site: _Site) -> None:
    (ref,) = _listed(f"{site.base_url}/download?id=7")
    assert ref.uri == f"{site.base_url}/download?id=7" and LISTING_ERROR not in ref.metadata
    (blob,) = _listed(f"{site.base_url}/blob?id=8")  # what many download endpoints send
    assert LISTING_ERROR not in blob.metadata


def test_a_malformed_link_fails_alone_and_an_unparsable_one_is_skipped(site: _Site) -> None:
    page = _page(site, "odd.html", "/a.wav", "http://127.0.0.1:99999/bad.wav", "http://[::1/x.wav")
    refs = {r.uri: r for r in _listed(page)}  # nothing is sent to port 99999: it is refused as invalid
    assert LISTING_ERROR not in refs[f"{site.base_url}/a.wav"].metadata
    assert "is not a valid URL" in refs["http://127.0.0.1:99999/bad.wav"].metadata[LISTING_ERROR]
    assert len(refs) == 2


def test_a_media_url_in_a_feeds_folder_is_media(site: _Site) -> None:
    (site.root / "ep.wav").write_bytes((site.root / "a.wav").read_bytes())
    connector = connector_for(f"{site.base_url}/feeds/ep.wav")
    assert isinstance(connector, FsspecConnector)


def test_a_fragment_is_not_part_of_the_item(site: _Site) -> None:
    (ref,) = _listed(f"{site.base_url}/a.wav#intro")
    (same,) = _listed(f"{site.base_url}/a.wav")
    assert ref.uri == same.uri and ref.media_id == same.media_id


def test_a_body_cut_short_is_transient(site: _Site, tmp_path: Path) -> None:
    url = f"{site.base_url}/cut.wav"
    (ref,) = _listed(url)
    connector = FsspecConnector(url, open_options=OpenOptions(temp_dir=tmp_path))
    with pytest.raises(TransientConnectorError, match="short of its Content-Length"), connector.open(ref):
        pass
    assert list(tmp_path.glob("clasp-dl-*")) == []


def test_a_deadline_hit_during_the_headers_says_so(site: _Site) -> None:
    with pytest.raises(ConnectorError, match="download deadline") as info:
        head(_trusted(f"{site.base_url}/slow-headers.wav"), OpenOptions(deadline_s=1.0))
    assert "ETag" not in str(info.value)


def test_a_page_over_its_limit_names_the_right_remedy(site: _Site) -> None:
    page = _page(site, "big.html", *(f"/{i}.wav" for i in range(100)))
    with pytest.raises(ConnectorError, match="the most read of a feed or index page") as info:
        fetch_page(_trusted(page), OpenOptions(), 1000)
    assert "--max-bytes" not in str(info.value) and not is_transient(info.value)


def test_a_span_of_a_url_changed_on_its_server_is_not_cut(site: _Site) -> None:
    from clasp_ingest.retriever import Span, audio

    url = f"{site.base_url}/b.wav"
    (ref,) = _listed(url)
    span = Span(ref.media_id, url, "b", 0.0, 0.2, 0.5, extra={"version": ref.fingerprint})
    audio.check_unchanged(span)  # as ingested: fine
    (site.root / "b.wav").write_bytes((site.root / "a.wav").read_bytes() + b"\0" * 100)  # other audio
    audio.check_unchanged(span)  # its version is remembered for a minute: no request per span
    audio._REMOTE_CHECKED.clear()
    with pytest.raises(
        MediaDecodeError, match=r"changed on its server since it was ingested.*ingest it again"
    ):
        audio.check_unchanged(span)
    assert sum(r == "HEAD /b.wav" for r in site.requests) == 3  # the listing's, and two checks
