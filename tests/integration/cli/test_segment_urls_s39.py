"""``segment URL`` downloads as ``ingest`` does: ffmpeg opened the URL itself, so a redirect or
an HLS playlist led it to any host (a reviewer's 127.0.0.2 server logged the requests), with no
size or time limit, and an error printed the URL's password and token. Only loopback servers
this test starts are contacted; 127.0.0.2 stands for another private host."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from clasp_ingest.cli import app
from tests.loopback import serving

SAMPLE = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples" / "demo_en.opus"


class _Site(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []
    other = ""  # the other host's base URL

    def do_GET(self) -> None:
        self.seen.append(f"{self.server.server_address[0]} {self.path}")
        if self.path == "/talk.opus":
            self._send(200, SAMPLE.read_bytes(), "audio/ogg")
        elif self.path == "/redirect.wav":
            self.send_response(302)
            self.send_header("Location", f"{self.other}/b.wav")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/list.m3u8":
            self._send(
                200, f"#EXTM3U\n#EXTINF:5,\n{self.other}/a.wav\n".encode(), "application/vnd.apple.mpegurl"
            )
        else:
            self._send(404, b"no", "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.delenv("CLASP_ALLOW_PRIVATE_HOSTS", raising=False)
    _Site.seen = []
    with serving(_Site, "127.0.0.2") as other, serving(_Site) as base:
        _Site.other = other
        yield base


def _segment(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["segment", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.integration
def test_a_url_is_downloaded_then_segmented(site: str) -> None:
    code, out, err = _segment(f"{site}/talk.opus", "--json")
    assert code == 0, err
    assert len(json.loads(out)) >= 5


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/redirect.wav", "/list.m3u8"])
def test_a_url_cannot_lead_to_another_private_host(site: str, path: str) -> None:
    code, _, err = _segment(f"{site}{path}")
    assert code == 1 and err.startswith("error: "), err
    assert not [hit for hit in _Site.seen if hit.startswith("127.0.0.2 ")], _Site.seen


@pytest.mark.integration
def test_a_urls_password_and_token_are_not_shown(site: str) -> None:
    url = site.replace("http://", "http://reader:pw-s39@") + "/gone.wav?token=tok-s39"
    code, out, err = _segment(url)
    assert code == 1 and "HTTP 404" in err, err
    assert "pw-s39" not in out + err and "tok-s39" not in out + err
