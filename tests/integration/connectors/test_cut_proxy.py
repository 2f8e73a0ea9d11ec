"""A span of an http(s) source is cut by ffmpeg through a :class:`GuardedProxy`: a redirect (or a
new DNS answer) cannot take ffmpeg to an address the connectors would refuse. Loopback servers
only: the source on 127.0.0.1 (its host is trusted, as a typed URL is), the "internal" one on
127.0.0.2 (another loopback host, which a redirect may not reach)."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clasp_ingest.retriever.audio import span_samples
from clasp_ingest.retriever.spans import Span

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.types import SpanHit
from tests import loopback
from tests.integration.connectors.hostile import Hostile, hostile_server

SAMPLES = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Hostile]:
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(SAMPLES / "demo_en.opus", root / "talk.opus")
    with hostile_server(root) as server:
        yield server


@pytest.fixture
def internal(tmp_path: Path) -> Iterator[Hostile]:
    try:
        socket.create_server(("127.0.0.2", 0)).close()
    except OSError:
        pytest.skip("127.0.0.2 is not a usable loopback address here")
    root = tmp_path / "internal"
    root.mkdir()
    shutil.copy(SAMPLES / "demo_en.opus", root / "admin.opus")
    with hostile_server(root, host="127.0.0.2") as server:
        yield server


def _span(url: str) -> Span:
    return Span(media_id="talk", source=url, title="talk", start_s=32.7, end_s=37.188, score=1.0)


def test_a_redirect_to_another_private_host_is_refused_and_never_reached(
    site: Hostile, internal: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLASP_ALLOW_PRIVATE_HOSTS", raising=False)
    plain = span_samples(_span(f"{site.base_url}/talk.opus"))
    assert abs(plain.size / 16_000 - 4.488) < 0.05 and np.abs(plain).max() > 0.05

    # before: ffmpeg followed the redirect itself and sent its GET to the internal host
    redirected = f"{site.base_url}/redirect?to={internal.base_url}/admin.opus"
    with pytest.raises(MediaDecodeError) as info:
        span_samples(_span(redirected))
    message = str(info.value)
    assert "reading it would reach 127.0.0.2, a loopback address, refused" in message
    assert "CLASP_ALLOW_PRIVATE_HOSTS=1" in message
    assert internal.requests == []
    # ffmpeg connects by itself to the hosts no_proxy names (clouds often list 169.254.169.254)
    for listed in ("127.0.0.2", "*"):
        monkeypatch.setenv("no_proxy", listed)
        with pytest.raises(MediaDecodeError, match=r"a loopback address, refused"):
            span_samples(_span(redirected))
    assert internal.requests == []

    monkeypatch.setenv("CLASP_ALLOW_PRIVATE_HOSTS", "1")  # the user trusts the LAN: followed
    allowed = span_samples(_span(redirected))
    assert allowed.size == plain.size and internal.requests


@contextmanager
def _https_server(root: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An https server of ``root`` whose self-signed certificate ffmpeg trusts (SSL_CERT_FILE)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl program for a self-signed certificate")
    key, cert = folder / "key.pem", folder / "cert.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run([*openssl, *names, "-keyout", key, "-out", cert], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # ffmpeg verifies the server's certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    def make(*args: Any, **kwargs: Any) -> Quiet:
        return Quiet(*args, directory=str(root), **kwargs)

    with loopback.serving(make, tls=context) as base_url:
        yield base_url


def test_an_https_source_is_cut_through_the_proxys_tunnel(
    site: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _https_server(site.root, tmp_path, monkeypatch) as base:
        samples = span_samples(_span(f"{base}/talk.opus"))
    assert abs(samples.size / 16_000 - 4.488) < 0.05 and np.abs(samples).max() > 0.05


def test_a_stored_url_reaches_public_addresses_only(site: Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    # a point of a shared collection may name a LAN page or a metadata service as its source:
    # a store's hit trusts no host (a Span the caller makes is taken as given)
    monkeypatch.delenv("CLASP_ALLOW_PRIVATE_HOSTS", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    talk = f"{site.base_url}/talk.opus"
    stored = SpanHit(
        "talk", talk, "talk", 32.7, 37.188, 1.0, "u", payload={"metadata": {"version": "etag:x"}}
    )
    with pytest.raises(
        MediaDecodeError, match=r"reach 127\.0\.0\.1, a loopback address, refused \(a stored URL"
    ):
        span_samples(stored)
    assert [line for line in site.requests if line.startswith("GET")] == []
    for allowed in ("1", "yes", "t"):  # read as the settings read it
        monkeypatch.setenv("CLASP_ALLOW_PRIVATE_HOSTS", allowed)
        assert span_samples(stored).size > 0


def test_a_caller_can_allow_private_hosts_without_the_variable(
    site: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``allow_private_hosts`` (ClipOptions, span_samples, LazyWords, ClaspRetriever) says it
    for one caller; None reads CLASP_ALLOW_PRIVATE_HOSTS, False refuses whatever it says."""
    from clasp_ingest.retriever.audio import ClipOptions, span_clip

    monkeypatch.delenv("CLASP_ALLOW_PRIVATE_HOSTS", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    stored = SpanHit("talk", f"{site.base_url}/talk.opus", "talk", 32.7, 37.188, 1.0, "u", payload={})
    assert abs(span_samples(stored, allow_private_hosts=True).size / 16_000 - 4.488) < 0.05
    assert abs(len(span_clip(stored, ClipOptions(allow_private_hosts=True))) / 1000 - 4.488) < 0.05
    monkeypatch.setenv("CLASP_ALLOW_PRIVATE_HOSTS", "1")
    for refused in (lambda: span_samples(stored, allow_private_hosts=False),
                    lambda: span_clip(stored, ClipOptions(allow_private_hosts=False))):  # fmt: skip
        with pytest.raises(MediaDecodeError, match=r"a loopback address, refused"):
            refused()


def test_a_server_that_is_down_is_named_as_unreachable() -> None:
    """ffmpeg saw only the proxy close the connection, and said "End of file"."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # nothing listens there once it is closed
    with pytest.raises(MediaDecodeError) as info:
        span_samples(_span(f"http://127.0.0.1:{port}/talk.opus"))
    message = str(info.value)
    said = f"127.0.0.1:{port} cannot be reached (Connection refused); check the URL and that its server"
    assert said in message
    assert "End of file" not in message


def test_a_remote_wav_that_declares_less_than_it_holds_is_cut_past_its_header(
    site: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ingest decodes such a WAV whole; a span cut past the header's length came back empty
    ("ffmpeg gave 0.00 s"), so its lazy words failed."""
    import struct

    from clasp_ingest.media import decode_audio, find_ffmpeg

    monkeypatch.setenv("CLASP_ALLOW_PRIVATE_HOSTS", "1")
    wav = site.root / "short_header.wav"
    subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-i", str(SAMPLES / "demo_en.opus"),
                    "-ac", "1", "-ar", "16000", str(wav)], check=True)  # fmt: skip
    raw = bytearray(wav.read_bytes())
    at = raw.index(b"data")
    raw[at + 4 : at + 8] = struct.pack("<I", 10 * 32_000)  # the header says 10 s of the 46.6
    wav.write_bytes(bytes(raw))
    whole = decode_audio(wav)
    span = Span(media_id="w", source=f"{site.base_url}/short_header.wav", title="w", start_s=32.7,
                end_s=37.188, score=1.0)  # fmt: skip
    cut = span_samples(span)
    assert abs(cut.size / 16_000 - 4.488) < 0.05
    expected = whole[int(32.7 * 16_000) : int(32.7 * 16_000) + cut.size]
    assert np.corrcoef(cut[: expected.size], expected)[0, 1] > 0.9  # that stretch, not another


def test_an_mp4_from_a_server_without_ranges_is_told_how_to_fix_it(tmp_path: Path) -> None:
    """``python -m http.server`` ignores byte ranges: an M4A whose index is at its end cannot be
    cut there (README); the error said only "the media may be damaged there, or its server may
    not allow seeking", not the fix the README gives (a reviewer's report, 2026-12-08)."""
    import functools

    from clasp_ingest.media.decode import find_ffmpeg

    class Plain(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    talk = tmp_path / "talk.m4a"  # ffmpeg writes the index (moov) last by default
    encode = [find_ffmpeg(), "-v", "error", "-i", str(SAMPLES / "demo_en.opus"), "-c:a", "aac", str(talk)]
    subprocess.run(encode, check=True)
    served = loopback.serving(functools.partial(Plain, directory=str(tmp_path)))
    with served as base, pytest.raises(MediaDecodeError, match=r"-movflags \+faststart"):
        span_samples(_span(f"{base}/talk.m4a"))
