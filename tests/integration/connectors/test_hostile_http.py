"""Hostile and faulty http(s) sources (issue 18): every limit ends the download with one clear
error naming the URL, remote documents cannot lead to local files or private hosts, and
signed URLs are kept out of everything stored."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clasp_ingest.connectors import FeedConnector, FsspecConnector, OpenOptions, connector_for

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import MediaRef, media_id_for
from tests.integration.connectors.helpers import Episode, rss, write_tone
from tests.integration.connectors.hostile import Hostile, hostile_server

SIGNATURE = "d3adb33fc0ffee5ec7e7"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Hostile]:
    root = tmp_path / "site"
    write_tone(root / "a.wav", 0.3)
    with hostile_server(root) as server:
        yield server


@pytest.fixture
def other_host(tmp_path: Path) -> Iterator[Hostile]:
    """Another loopback host (127.0.0.2): reached only from remote documents."""
    root = tmp_path / "other"
    write_tone(root / "x.wav", 0.3)
    with hostile_server(root, host="127.0.0.2") as server:
        yield server


def _open(url: str, options: OpenOptions) -> None:
    ref = MediaRef(url, media_id_for(url), "v")
    with FsspecConnector(url, open_options=options).open(ref):
        pass


def _timed_error(url: str, options: OpenOptions) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        _open(url, options)
    return str(info.value), time.monotonic() - started


def test_trickle_fails_on_the_minimum_rate(site: Hostile, tmp_path: Path) -> None:
    url = f"{site.base_url}/trickle/slow.wav"
    options = OpenOptions(min_rate_bytes_s=100, rate_window_s=1.0, temp_dir=tmp_path)
    message, seconds = _timed_error(url, options)
    assert url in message and "minimum download rate of 100 bytes/s" in message
    assert "--min-download-rate" in message
    assert 0.9 < seconds < 3.0
    assert list(tmp_path.glob("clasp-dl-*")) == []


def test_trickle_fast_enough_fails_on_the_deadline(site: Hostile) -> None:
    url = f"{site.base_url}/trickle/slow.wav"
    message, seconds = _timed_error(url, OpenOptions(min_rate_bytes_s=0, deadline_s=1.0))
    assert url in message and "1 s download deadline" in message and "--download-deadline" in message
    assert 0.9 < seconds < 2.5


def test_stall_after_headers_fails_within_the_deadline(site: Hostile) -> None:
    url = f"{site.base_url}/stall/stuck.wav"
    message, seconds = _timed_error(url, OpenOptions(min_rate_bytes_s=0, deadline_s=1.0))
    assert url in message and "deadline" in message
    assert seconds < 2.5


def test_stall_before_headers_fails_on_the_read_timeout(site: Hostile) -> None:
    url = f"{site.base_url}/mute/silent.wav"
    message, seconds = _timed_error(url, OpenOptions(read_timeout_s=0.5))
    assert url in message and "no answer for 0.5 s" in message
    assert seconds < 2.0


def test_stall_fails_on_the_minimum_rate_before_the_read_timeout(site: Hostile) -> None:
    url = f"{site.base_url}/stall/stuck.wav"
    message, seconds = _timed_error(url, OpenOptions(min_rate_bytes_s=10, rate_window_s=1.0))
    assert "minimum download rate" in message and seconds < 2.5


def test_404_and_closed_port_name_the_url(site: Hostile) -> None:
    missing = f"{site.base_url}/missing.wav"
    message, _ = _timed_error(missing, OpenOptions())
    assert repr(missing) in message and "does not exist (HTTP 404)" in message
    with pytest.raises(ConnectorError, match=r"'http://127\.0\.0\.1:1/x\.wav' cannot be reached"):
        _open("http://127.0.0.1:1/x.wav", OpenOptions())


def _feed(site: Hostile, *urls: str) -> str:
    episodes = [Episode(f"Ep {n}", url, 100, mime="audio/wav") for n, url in enumerate(urls)]
    (site.root / "show.rss").write_text(rss("Hostile Radio", episodes))
    return f"{site.base_url}/show.rss"


def test_remote_feed_never_reads_local_files(site: Hostile, tmp_path: Path) -> None:
    secret = tmp_path / "secret.wav"
    write_tone(secret, 0.2)
    feed_url = _feed(site, secret.as_uri(), f"{site.base_url}/a.wav")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    connector = FeedConnector(feed_url, open_options=OpenOptions(temp_dir=downloads))
    local_ref, good_ref = connector.discover()
    with pytest.raises(ConnectorError) as info, connector.open(local_ref):
        pass
    message = str(info.value)
    assert secret.as_uri() in message and feed_url in message and "file://" in message
    assert "follow_schemes" in message
    assert list(downloads.iterdir()) == []  # nothing was copied
    with connector.open(good_ref) as local:  # the other episode still comes
        assert Path(local).read_bytes() == (site.root / "a.wav").read_bytes()


def test_local_feed_file_may_point_at_local_files(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "ep.wav", 0.2)
    feed = tmp_path / "feed.rss"
    feed.write_text(rss("Mine", [Episode("Ep", audio.as_uri(), 100)]))
    connector = FeedConnector(str(feed))
    (ref,) = connector.discover()
    with connector.open(ref) as local:
        assert Path(local).read_bytes() == audio.read_bytes()


def test_enclosure_on_another_private_host_is_refused_without_connecting(
    site: Hostile, other_host: Hostile
) -> None:
    enclosure = f"{other_host.base_url}/x.wav"
    feed_url = _feed(site, enclosure, f"{site.base_url}/a.wav")
    connector = FeedConnector(feed_url)
    refused, same_host = connector.discover()
    with pytest.raises(ConnectorError) as info, connector.open(refused):
        pass
    message = str(info.value)
    assert enclosure in message and feed_url in message and "loopback" in message
    assert "--allow-private-hosts" in message
    assert other_host.requests == []  # refused before any connection
    with connector.open(same_host):  # the feed's own host is trusted as the user typed it
        pass
    allowed = FeedConnector(feed_url, open_options=OpenOptions(allow_private_hosts=True))
    with allowed.open(next(iter(allowed.discover()))) as local:
        assert Path(local).read_bytes() == (other_host.root / "x.wav").read_bytes()
    assert other_host.requests == ["GET /x.wav"]


def test_redirects_to_other_private_hosts_and_to_files_are_refused(
    site: Hostile, other_host: Hostile
) -> None:
    to_other = f"{site.base_url}/redirect?to={other_host.base_url}/x.wav"
    with pytest.raises(ConnectorError, match=r"redirected to 'http://127\.0\.0\.2:\d+/x\.wav'.*loopback"):
        _open(to_other, OpenOptions())
    assert other_host.requests == []
    with pytest.raises(ConnectorError, match="redirects to a file:// URL"):
        _open(f"{site.base_url}/redirect?to=file:///etc/passwd", OpenOptions())
    same_host = f"{site.base_url}/redirect?to=/a.wav"
    _open(same_host, OpenOptions())
    _open(to_other, OpenOptions(allow_private_hosts=True))
    assert other_host.requests == ["GET /x.wav"]


def test_index_page_links_to_other_private_hosts_are_skipped(site: Hostile, other_host: Hostile) -> None:
    (site.root / "index").mkdir()
    page = f'<a href="../a.wav">a</a> <a href="{other_host.base_url}/x.wav">x</a>'
    (site.root / "index" / "index.html").write_text(page)
    refs = list(FsspecConnector(f"{site.base_url}/index/").discover())
    assert [r.uri for r in refs] == [f"{site.base_url}/a.wav"]
    assert other_host.requests == []
    allowed = FsspecConnector(f"{site.base_url}/index/", open_options=OpenOptions(allow_private_hosts=True))
    assert len(list(allowed.discover())) == 2


def _signed(site: Hostile, signature: str, date: str) -> str:
    return (
        f"{site.base_url}/signed/a.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE"
        f"%2F{date}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={date}T000000Z&X-Amz-Expires=3600"
        f"&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}&versionId=7"
    )


def test_signed_url_is_redacted_everywhere_but_the_download(site: Hostile) -> None:
    url = _signed(site, SIGNATURE, "20260101")
    connector = connector_for(url)
    assert SIGNATURE not in connector.source and SIGNATURE not in repr(connector)
    (ref,) = connector.discover()
    assert SIGNATURE not in repr(ref) and "AKIAEXAMPLE" not in repr(ref)
    assert "X-Amz-Signature=REDACTED" in ref.uri and "versionId=7" in ref.uri
    with connector.open(ref) as local:  # the real URL (the server wants the signature)
        assert Path(local).read_bytes() == (site.root / "a.wav").read_bytes()
    (resigned,) = connector_for(_signed(site, "0ther5ignature", "20260202")).discover()
    assert (resigned.uri, resigned.media_id, resigned.fingerprint) == (ref.uri, ref.media_id, ref.fingerprint)
    fresh = FsspecConnector(url)  # a copy that never listed (another worker) still opens it
    with fresh.open(ref):
        pass


def test_signed_enclosures_are_redacted_and_errors_too(site: Hostile) -> None:
    enclosure = _signed(site, SIGNATURE, "20260101")
    broken = enclosure.replace("/signed/a.wav", "/signed/missing.wav")
    connector = FeedConnector(_feed(site, enclosure, broken))
    good, bad = connector.discover()
    assert SIGNATURE not in repr(good) + repr(bad)
    with connector.open(good) as local:
        assert Path(local).stat().st_size > 0
    with pytest.raises(ConnectorError) as info, FeedConnector(connector.source).open(bad):
        pass
    assert "missing.wav" in str(info.value) and SIGNATURE not in str(info.value)


def test_abort_downloads_cuts_a_download_of_another_thread(site: Hostile) -> None:
    """What Ctrl-C does for downloads in worker threads (the flow's tasks)."""
    import io
    import threading

    from clasp_ingest.connectors.http import Target, abort_downloads, download

    failures: list[tuple[str, float]] = []

    def fetch() -> None:
        target = Target(f"{site.base_url}/trickle/slow.wav", frozenset({"127.0.0.1"}))
        try:
            download(target, io.BytesIO(), OpenOptions())
        except ConnectorError as exc:
            failures.append((str(exc), time.monotonic()))

    worker = threading.Thread(target=fetch)
    worker.start()
    assert site.got_body_request.wait(10)
    time.sleep(0.3)
    aborted_at = time.monotonic()
    assert abort_downloads() == 1
    worker.join(5)
    ((message, failed_at),) = failures
    assert "slow.wav': download interrupted" in message
    assert failed_at - aborted_at < 0.5
    assert abort_downloads() == 0
