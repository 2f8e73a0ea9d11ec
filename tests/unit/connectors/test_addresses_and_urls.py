"""The address classifier, the resolver check (an injected resolver: no sockets) and redact_url."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from clasp_ingest.connectors import OpenOptions
from clasp_ingest.connectors.addresses import BlockedAddressError, address_problem, allowed_addresses
from clasp_ingest.connectors.urls import SecretUrl, host_of, redact_url
from pydantic import TypeAdapter

from clasp_ingest.config import Settings


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "site-local"),  # deprecated, still routed inside sites: was "public"
        ("100.64.0.1", "carrier-grade NAT (shared)"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "private"),  # TEST-NET-1 (documentation)
        ("::ffff:127.0.0.1", "IPv4-in-IPv6 loopback"),
        ("::ffff:10.0.0.1", "IPv4-in-IPv6 private"),
        ("2002:7f00:1::", "IPv4-in-IPv6 loopback"),  # 6to4 around 127.0.0.1
        ("8.8.8.8", None),
        ("93.184.215.14", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(address) == problem


def test_address_problem_rejects_non_addresses() -> None:
    with pytest.raises(ValueError):
        address_problem("example.com")


def _resolver(*answers: str) -> Any:
    def resolve(host: str, port: int, family: int, kind: int) -> list[tuple[Any, ...]]:
        infos = []
        for ip in answers:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, port, 0, 0) if fam == socket.AF_INET6 else (ip, port)
            infos.append((fam, kind, 6, "", sockaddr))
        return infos

    return resolve


def test_allowed_addresses_refuses_a_name_with_any_private_answer() -> None:
    public = allowed_addresses("cdn.example", 443, check=True, resolver=_resolver("8.8.8.8"))
    assert public == [(socket.AF_INET, ("8.8.8.8", 443))]
    with pytest.raises(BlockedAddressError, match=r"rebind\.example \(127\.0\.0\.1\) is a loopback") as info:
        allowed_addresses("rebind.example", 80, check=True, resolver=_resolver("8.8.8.8", "127.0.0.1"))
    assert "--allow-private-hosts" in str(info.value)
    with pytest.raises(BlockedAddressError, match="IPv4-in-IPv6 link-local"):
        allowed_addresses("x.example", 80, check=True, resolver=_resolver("::ffff:169.254.169.254"))
    unchecked = allowed_addresses("lan.example", 80, check=False, resolver=_resolver("192.168.0.9"))
    assert unchecked == [(socket.AF_INET, ("192.168.0.9", 80))]


SIGNED_S3 = (
    "https://bucket.s3.amazonaws.com/talks/a.mp3?versionId=3&X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Security-Token=FQoGZXIvYXdzEBYaDJ&X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027"
)


@pytest.mark.parametrize(
    ("url", "secrets", "kept"),
    [
        (
            SIGNED_S3,
            ["AKIAIOSFODNN7EXAMPLE", "FQoGZXIvYXdzEBYaDJ", "fe5f80f77d5fa3beca038a248ff027"],
            "versionId=3",
        ),
        (
            "https://storage.googleapis.com/b/a.wav?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=sa%40p.iam.gserviceaccount.com&X-Goog-Signature=0a1b2c3d",
            ["sa%40p", "sa@p", "0a1b2c3d"],
            "/b/a.wav",
        ),
        (
            "https://acct.blob.core.windows.net/c/a.mp4?sv=2022-11-02&ss=b&sp=r&se=2026-01-01T00%3A00Z"
            "&sig=AbCdEf%2B123%3D",
            ["AbCdEf", "2026-01-01", "2022-11-02"],
            "/c/a.mp4",
        ),
        (
            "https://d1.cloudfront.net/a.mp3?Expires=1767225600&Signature=Zm9vYmFy~&Key-Pair-Id=K2JCJMDEHXQW5F",
            ["1767225600", "Zm9vYmFy", "K2JCJMDEHXQW5F"],
            "/a.mp3",
        ),
        ("https://api.example/a.mp3?token=s3cr3t&ep=4", ["s3cr3t"], "ep=4"),
        ("https://api.example/a.mp3?access_token=abc123&API_KEY=k3y&key=kk9", ["abc123", "k3y", "kk9"], ""),
        ("https://user:pa55word@host.example/a.mp3", ["pa55word"], "user:REDACTED@host.example"),
    ],
)
def test_redact_url_hides_credential_values(url: str, secrets: list[str], kept: str) -> None:
    redacted = redact_url(url)
    assert all(secret not in redacted for secret in secrets)
    assert kept in redacted and "REDACTED" in redacted
    assert redact_url(redacted) == redacted  # idempotent


def test_redact_url_is_stable_across_re_signing_and_leaves_plain_urls_alone() -> None:
    resigned = SIGNED_S3.replace("20260101", "20260315").replace("fe5f80f77d5f", "0123456789ab")
    assert redact_url(resigned) == redact_url(SIGNED_S3)
    for plain in (
        "https://h.example/a%20b.mp3?ep=1&sp=2&se=3",  # Azure names mean nothing without sig
        "/data/talks/a.wav",
        "file:///data/a%20b.wav",
        "s3://bucket/prefix/",
        "not a url",
    ):
        assert redact_url(plain) == plain
    assert host_of("HTTP://Media.Example:8080/x") == "media.example"


def test_secret_url_is_shown_redacted_but_keeps_the_real_value() -> None:
    secret = SecretUrl(SIGNED_S3)
    assert str(secret) == redact_url(SIGNED_S3) and "fe5f80f77d" not in repr(secret)
    assert secret.get_secret_value() == SIGNED_S3
    assert "fe5f80f77d" not in TypeAdapter(list[str | SecretUrl]).dump_json([secret, "b"]).decode()


def test_the_flow_stores_secret_sources_redacted() -> None:
    from clasp_ingest.flows.ingest import ingest_source

    stored = ingest_source.serialize_parameters({"sources": [SecretUrl(SIGNED_S3), "/data/b.wav"]})
    assert stored["sources"] == [redact_url(SIGNED_S3), "/data/b.wav"]


def test_settings_give_the_download_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLASP_DOWNLOAD_DEADLINE_S", "12.5")
    monkeypatch.setenv("CLASP_MIN_DOWNLOAD_RATE", "0")
    monkeypatch.setenv("CLASP_ALLOW_PRIVATE_HOSTS", "1")
    options = Settings.model_validate({}).open_options(max_bytes=100, deadline_s=None)
    assert (options.deadline_s, options.min_rate_bytes_s, options.allow_private_hosts) == (12.5, 0, True)
    assert options.max_bytes == 100 and options.rate_window_s == 30
    assert OpenOptions().deadline_s == 3600 and OpenOptions().min_rate_bytes_s == 1024
    with pytest.raises(ValueError, match="deadline_s"):
        OpenOptions(deadline_s=0)
    with pytest.raises(ValueError, match="min_rate_bytes_s"):
        OpenOptions(min_rate_bytes_s=-1)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://h/café talk.opus", "/caf%C3%A9%20talk.opus"),
        ("http://h/caf%C3%A9.opus?a=1&b=é", "/caf%C3%A9.opus?a=1&b=%C3%A9"),  # escapes stay as they are
        ("http://h/a.opus?token=x y#frag", "/a.opus?token=x%20y"),  # a fragment is never sent
        ("http://h", "/"),
        ("http://h/line\nbreak.opus", "/linebreak.opus"),  # urlsplit drops tabs and newlines, as browsers do
        ("http://h/a\x7fb.opus", "/a%7Fb.opus"),
        ("http://h/s3/k.mp3?X-Amz-Signature=ab%2Bc&x=/y", "/s3/k.mp3?X-Amz-Signature=ab%2Bc&x=/y"),
    ],
)
def test_request_path_percent_encodes_what_a_request_line_cannot_carry(url: str, target: str) -> None:
    from clasp_ingest.connectors.http import request_path

    assert request_path(url) == target


@pytest.mark.parametrize(
    ("url", "feed"),
    [
        ("http://h/feed", True),
        ("http://h/podcast/rss/", True),
        ("http://h/show/atom", True),
        ("http://h/episodes.xml", True),
        ("http://h/list?format=rss", True),
        ("http://h/feedback-talks.html", False),
        ("http://h/feeds/index.html", False),
        ("http://h/rss-archive/", False),
        ("http://h/talks/", False),
    ],
)
def test_feed_names_are_whole_folders_suffixes_or_queries(url: str, feed: bool) -> None:
    from clasp_ingest.connectors.feed import looks_like_feed_name

    assert looks_like_feed_name(url) is feed


def test_media_names_are_never_read_as_feeds_and_no_feed_forces_it() -> None:
    from clasp_ingest.connectors import FsspecConnector

    # decided without a request: a media extension wins over a 'feed' folder; --no-feed wins
    assert isinstance(connector_for_offline("http://h/feeds/ep.mp3"), FsspecConnector)
    assert isinstance(connector_for_offline("http://h/feed", feed=False), FsspecConnector)


def connector_for_offline(url: str, feed: bool | None = None) -> object:
    from clasp_ingest.connectors import connector_for

    return connector_for(url, feed=feed)


def test_span_links_replace_a_fragment_the_source_has() -> None:
    from clasp_ingest.store import span_url

    assert span_url("http://h/a.opus?v=1#frag", 10.012, 13.5) == "http://h/a.opus?v=1#t=10.012,13.5"
    assert span_url("file:///x/a%23b.opus", 1, 2) == "file:///x/a%23b.opus#t=1,2"
    assert span_url("s3://b/Episode #12.mp3", 1, 2) == "s3://b/Episode #12.mp3#t=1,2"  # '#' in a key
