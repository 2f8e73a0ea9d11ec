"""Plain http(s) requests of the connectors: streamed, bounded, interruptible, address-checked.

Built on :mod:`http.client` in the calling thread. fsspec's HTTP ran on its own event-loop
thread, where a trickling server kept a download alive for half an hour and Ctrl-C did not
reach it; here every read waits at most until the next limit can fail (read timeout, the
download's deadline, the minimum average rate), a watchdog cuts the socket at the deadline
(also mid-headers), another where the minimum rate fails while the headers still arrive (a
server may send them a byte at a time), and SIGINT interrupts the read at once.

Nothing here asks for a byte range, so a ``206 Partial Content`` answer of less than the whole
file is refused, and a body that ends short of the file's size (Content-Range's, or the one
its listing recorded where the body itself has no length) fails as a broken download.

Redirects are followed by hand (http(s) only, at most five), each hop's host checked at
connect time unless the user typed it (:mod:`clasp_ingest.connectors.addresses`). A page's
relative links resolve against the URL finally fetched (``/podcasts`` redirected to
``/podcasts/``), as browsers do. Errors are :class:`~clasp_ingest.errors.ConnectorError`
naming the URL, always redacted (:func:`~clasp_ingest.connectors.urls.redact_url`), and the
limit or fix.

A body sent gzip- or deflate-encoded although ``identity`` was asked (objects stored gzipped
on S3 or a CDN) is decoded as it streams, a bounded piece at a time: size limits count the
decoded bytes, so a small body that inflates hugely meets the limit, not the disk.
"""

from __future__ import annotations

import http.client
import io
import math
import re
import socket
import threading
import time
import unicodedata
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from email.message import Message
from email.utils import collapse_rfc2231_value, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import IO, Any
from urllib.parse import quote, urljoin, urlsplit

from clasp_ingest.connectors.addresses import BlockedAddressError, allowed_addresses
from clasp_ingest.connectors.base import MediaTooLargeError, OpenOptions, temporary_target
from clasp_ingest.connectors.urls import host_of, redact_url, sent_url, url_problem

from clasp_ingest.errors import ConnectorError, TransientConnectorError

__all__ = [
    "HTTP_SCHEMES",
    "HttpStatusError",
    "Page",
    "RefusedError",
    "Target",
    "abort_downloads",
    "connect_checked",
    "disposition_filename",
    "download",
    "fetch_changed",
    "fetch_page",
    "head",
    "index_links",
    "open_http",
    "request_path",
]

HTTP_SCHEMES = frozenset({"http", "https"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_HEADERS = {"User-Agent": "clasp-ingest", "Accept-Encoding": "identity", "Accept": "*/*"}
_DEADLINE_FIX = "raise it with --download-deadline SECONDS (CLASP_DOWNLOAD_DEADLINE_S)"
_RATE_FIX = "lower it with --min-download-rate BYTES_PER_S (CLASP_MIN_DOWNLOAD_RATE; 0: no minimum)"
#: Statuses of a HEAD that a GET may still pass: servers that refuse HEAD (405, 501) and signed
#: URLs valid for GET only (S3/GCS answer a HEAD of a presigned GET URL with 403 or 400).
_HEAD_REFUSED = frozenset({400, 403, 405, 501})
#: The headers of an answer that a conditional GET gives back (and the answer's date).
_VALIDATORS = ("ETag", "Last-Modified", "Date")
#: Longest ETag or date given back to a server.
_VALIDATOR_MAX = 512
#: How long before the answer a page must have changed for its ``Last-Modified`` to be given
#: back (:func:`_settled`).
_SETTLED_S = 2.0
#: What a request line may carry as it is; everything else is percent-encoded (UTF-8), as
#: browsers do: RFC 3986's reserved and unreserved characters, and '%' (escapes already there).
_PATH_SAFE = "/:@!$&'()*+,;=~%"
_QUERY_SAFE = _PATH_SAFE + "?"
#: Content-Encodings decoded (``x-gzip`` is gzip's old name); any other is refused, naming it.
_DECODED = frozenset({"gzip", "x-gzip", "deflate"})
#: Content-Encodings that leave the body as it is ("none" is no standard name, but is sent).
_UNENCODED = frozenset({"", "identity", "none"})
#: Longest file name taken from a Content-Disposition header.
_NAME_MAX = 255
#: ``Content-Range: bytes FIRST-LAST/SIZE`` (SIZE ``*``: unknown).
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)

#: Requests in flight in any thread, so that :func:`abort_downloads` can cut them.
_IN_FLIGHT: set[_Budget] = set()
_IN_FLIGHT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Target:
    """A URL to request: the real one (kept in memory only), the hosts the user typed, and
    ``via`` (how the URL was reached, e.g. "enclosure of feed '...'") for error messages."""

    url: str
    trusted_hosts: frozenset[str] = frozenset()
    via: str = ""

    @property
    def shown(self) -> str:
        where = f" ({self.via})" if self.via else ""
        return f"{redact_url(self.url)!r}{where}"


class HttpStatusError(ConnectorError):
    """A non-redirect, non-2xx answer (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RefusedError(ConnectorError):
    """A request not sent: its host resolves to a refused address, or a redirect left http(s)."""


class _Budget:
    """The deadline and minimum average rate of one request, and the bytes received so far."""

    def __init__(self, target: Target, options: OpenOptions) -> None:
        self.shown = target.shown
        self.uri = redact_url(target.url)
        self.options = options
        self.started = time.monotonic()
        self.ends = self.started + options.deadline_s
        self.total = 0
        self.aborted = False
        #: The minimum rate failed while the headers still arrived (:func:`_read_headers`).
        self.slow_headers = False
        #: The request's socket (``HTTPConnection.sock`` lets go of it once the response owns it).
        self.sock: socket.socket | None = None
        self._marks: deque[tuple[float, int]] = deque([(self.started, 0)])

    def left(self) -> float:
        return self.ends - time.monotonic()

    def add(self, count: int) -> None:
        now = time.monotonic()
        self.total += count
        self._marks.append((now, self.total))
        while len(self._marks) > 1 and self._marks[1][0] <= now - self.options.rate_window_s:
            self._marks.popleft()

    def rate_fails_at(self) -> float:
        """When the minimum rate fails if nothing more arrives (``inf`` without a minimum)."""
        window = self.options.rate_window_s
        need = self.options.min_rate_bytes_s * window
        if need <= 0:
            return math.inf
        first = next(t for t, count in self._marks if self.total - count < need)
        return max(self.started + window, first + window)

    def wait_s(self) -> float:
        """How long the next read may block."""
        now = time.monotonic()
        limits = (self.options.read_timeout_s, self.ends - now, self.rate_fails_at() - now)
        return max(0.01, min(limits))

    def check(self) -> None:
        """Raise when aborted, when the deadline passed or the rate fell below the minimum."""
        if self.aborted:
            raise ConnectorError(f"{self.shown}: download interrupted")
        now = time.monotonic()
        if now >= self.ends:
            raise self.deadline_error()
        if self.slow_headers or now >= self.rate_fails_at():
            got = "its headers unfinished after" if self.slow_headers else f"{self.total} bytes in"
            raise ConnectorError(
                f"{self.shown}: slower than the minimum download rate of "
                f"{self.options.min_rate_bytes_s:g} bytes/s over {self.options.rate_window_s:g} s "
                f"({got} {now - self.started:.0f} s); {_RATE_FIX}"
            )

    def deadline_error(self) -> ConnectorError:
        return ConnectorError(
            f"{self.shown}: not downloaded within the {self.options.deadline_s:g} s download deadline "
            f"({self.total} bytes received); {_DEADLINE_FIX}"
        )

    def stalled(self, what: str) -> ConnectorError:
        """The error after a read timed out: whichever limit it was."""
        self.check()
        return ConnectorError(
            f"{self.shown}: no {what} for {self.options.read_timeout_s:g} s (the server stalled); "
            "try again later, or raise CLASP_READ_TIMEOUT_S (OpenOptions.read_timeout_s)"
        )


def connect_checked(address: tuple[str, int], timeout: float, check: bool) -> socket.socket:
    """``socket.create_connection`` to the addresses :func:`allowed_addresses` allows."""
    host, port = address
    last: OSError = OSError(f"{host} has no address")
    for family, sockaddr in allowed_addresses(host, port, check=check):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise last


def _check_url(url: str, shown: str) -> None:
    """Raise, naming the part that is wrong, where ``url`` cannot be requested: urllib fails on
    a bad port or IPv6 host with a bare ValueError ('Port out of range 0-65535'), and a URL
    without a host failed as unreachable, retried."""
    problem = url_problem(url)
    if problem is not None:
        raise ConnectorError(f"{shown} is not a valid URL: {problem}; check it")


def _connection(url: str, target: Target, budget: _Budget) -> http.client.HTTPConnection:
    _check_url(url, budget.shown)
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    timeout = max(0.01, min(budget.options.connect_timeout_s, budget.left()))
    conn = kind(parts.hostname or "", parts.port, timeout=timeout)
    check = not budget.options.allow_private_hosts and host_of(url) not in target.trusted_hosts

    def create(address: tuple[str, int], timeout: float, *_: Any) -> socket.socket:
        return connect_checked(address, timeout, check)

    conn._create_connection = create  # type: ignore[attr-defined]
    return conn


def abort_downloads() -> int:
    """Cut every http(s) request in flight, in any thread (each fails "interrupted"); how many.

    For a Ctrl-C handler: a download in a worker thread (a Prefect task) would otherwise
    hold the process until one of its limits ends it.
    """
    with _IN_FLIGHT_LOCK:
        flights = list(_IN_FLIGHT)
    for budget in flights:
        budget.aborted = True
        _cut(budget)
    return len(flights)


def _cut(budget: _Budget) -> None:
    """Shut the request's socket so that a blocked read returns (the deadline's watchdog, aborts)."""
    sock = budget.sock
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _send(
    conn: http.client.HTTPConnection,
    url: str,
    method: str,
    budget: _Budget,
    headers: Mapping[str, str] | None = None,
) -> http.client.HTTPResponse:
    try:
        conn.request(method, request_path(url), headers={**_HEADERS, **(headers or {})})
        budget.sock = conn.sock
        _wait_limit(budget)
        response = _read_headers(conn, budget)
    except BlockedAddressError as exc:
        raise RefusedError(f"refused {budget.shown}: {exc}") from None
    except http.client.InvalidURL:  # its text quotes the URL unredacted
        raise ConnectorError(f"{budget.shown} is not a valid http(s) URL; check it") from None
    except TimeoutError:
        raise budget.stalled("answer") from None
    except (OSError, http.client.HTTPException) as exc:
        budget.check()
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise TransientConnectorError(
            f"{budget.shown} cannot be reached ({reason}); check the URL and that its server is up"
        ) from None
    budget.check()  # the deadline's watchdog may have cut the headers short
    return response


def _read_headers(conn: http.client.HTTPConnection, budget: _Budget) -> http.client.HTTPResponse:
    """``conn.getresponse()``, its socket cut where the minimum rate fails first: each read of
    the headers waits at most until a limit can fail, but between reads nothing is checked, so
    a server sending them a byte a second held the request until the deadline (an hour)."""
    fails_in = budget.rate_fails_at() - time.monotonic()
    if math.isinf(fails_in):
        return conn.getresponse()
    timer = threading.Timer(max(0.0, fails_in), _headers_too_slow, (budget,))
    timer.daemon = True
    timer.start()
    try:
        return conn.getresponse()
    finally:
        timer.cancel()


def _headers_too_slow(budget: _Budget) -> None:
    budget.slow_headers = True
    _cut(budget)


def request_path(url: str) -> str:
    """The request target of ``url``: its path and query, percent-encoded where they hold
    characters a request line cannot (``/café talk.opus`` → ``/caf%C3%A9%20talk.opus``);
    escapes already there stay as they are."""
    parts = urlsplit(url)
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    return path + (f"?{quote(parts.query, safe=_QUERY_SAFE)}" if parts.query else "")


def _wait_limit(budget: _Budget) -> None:
    """Let the next read on the request's socket block only until a limit can fail."""
    if budget.sock is not None:
        budget.sock.settimeout(budget.wait_s())


def _check_status(response: http.client.HTTPResponse, budget: _Budget) -> None:
    status = response.status
    if status in (404, 410):
        raise HttpStatusError(f"{budget.shown} does not exist (HTTP {status}); check the URL", status)
    if status == 429 or status >= 500:
        raise _TransientStatusError(
            f"{budget.shown} answered HTTP {status} {response.reason}; the server is busy "
            "or failing, try again later",
            status,
        )
    if status >= 400:
        raise HttpStatusError(
            f"{budget.shown} answered HTTP {status} {response.reason}; "
            "check the URL and that it is readable without a login",
            status,
        )


class _TransientStatusError(HttpStatusError, TransientConnectorError):
    """A 429 or 5xx answer: worth another try later."""


def _next_hop(url: str, location: str, budget: _Budget) -> str:
    try:
        target = urljoin(url, location)
    except ValueError:  # 'http://[::1/x'; its text does not say which URL
        raise ConnectorError(
            f"{budget.shown} redirects to {redact_url(location)!r}, which is not a valid URL; check the URL"
        ) from None
    scheme = urlsplit(target).scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise RefusedError(
            f"refused {budget.shown}: it redirects to a {scheme}:// URL; only http(s) redirects are followed"
        )
    return target


@contextmanager
def _response(
    target: Target,
    budget: _Budget,
    method: str = "GET",
    headers: Callable[[str], Mapping[str, str]] | None = None,
) -> Iterator[tuple[str, http.client.HTTPResponse]]:
    """``(final url, response)`` after redirects, status checked; closed on exit. ``headers``
    gives each hop's extra headers by its URL (sent beside the usual ones)."""
    url = target.url
    for _ in range(_MAX_REDIRECTS + 1):
        conn = _connection(url, target, budget)
        watchdog = threading.Timer(max(0.0, budget.left()), _cut, (budget,))
        watchdog.daemon = True
        watchdog.start()
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT.add(budget)
        try:
            response = _send(conn, url, method, budget, headers(url) if headers else None)
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                response.close()
                url = _next_hop(url, location, budget)
                budget.shown = f"{target.shown} (redirected to {redact_url(url)!r})"
                continue
            _check_status(response, budget)
            try:
                yield url, response
            finally:
                response.close()
            return
        finally:
            with _IN_FLIGHT_LOCK:
                _IN_FLIGHT.discard(budget)
            watchdog.cancel()
            conn.close()
    raise ConnectorError(f"{target.shown} redirects more than {_MAX_REDIRECTS} times; check the URL")


class _Decoder:
    """Undoes a gzip or deflate Content-Encoding, at most ``size`` decoded bytes per piece, so
    that the caller's size limit fails before a "gzip bomb" fills memory or disk.

    gzip may hold several members one after another (as ``gzip`` reads them); ``deflate`` is
    zlib-wrapped as RFC 9110 says, or raw deflate as some servers send it (told by its header).
    """

    def __init__(self, encoding: str, budget: _Budget) -> None:
        self.encoding = encoding
        self._budget = budget
        self._gzip = encoding != "deflate"
        self._inflater: Any = None  # made once the first two bytes tell the format
        self._head = b""

    def decode(self, data: bytes, size: int) -> Iterator[bytes]:
        if self._inflater is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._inflater = zlib.decompressobj(self._wbits(data))
        while data:
            if self._inflater.eof:  # the next gzip member; what follows a deflate stream is ignored
                if not self._gzip:
                    return
                self._inflater = zlib.decompressobj(47)
            try:
                piece = self._inflater.decompress(data, size)
            except zlib.error as exc:
                raise ConnectorError(
                    f"{self._budget.shown}: its body, sent with Content-Encoding: {self.encoding}, "
                    f"does not decode ({exc}); the file on the server is damaged, or not "
                    f"{self.encoding} data: download it with another tool and ingest the file"
                ) from None
            data = self._inflater.unconsumed_tail or self._inflater.unused_data
            if piece:
                yield piece

    def finish(self) -> None:
        """Raise when the body ended inside the encoded stream (a body cut short)."""
        if self._head or (self._inflater is not None and not self._inflater.eof):
            raise TransientConnectorError(
                f"{self._budget.shown}: the body ends inside its {self.encoding} stream (cut short); "
                "try again"
            )

    def _wbits(self, start: bytes) -> int:
        """gzip or zlib (47: told by the header; gzip sent as "deflate" too), or raw deflate (-15)."""
        zlib_header = start[0] & 0x0F == 8 and (start[0] << 8 | start[1]) % 31 == 0
        return 47 if self._gzip or zlib_header or start[:2] == b"\x1f\x8b" else -15


def _encoding(response: http.client.HTTPResponse, budget: _Budget) -> str:
    """The body's Content-Encoding, lower case (``""``: none); one this client cannot undo fails."""
    encoding = (response.getheader("Content-Encoding") or "").strip().lower()
    if encoding in _UNENCODED or encoding in _DECODED:
        return "" if encoding in _UNENCODED else encoding
    raise ConnectorError(
        f"{budget.shown}: the server sent the body with Content-Encoding: {encoding}, although "
        "identity (none) was asked, and only gzip and deflate are decoded; download it with "
        "another tool and ingest the file"
    )


def _chunks(response: http.client.HTTPResponse, budget: _Budget) -> Iterator[bytes]:
    """The body as it arrives (counted against the deadline and minimum rate); a body shorter
    than its Content-Length fails at the end."""
    while True:
        _wait_limit(budget)
        try:
            chunk = response.read1(budget.options.chunk_bytes)
        except TimeoutError:
            raise budget.stalled("data") from None
        except (OSError, http.client.HTTPException) as exc:
            budget.check()
            raise TransientConnectorError(
                f"{budget.shown}: the download broke off after {budget.total} bytes ({_broke_off(exc)}); "
                "try again"
            ) from None
        if not chunk:
            break
        budget.add(len(chunk))
        yield chunk
        budget.check()
    budget.check()  # the watchdog's cut reads as the end of the body
    if response.length:
        raise TransientConnectorError(
            f"{budget.shown}: the server closed the connection after {budget.total} bytes, "
            f"{response.length} bytes short of its Content-Length; try again"
        )


def _broke_off(exc: Exception) -> str:
    """Why a body broke off, in words: ``IncompleteRead(0 bytes read)`` read as Python, and
    counted the bytes of the chunk it was reading only."""
    if isinstance(exc, http.client.IncompleteRead):
        return "its chunked body is cut short or malformed"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _whole_size(response: http.client.HTTPResponse, budget: _Budget) -> int | None:
    """The file's whole size that a Content-Range gives (None: none). A ``206 Partial Content``
    answer of less than the whole file is refused: nothing here asks for a range, and it was
    stored as the file (the first third of an episode, without a word where Opus hides the cut)."""
    found = _CONTENT_RANGE.fullmatch((response.getheader("Content-Range") or "").strip())
    size = int(found[3]) if found and found[3] != "*" else None
    whole = found is not None and size is not None and int(found[1]) == 0 and int(found[2]) == size - 1
    if response.status == 206 and not whole:
        part = f" (bytes {found[1]}-{found[2]} of {found[3]})" if found else ""
        raise HttpStatusError(
            f"{budget.shown} answered with part of the file{part}, HTTP 206 Partial Content, although "
            "the whole file was asked for: its server (or a cache in between) is at fault; try again "
            "later, or download it with another tool and ingest the file",
            206,
        )
    return size


def _check_size(budget: _Budget, received: int, size: int | None, said: str) -> None:
    """Raise where fewer than ``size`` bytes arrived (the file's size as ``said``): a body cut
    short without a length of its own ends as a whole one does."""
    if size is not None and received < size:
        raise TransientConnectorError(
            f"{budget.shown}: the download broke off after {received} bytes of the {size} {said}; try again"
        )


def _copy(response: http.client.HTTPResponse, writer: IO[bytes], budget: _Budget, encoding: str) -> int:
    """Write the body, decoded, to ``writer``; the decoded byte count, which the size limit bounds."""
    options = budget.options
    decoder = _Decoder(encoding, budget) if encoding else None
    written = 0
    for chunk in _chunks(response, budget):
        for piece in decoder.decode(chunk, options.chunk_bytes) if decoder else (chunk,):
            written += len(piece)
            if written > options.max_bytes:
                raise MediaTooLargeError(budget.uri, options.max_bytes)
            writer.write(piece)
    if decoder is not None and budget.total:
        decoder.finish()
    return written


def _stream(
    target: Target,
    writer: IO[bytes],
    options: OpenOptions,
    expected_size: int | None = None,
    *,
    conditions: Callable[[str], Mapping[str, str]] | None = None,
    answer: dict[str, str] | None = None,
) -> tuple[str, int]:
    """Stream ``target`` into ``writer``; the URL finally fetched (after redirects) and the byte
    count. ``conditions``: the headers of a conditional GET (``If-None-Match``...) to send to a
    hop, by its URL; a ``304 Not Modified`` answer to them writes nothing. ``answer`` is given
    the status (``"status"``) and the validators the answer carries (``ETag``,
    ``Last-Modified``, ``Date``)."""
    budget = _Budget(target, options)
    with _response(target, budget, headers=conditions) as (url, response):
        if answer is not None:
            answer["status"] = str(response.status)
            answer.update((key, value) for key in _VALIDATORS if (value := response.getheader(key)))
        if response.status == 304:
            if not (conditions and conditions(url)):  # nothing was asked that it could answer
                raise ConnectorError(
                    f"{budget.shown} answered 304 Not Modified to a request without conditions; "
                    "check the URL and its server"
                )
            return url, 0
        length = response.getheader("Content-Length", "")
        encoding = _encoding(response, budget)  # then the length is not the size written
        if not encoding and length.isdigit() and int(length) > options.max_bytes:
            raise MediaTooLargeError(budget.uri, options.max_bytes)
        whole = _whole_size(response, budget)
        unbounded = response.length is None and not response.chunked  # it ends when the server closes
        written = _copy(response, writer, budget, encoding)
        _check_size(budget, budget.total, whole, "its Content-Range gives")
        if unbounded and not encoding:
            _check_size(budget, written, expected_size, "its listing recorded")
        return url, written


def download(
    target: Target, writer: IO[bytes], options: OpenOptions, *, expected_size: int | None = None
) -> int:
    """Stream ``target`` into ``writer`` within ``options``' limits; the byte count.

    ``expected_size``: the file's size as listed (a HEAD's Content-Length); a body without a
    length of its own that ends before it fails as a broken download."""
    return _stream(target, writer, options, expected_size)[1]


@contextmanager
def open_http(target: Target, options: OpenOptions, *, expected_size: int | None = None) -> Iterator[str]:
    """Download ``target`` into a temporary file and yield its path; the file goes on exit
    (``expected_size``: as :func:`download`)."""
    _check_url(target.url, target.shown)
    suffix = PurePosixPath(urlsplit(target.url).path).suffix[:8]
    with temporary_target(suffix, options) as path:
        with path.open("wb") as writer:
            download(target, writer, options, expected_size=expected_size)
        yield str(path)


def fetch_page(target: Target, options: OpenOptions, limit: int) -> tuple[str, bytes]:
    """The URL finally fetched (after redirects: what the page's relative links are relative
    to) and the body of ``target`` (a feed, an index page), at most ``limit`` bytes."""
    page = fetch_changed(target, options, limit)
    return page.url, page.body or b""


@dataclass(frozen=True)
class Page:
    """A page fetched by :func:`fetch_changed`: the URL finally fetched, the body (None: not
    modified since the validators given) and the validators to give next time (None: none, or
    none safe to give: :func:`_settled`)."""

    url: str
    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None


def fetch_changed(
    target: Target,
    options: OpenOptions,
    limit: int,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    at: Callable[[str], bool] | None = None,
) -> Page:
    """``target``'s page (at most ``limit`` bytes), asked for only where it changed since the
    validators given (a conditional GET: ``If-None-Match: etag``, ``If-Modified-Since:
    last_modified``); a ``304 Not Modified`` answer gives a :class:`Page` without a body.

    The validators are a page's: ``at`` says which URL's (the one they came from, after the
    redirects of that fetch), and only a request to that URL carries them, so a redirect that
    now leads elsewhere fetches whole, and no hop before it (another host, perhaps) sees them.
    Without ``at`` they go to ``target``'s URL only."""
    given = {
        name: value
        for name, value in (("If-None-Match", etag), ("If-Modified-Since", last_modified))
        if value and _is_validator(value)
    }
    is_theirs = at or (lambda url: url == target.url)

    def conditions(url: str) -> Mapping[str, str]:
        return given if is_theirs(url) else {}

    buffer, answer = io.BytesIO(), dict[str, str]()
    limits = replace(options, max_bytes=limit)
    try:
        url, _ = _stream(target, buffer, limits, conditions=conditions, answer=answer)
    except MediaTooLargeError:  # its remedy (--max-bytes) is for media, not for this limit
        raise ConnectorError(
            f"{target.shown} is larger than {limit} bytes, the most read of a feed or index page; "
            "give the media URLs themselves as sources"
        ) from None
    if answer["status"] == "304":
        return Page(url, None, etag, last_modified)
    new_etag = answer.get("ETag")
    return Page(
        url,
        buffer.getvalue(),
        new_etag if new_etag and _is_validator(new_etag) else None,
        _settled(answer.get("Last-Modified"), answer.get("Date")),
    )


def _is_validator(value: str) -> bool:
    """Whether ``value`` can be sent back as a validator: visible ASCII and spaces, at most
    :data:`_VALIDATOR_MAX` characters (a header with a line break would be refused, or worse)."""
    return len(value) <= _VALIDATOR_MAX and all(" " <= c <= "~" for c in value)


def _settled(last_modified: str | None, date: str | None) -> str | None:
    """``last_modified`` where it is safe to ask ``If-Modified-Since`` with it: at least
    :data:`_SETTLED_S` before the answer's ``Date`` (else this machine's clock). HTTP dates
    count whole seconds, so a page changed again within the second it was fetched in would
    answer "not modified" to its own date, and the change would be missed until the next one."""
    if not last_modified or not _is_validator(last_modified):
        return None
    try:
        changed = parsedate_to_datetime(last_modified).timestamp()
        now = parsedate_to_datetime(date).timestamp() if date else time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return last_modified if now - changed >= _SETTLED_S else None


def head(target: Target, options: OpenOptions) -> dict[str, Any]:
    """``ETag``, ``Last-Modified``, ``size`` and ``type`` of ``target`` (HEAD; GET if refused)."""
    budget = _Budget(target, options)
    try:
        with _response(target, budget, "HEAD") as (url, response):
            return _info(url, response)
    except HttpStatusError as exc:
        if exc.status not in _HEAD_REFUSED:
            raise
    with _response(target, _Budget(target, options)) as (url, response):
        return _info(url, response)


def _info(url: str, response: http.client.HTTPResponse) -> dict[str, Any]:
    """What the headers say: ``name`` (the final URL), ``ETag``, ``Last-Modified``, ``size``
    (Content-Length), ``type``, ``encoding`` (a Content-Encoding: then ``size`` is the encoded
    size, not the file's) and ``filename`` (Content-Disposition's, made safe)."""
    info: dict[str, Any] = {"name": url}
    for key in ("ETag", "Last-Modified"):
        if response.getheader(key):
            info[key] = response.getheader(key)
    length = response.getheader("Content-Length", "")
    if length.isdigit():
        info["size"] = int(length)
    info["type"] = (response.getheader("Content-Type") or "").split(";", 1)[0].strip().lower()
    encoding = (response.getheader("Content-Encoding") or "").strip().lower()
    if encoding not in _UNENCODED:
        info["encoding"] = encoding
    filename = disposition_filename(response.getheader("Content-Disposition") or "")
    if filename:
        info["filename"] = filename
    return info


def disposition_filename(header: str) -> str | None:
    """The file name a ``Content-Disposition`` header gives (RFC 6266: ``filename*=UTF-8''...``
    before ``filename=``), made safe to show and store: no folders (``../x.mp3`` → ``x.mp3``),
    no control or format characters; None when it gives none.

    A plain ``filename="épisode.mp3"`` sent as raw UTF-8 (which :mod:`http.client` reads as
    Latin-1) is read as UTF-8, as browsers do.
    """
    message = Message()
    message["Content-Disposition"] = header
    params = message.get_params(header="Content-Disposition") or []
    values = [value for key, value in params if key.lower() == "filename"]
    extended = [value for value in values if isinstance(value, tuple)]
    if extended:
        name = collapse_rfc2231_value(extended[0])
    elif values:
        name = str(values[0])
        with suppress(UnicodeError):
            name = name.encode("latin-1").decode("utf-8")
    else:
        return None
    return _safe_name(name)


def _safe_name(name: str) -> str | None:
    """The last part of ``name`` (``/`` and ``\\`` both cut), without control, format or line
    separator characters, spaces collapsed; None when nothing is left (or only ``.``/``..``)."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    name = " ".join(name.split())[:_NAME_MAX]
    return None if name.strip(".") == "" else name


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value for name, value in attrs if name == "href" and value]


def index_links(target: Target, options: OpenOptions, limit: int) -> list[str]:
    """The http(s) URLs an HTML index page links to (``<a href>``, resolved against the page's
    final URL: ``/podcasts`` redirected to ``/podcasts/`` has its links under ``/podcasts/``),
    percent-encoded as they are sent (:func:`sent_url`)."""
    parser = _Links()
    page, body = fetch_page(target, options, limit)
    parser.feed(body.decode("utf-8", errors="replace"))
    links = []
    for href in parser.hrefs:
        try:
            link = urljoin(page, href.strip())
            if urlsplit(link).scheme in HTTP_SCHEMES:
                links.append(sent_url(link.split("#", 1)[0]))
        except ValueError:  # "http://[::1/x" and the like: not a link anyone can follow
            continue
    return sorted(set(links))
