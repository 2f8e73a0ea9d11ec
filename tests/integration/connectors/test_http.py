"""HTTP and feed connectors against a loopback http.server the tests start."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors import (
    FeedConnector,
    FsspecConnector,
    MediaTooLargeError,
    OpenOptions,
    connector_for,
)

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import media_id_for
from tests.integration.connectors.conftest import HttpSite
from tests.integration.connectors.helpers import Episode, rss, write_tone


@pytest.fixture(scope="module")
def site(http_site: HttpSite) -> HttpSite:
    write_tone(http_site.root / "talks" / "a.wav", 0.4, 300)
    write_tone(http_site.root / "talks" / "b.wav", 0.6, 500)
    (http_site.root / "talks" / "notes.txt").write_text("not media")
    episodes = [
        Episode("Episode one", f"{http_site.base_url}/talks/a.wav", 12800 + 44),
        Episode("Episode two", "b.wav", 19200 + 44, published="Wed, 04 Jun 2025 09:00:00 GMT"),
        Episode("Show notes only", f"{http_site.base_url}/talks/notes.txt", 9, mime="text/plain"),
    ]
    document = rss("Loopback Radio", episodes)
    (http_site.root / "talks" / "feed.rss").write_text(document)
    (http_site.root / "talks" / "podcast").write_text(document)
    return http_site


def test_single_http_file_discovered_with_header_fingerprint(site: HttpSite) -> None:
    url = f"{site.base_url}/talks/a.wav"
    refs = list(FsspecConnector(url).discover())
    assert [r.uri for r in refs] == [url]
    ref = refs[0]
    assert ref.media_id == media_id_for(url)
    assert "last-modified:" in ref.fingerprint and f"size:{(site.root / 'talks/a.wav').stat().st_size}" in (
        ref.fingerprint
    )
    assert ref.title == "a"


def test_index_page_lists_only_media(site: HttpSite) -> None:
    refs = list(FsspecConnector(f"{site.base_url}/talks/").discover())
    assert [r.uri.rsplit("/", 1)[-1] for r in refs] == ["a.wav", "b.wav"]
    assert all(r.metadata["size_bytes"] > 0 for r in refs)


def test_a_percent_encoded_name_is_titled_as_people_read_it(site: HttpSite) -> None:
    write_tone(site.root / "odd" / "talk [draft] ü.wav", 0.3)
    (ref,) = FsspecConnector(f"{site.base_url}/odd/").discover()  # http.server quotes the link
    assert ref.uri == f"{site.base_url}/odd/talk%20%5Bdraft%5D%20%C3%BC.wav"
    assert (ref.title, ref.metadata["filename"]) == ("talk [draft] ü", "talk [draft] ü.wav")
    (single,) = FsspecConnector(ref.uri).discover()
    assert single.title == "talk [draft] ü" and single.media_id == ref.media_id


def test_open_streams_identical_bytes_and_cleans_up(site: HttpSite) -> None:
    connector = FsspecConnector(f"{site.base_url}/talks/b.wav")
    (ref,) = connector.discover()
    with connector.open(ref) as local:
        assert Path(local).read_bytes() == (site.root / "talks" / "b.wav").read_bytes()
    assert not Path(local).exists()


def test_fingerprint_changes_when_file_changes(site: HttpSite) -> None:
    path = write_tone(site.root / "changing.wav", 0.3)
    url = f"{site.base_url}/changing.wav"
    (before,) = FsspecConnector(url).discover()
    write_tone(path, 0.5)
    os.utime(path, (time.time() + 5, time.time() + 5))
    (after,) = FsspecConnector(url).discover()
    assert before.media_id == after.media_id
    assert before.fingerprint != after.fingerprint


def test_size_limit_is_enforced_while_streaming(site: HttpSite) -> None:
    connector = FsspecConnector(f"{site.base_url}/talks/b.wav", open_options=OpenOptions(max_bytes=1000))
    ref = next(iter(connector.discover()))
    stripped = type(ref)(ref.uri, ref.media_id, ref.fingerprint, ref.title, {})  # no size hint
    with pytest.raises(MediaTooLargeError, match="max-bytes"), connector.open(stripped):
        pass
    with pytest.raises(MediaTooLargeError), connector.open(ref):  # refused before download
        pass


def test_missing_url_is_a_connector_error(site: HttpSite) -> None:
    with pytest.raises(ConnectorError, match="does not exist"):
        list(FsspecConnector(f"{site.base_url}/nope.wav").discover())


def test_feed_episodes_with_metadata(site: HttpSite) -> None:
    feed_url = f"{site.base_url}/talks/feed.rss"
    refs = list(FeedConnector(feed_url).discover())
    assert [r.title for r in refs] == ["Episode one", "Episode two"]
    assert refs[1].uri == f"{site.base_url}/talks/b.wav"  # relative enclosure resolved
    meta = refs[1].metadata
    assert meta["feed_title"] == "Loopback Radio"
    assert meta["published"] == "2025-06-04T09:00:00Z"
    assert meta["enclosure_length"] == 19244
    assert refs[0].media_id == media_id_for(refs[0].uri)
    with FeedConnector(feed_url).open(refs[0]) as local:
        assert Path(local).read_bytes() == (site.root / "talks" / "a.wav").read_bytes()


def test_connector_for_detects_feeds_by_name_and_content_type(site: HttpSite) -> None:
    assert isinstance(connector_for(f"{site.base_url}/talks/feed.rss"), FeedConnector)
    assert isinstance(connector_for(f"{site.base_url}/talks/podcast"), FeedConnector)
    assert isinstance(connector_for(f"{site.base_url}/talks/a.wav"), FsspecConnector)
    assert isinstance(connector_for(f"{site.base_url}/talks/"), FsspecConnector)
    assert isinstance(connector_for(f"{site.base_url}/talks/a.wav", feed=True), FeedConnector)


def test_html_page_is_not_a_feed(site: HttpSite) -> None:
    (site.root / "page.html").write_text("<html><body>hello</body></html>")
    with pytest.raises(ConnectorError, match="not a readable RSS/Atom feed"):
        list(FeedConnector(f"{site.base_url}/page.html").discover())


@pytest.fixture
def stalling_server() -> Iterator[str]:
    """Accepts connections and sends headers, then never sends the body."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nabc")
            held.append(conn)
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow.wav"
    stop.set()
    thread.join()
    listener.close()


def test_read_timeout_bounds_a_stalled_download(stalling_server: str) -> None:
    from clasp_ingest.types import MediaRef

    connector = FsspecConnector(stalling_server, open_options=OpenOptions(read_timeout_s=0.5))
    ref = MediaRef(stalling_server, media_id_for(stalling_server), "x")
    started = time.monotonic()
    with (
        pytest.raises(ConnectorError, match=r"slow\.wav'.*no data for 0\.5 s.*raise CLASP_READ_TIMEOUT_S"),
        connector.open(ref),
    ):
        pass
    assert time.monotonic() - started < 10


def test_a_span_on_a_server_without_byte_ranges_is_cut_whole(site: HttpSite) -> None:
    """http.server ignores Range: ffmpeg's seek then ends the cut early (exit 0); the cut is read
    again from the start, so words and clips are those of the whole span."""
    import shutil

    from clasp_ingest.retriever.audio import span_samples
    from clasp_ingest.retriever.spans import Span

    samples_dir = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"
    shutil.copy(samples_dir / "demo_en.opus", site.root / "talk.opus")
    url = f"{site.base_url}/talk.opus"
    # Spans made here (a store's hits would need the file's version, and a public address)
    local = Span("m", (samples_dir / "demo_en.opus").as_uri(), "talk", 32.7, 37.188, 1.0)
    remote = Span("m", url, "talk", 32.7, 37.188, 1.0)
    want = span_samples(local)
    got = span_samples(remote)
    assert abs(got.size - want.size) < 160 and abs(want.size / 16_000 - 4.488) < 0.05
    corr = np.corrcoef(got[: want.size][:8000], want[: got.size][:8000])[0, 1]
    assert corr > 0.9  # the same audio, not another stretch


@contextmanager
def _whole_file_server(body: bytes) -> Iterator[str]:
    """A server that ignores Range (200 and the whole file, as http.server does) and writes its
    status line in two pieces: a proxy that read one piece missed the 200."""

    def answer(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            rest = f"00 OK\r\nContent-Type: audio/x-wav\r\nContent-Length: {len(body)}\r\n\r\n"
            try:
                conn.sendall(b"HTTP/1.0 2")
                time.sleep(0.05)
                conn.sendall(rest.encode("latin-1") + (b"" if head.startswith(b"HEAD") else body))
            except OSError:
                pass  # ffmpeg or the proxy closed it

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


@pytest.mark.parametrize("server", ["http.server", "status line in two pieces"])
def test_a_wav_span_on_a_server_without_byte_ranges_is_its_own_audio(
    site: HttpSite, tmp_path: Path, server: str
) -> None:
    """A WAV from a server that answers 200 to every Range: ffmpeg's seeking cut came back full
    length but from the wrong place (correlation 0.02), so its words were another stretch's,
    and stored. The proxy notes the ignored range, and the cut is read from the start."""
    from clasp_ingest.retriever.audio import span_samples
    from clasp_ingest.retriever.spans import Span

    from tests.fixtures_audio import convert

    samples_dir = Path(__file__).resolve().parents[3] / "clasp_ingest" / "data" / "samples"
    wav = convert(samples_dir / "demo_en.opus", tmp_path / "talk.wav", "-ac", "1", "-ar", "22050")
    (site.root / "talk.wav").write_bytes(wav.read_bytes())
    want = span_samples(Span("m", wav.as_uri(), "talk", 0.0, 3.716, 1.0))
    with contextlib.ExitStack() as stack:
        base = (
            site.base_url
            if server == "http.server"
            else stack.enter_context(_whole_file_server(wav.read_bytes()))
        )
        got = span_samples(Span("m", f"{base}/talk.wav", "talk", 0.0, 3.716, 1.0))
    assert abs(got.size - want.size) < 160
    size = min(got.size, want.size)
    assert np.corrcoef(got[:size], want[:size])[0, 1] > 0.95
