"""``clasp-ingest ingest`` of http URLs from a loopback http.server, as a user runs it (the installed
script, the tiny random model, a store under ``tmp_path``): spellings of one file that RFC 3986
calls equivalent are one item; a URL that cannot be requested fails alone, saying what is wrong;
a damaged download's warning names its URL (redacted), not its temporary file."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from clasp_ingest.connectors import FsspecConnector, OpenOptions
from clasp_ingest.connectors.http import Target, head

from clasp_ingest.errors import ConnectorError
from tests import loopback
from tests.fixtures_audio import convert, truncate
from tests.integration.cli_env import cli_env
from tests.integration.connectors.conftest import HttpSite

SAMPLES = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"
CLI = str(Path(sys.executable).with_name("clasp-ingest"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def _cli(env: dict[str, str], *args: str) -> tuple[int, Any, str]:
    run = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    return run.returncode, json.loads(run.stdout or "null"), run.stderr


def test_spellings_of_one_file_ingest_as_one_item_and_a_broken_url_fails_alone(
    http_site: HttpSite, env: dict[str, str], tmp_path: Path
) -> None:
    shutil.copy(SAMPLES / "demo_en.opus", http_site.root / "talk.opus")
    mp3 = convert(SAMPLES / "demo_en.opus", tmp_path / "whole.mp3", "-ac", "1", "-b:a", "32k")
    truncate(mp3, http_site.root / "cut.mp3", 0.4)
    base = http_site.base_url
    port = base.rsplit(":", 1)[1]
    stored = f"{base}/talk.opus"
    spelled = f"HTTP://{base.removeprefix('http://')}/x/../t%61lk.opus"  # host case, '..', '%61'
    broken = f"http://127.0.0.1:{port}:/talk.opus"  # a stray colon
    cut = f"{base}/cut.mp3?token=s3cr3t"

    code, summary, stderr = _cli(env, "ingest", spelled, broken, cut, "--json")
    assert code == 3, stderr  # some items failed
    assert summary["media_ok"] == 2
    ((failed),) = summary["media_failed"]  # the others went on
    assert failed["uri"] == broken
    assert failed["error"] == f"{broken!r} is not a valid URL: its port '{port}:' is not a number; check it"
    assert "ValueError" not in stderr  # before: "ValueError: Port could not be cast to integer value"
    shown = f"{base}/cut.mp3?token=REDACTED"
    assert f"warning: decoding {shown}: ends early" in stderr  # before: /tmp/.../clasp-dl-.../media.mp3
    assert "clasp-dl-" not in stderr and "s3cr3t" not in stderr
    assert [w["uri"] for w in summary["media_warnings"]] == [shown]

    code, summary, stderr = _cli(env, "ingest", stored, "--json")  # the other spelling: the same item
    assert (code, summary["media_ok"], summary["media_skipped"]) == (0, 0, 1), stderr
    code, items, _ = _cli(env, "store", "list", "--json")
    assert sorted(item["source"] for item in items) == [shown, stored]  # before: two talk.opus items
    code, deleted, stderr = _cli(env, "store", "delete", f"{base}/./%74alk.opus", "--yes")
    assert code == 0 and [d["source"] for d in deleted["deleted"]] == [stored], stderr


class _RedirectToBroken(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(302)
        self.send_header("Location", "http://[::1/moved.wav")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[str]:
    with loopback.serving(_RedirectToBroken) as base_url:
        yield base_url


def test_a_redirect_to_a_broken_url_names_both(redirecting: str) -> None:
    url = f"{redirecting}/a.wav"
    with pytest.raises(ConnectorError) as info:  # before: ValueError: Invalid IPv6 URL
        head(Target(url, frozenset({"127.0.0.1"})), OpenOptions())
    assert (
        str(info.value)
        == f"{url!r} redirects to 'http://[::1/moved.wav', which is not a valid URL; check the URL"
    )
    with pytest.raises(ConnectorError, match="which is not a valid URL"):
        list(FsspecConnector(url).discover())


class _ExactPath(http.server.BaseHTTPRequestHandler):
    """Serves one file only under the exact path it was signed for (a CDN token, an S3 key with
    ``./``): another spelling of the path is refused, 403."""

    signed = "/media/./caf%c3%a9%7e1.opus"
    body = b""
    asked: ClassVar[list[str]] = []

    def _answer(self, with_body: bool) -> None:
        type(self).asked.append(self.path)
        if self.path.split("?", 1)[0] != self.signed:
            self.send_error(403)
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/ogg")
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_url_is_requested_as_given_and_stored_in_normal_form(env: dict[str, str]) -> None:
    """The normal form was also what was requested: a server checking the exact path (a signed
    URL) answered 403 to 'caf%C3%A9~1.opus' for 'caf%c3%a9%7e1.opus', and the item failed."""
    _ExactPath.body = (SAMPLES / "demo_en.opus").read_bytes()
    with loopback.serving(_ExactPath) as base:
        code, summary, stderr = _cli(env, "ingest", f"{base}{_ExactPath.signed}?token=s3cr3t", "--json")
        assert (code, summary["media_ok"]) == (0, 1), stderr
        assert set(p.split("?")[0] for p in _ExactPath.asked) == {_ExactPath.signed}  # as given
        code, items, _ = _cli(env, "store", "list", "--json")
        assert [item["source"] for item in items] == [f"{base}/media/caf%C3%A9~1.opus?token=REDACTED"]
        given = f"{base}/media/caf%c3%a9%7e1.opus?token=x"  # another spelling, as an earlier release kept
        code, found, stderr = _cli(env, "search", "x", "--media-id", given, "--json")
        assert code == 0 and found, stderr
