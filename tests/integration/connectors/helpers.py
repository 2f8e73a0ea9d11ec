"""Fixture builders shared by the connector and flow tests: tones and RSS documents."""

from __future__ import annotations

import http.server
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

from tests import loopback


def write_tone(path: Path, seconds: float = 0.5, freq: float = 440.0) -> Path:
    """A short 16 kHz wav (content only matters as bytes here)."""
    t = np.arange(int(16000 * seconds), dtype=np.float32) / 16000
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), 16000)
    return path


@dataclass(frozen=True)
class Episode:
    title: str
    url: str
    length: int
    published: str = "Tue, 03 Jun 2025 09:00:00 GMT"
    mime: str = "audio/wav"
    guid: str = ""


def rss(feed_title: str, episodes: Sequence[Episode], language: str | None = None) -> str:
    """An RSS 2.0 podcast document with one enclosure per episode (and ``<language>``, if given)."""
    items = "".join(
        f"<item><title>{escape(e.title)}</title><guid>{escape(e.guid or e.url)}</guid>"
        f"<pubDate>{e.published}</pubDate>"
        f'<enclosure url="{escape(e.url)}" length="{e.length}" type="{e.mime}"/></item>'
        for e in episodes
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{escape(feed_title)}</title><link>http://example.invalid/</link>"
        f"<description>test</description>"
        f"{f'<language>{escape(language)}</language>' if language else ''}{items}</channel></rss>"
    )


@dataclass
class Site:
    """A loopback server's pages (feeds and media by path) and what it was asked: each
    request's path, headers, status and body bytes sent. It answers conditional GETs
    (``If-None-Match``, ``If-Modified-Since``) unless ``honours`` is False."""

    # path -> body, ETag, Last-Modified
    pages: dict[str, tuple[bytes, str | None, str | None]] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)  # path -> where it redirects
    honours: bool = True
    always_304: bool = False  # a broken server
    asked: list[tuple[str, dict[str, str], int, int]] = field(default_factory=list)
    base_url: str = ""

    def put(
        self, path: str, body: str | bytes, *, etag: str | None = None, modified: str | None = None
    ) -> None:
        self.pages[path] = (body.encode() if isinstance(body, str) else body, etag, modified)

    def statuses(self, path: str) -> list[int]:
        return [status for asked, _, status, _ in self.asked if asked == path]


class _SiteHandler(http.server.BaseHTTPRequestHandler):
    site: Site

    def do_GET(self) -> None:
        site, headers = self.site, dict(self.headers.items())
        if self.path in site.moved:
            self._answer(302, b"", {"Location": site.moved[self.path]}, headers)
        elif site.always_304:
            self._answer(304, b"", {}, headers)
        elif self.path not in site.pages:
            self._answer(404, b"", {}, headers)
        else:
            body, etag, modified = site.pages[self.path]
            validators = {k: v for k, v in (("ETag", etag), ("Last-Modified", modified)) if v}
            status = 304 if site.honours and _unchanged(headers, etag, modified) else 200
            self._answer(status, b"" if status == 304 else body, validators, headers)

    def _answer(self, status: int, body: bytes, extra: dict[str, str], asked: dict[str, str]) -> None:
        self.site.asked.append((self.path, asked, status, len(body)))
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        if status != 304:
            kind = "application/rss+xml" if self.path.endswith(".rss") else "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _unchanged(asked: dict[str, str], etag: str | None, modified: str | None) -> bool:
    if "If-None-Match" in asked:  # RFC 9110: If-Modified-Since is ignored beside it
        return etag is not None and asked["If-None-Match"] == etag
    if "If-Modified-Since" in asked and modified:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(asked["If-Modified-Since"])
    return False


@contextmanager
def serving() -> Iterator[Site]:
    """A :class:`Site` served on 127.0.0.1 (a port of its own) while the block runs."""
    state = Site()
    handler = type("Handler", (_SiteHandler,), {"site": state})
    with loopback.serving(handler) as state.base_url:
        yield state
