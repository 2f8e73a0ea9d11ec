"""Remote sources: ``http(s)://`` files and index pages, ``s3://`` and ``gs://`` buckets/prefixes/globs.

``open()`` streams the object into a temporary file (bounded by :class:`OpenOptions`: size
limit, connect and read timeouts, deadline, minimum rate) and yields its path, so ffmpeg
always reads a local, seekable file whatever the protocol. Buckets go through fsspec;
http(s) through :mod:`clasp_ingest.connectors.http` (interruptible, address-checked: the
links of an index page on other hosts must be public unless ``allow_private_hosts``).
Fingerprints: ETag when the server gives one (S3, GCS, most HTTP servers), otherwise
Last-Modified + Content-Length. URLs are stored and shown redacted
(:func:`~clasp_ingest.connectors.urls.redact_url`); the real one stays in the connector.
An http(s) URL is sent percent-encoded where it must be (``sp ace.wav`` → ``sp%20ace.wav``:
:func:`~clasp_ingest.connectors.urls.sent_url`) and otherwise as given, and stored in RFC 3986's
normal form (:func:`~clasp_ingest.connectors.urls.encoded_url`: ``HTTP://Host:80/a/./%7Eb.wav``
→ ``http://host/a/~b.wav``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from clasp_ingest.connectors.base import (
    MediaTooLargeError,
    OpenOptions,
    has_media_suffix,
    is_media_name,
    temporary_download,
    unreadable_ref,
)
from clasp_ingest.connectors.http import HTTP_SCHEMES, RefusedError, Target, head, index_links, open_http
from clasp_ingest.connectors.local import has_glob_magic
from clasp_ingest.connectors.urls import REDACTED, encoded_url, host_of, redact_url, sent_url

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import MediaRef, media_id_for

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = ["REMOTE_SCHEMES", "FsspecConnector", "filesystem_for", "open_remote", "remote_fingerprint"]

log = logging.getLogger("clasp_ingest.connectors")

#: URL schemes this connector handles, and the extra that brings each one's fsspec backend.
REMOTE_SCHEMES: Mapping[str, str | None] = {
    "http": None,
    "https": None,
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
}

#: Largest HTML index page read.
INDEX_MAX_BYTES = 16 * 1024 * 1024

_QUOTE = '"'
#: Content types that make an http(s) URL without a media extension a media file (else it
#: is read as an index page).
_MEDIA_TYPES = (
    "audio/", "video/", "application/ogg", "application/mp4", "application/x-matroska",
    "application/octet-stream",  # what many download endpoints send for any file
)  # fmt: skip
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "Content-MD5", "Digest", "generation")
_TIME_KEYS = ("Last-Modified", "LastModified", "updated", "mtime")


def scheme_of(url: str) -> str:
    """The lower-case URL scheme, or ``""`` for a plain path."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def _timeout_options(scheme: str, options: OpenOptions) -> dict[str, Any]:
    if scheme in ("http", "https"):
        import aiohttp

        timeout = aiohttp.ClientTimeout(
            total=None, connect=options.connect_timeout_s, sock_read=options.read_timeout_s
        )
        return {"client_kwargs": {"timeout": timeout}}
    if scheme in ("s3", "s3a"):
        return {
            "config_kwargs": {
                "connect_timeout": options.connect_timeout_s,
                "read_timeout": options.read_timeout_s,
            }
        }
    if scheme in ("gs", "gcs"):
        return {"timeout": options.read_timeout_s}
    return {}


def filesystem_for(
    url: str, storage_options: Mapping[str, Any] | None = None, options: OpenOptions | None = None
) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem and in-filesystem path of a URL, with timeouts set.

    fsspec keeps a filesystem, and the listings it made, for the life of the process; callers
    that list or open invalidate them first, so that a long-lived worker (a Dask worker, a
    served flow) ingesting the same prefix every hour sees what was added or deleted since.

    Raises ImportError with the pip command when the protocol's backend is not installed.
    """
    import fsspec.core

    scheme = scheme_of(url)
    merged = {**_timeout_options(scheme, options or OpenOptions()), **dict(storage_options or {})}
    try:
        return fsspec.core.url_to_fs(url, **merged)
    except ImportError:
        extra = REMOTE_SCHEMES.get(scheme)
        backend = {"s3": "s3fs", "gcs": "gcsfs"}.get(extra or "", "its fsspec backend")
        hint = f"pip install 'clasp-ingest[{extra}]'" if extra else f"pip install {backend}"
        raise ImportError(f"{scheme}:// sources need {backend}: {hint}") from None


def remote_fingerprint(uri: str, info: Mapping[str, Any]) -> str:
    """A version string from an fsspec ``info()`` dict: ETag first, else mtime + size."""
    for key in _VERSION_KEYS:
        value = info.get(key)
        if value:
            return f"{key.lower()}:{str(value).strip(_QUOTE)}"
    parts = [f"{key.lower()}:{info[key]}" for key in _TIME_KEYS if info.get(key)]
    if info.get("size") is not None:
        parts.append(f"size:{info['size']}")
    if not parts:
        raise ConnectorError(
            f"{uri!r} reports no ETag, modification time or size, so changes cannot be detected; "
            "serve it with an ETag or Last-Modified header"
        )
    return "|".join(parts)


def _protocol(fs: AbstractFileSystem) -> str:
    protocol = fs.protocol
    return protocol if isinstance(protocol, str) else protocol[0]


@contextmanager
def open_remote(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    options: OpenOptions | None = None,
    expected_size: int | None = None,
) -> Iterator[str]:
    """Download ``url`` into a temporary file (size-limited, with timeouts) and yield its path.

    An http(s) ``url`` is one the user gave: its host is trusted as given.
    """
    opts = options or OpenOptions()
    if expected_size is not None and expected_size > opts.max_bytes:
        raise MediaTooLargeError(redact_url(url), opts.max_bytes)
    if scheme_of(url) in HTTP_SCHEMES:
        with open_http(Target(url, frozenset({host_of(url)})), opts) as local:
            yield local
        return
    fs, path = filesystem_for(url, storage_options, opts)
    fs.invalidate_cache(path)  # an object added since this process listed (filesystem_for)
    streaming = {"block_size": 0} if _protocol(fs) in ("http", "https") else {}
    suffix = PurePosixPath(path.split("?", 1)[0]).suffix[:8]
    try:
        reader = fs.open(path, "rb", **streaming)
    except FileNotFoundError as exc:
        raise ConnectorError(f"{redact_url(url)!r} does not exist (any more); check the URL") from exc
    with reader, temporary_download(reader, redact_url(url), suffix, opts) as local:
        yield local


class FsspecConnector:
    """One remote media file, or every media file under a bucket prefix / glob / HTTP index page."""

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        open_options: OpenOptions | None = None,
    ) -> None:
        if scheme_of(url) not in REMOTE_SCHEMES:
            raise ConnectorError(f"{redact_url(url)!r} is not an http(s)://, s3:// or gs:// URL")
        stored = url
        if scheme_of(url) in HTTP_SCHEMES:
            # a fragment never reaches the server (and links add '#t='); 'sp ace.wav' is sent as
            # 'sp%20ace.wav', and stored so; 'HTTP://H/./a.wav' is stored as 'http://h/a.wav' (one
            # item, and a link that stays one) but sent as given (a signature may cover its path)
            url = sent_url(url.split("#", 1)[0])
            stored = encoded_url(url)
        self._url = url
        self._shown = redact_url(stored)
        self._real: dict[str, str] = {self._shown: url}  # redacted uri -> real URL, in memory only
        self._trusted = frozenset({host_of(url)})
        self._storage_options = dict(storage_options or {})
        self._open_options = open_options or OpenOptions()

    @property
    def source(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"FsspecConnector({self._shown!r})"

    def discover(self) -> Iterator[MediaRef]:
        if scheme_of(self._url) in HTTP_SCHEMES:
            yield from self._http_refs()
            return
        fs, path = filesystem_for(self._url, self._storage_options, self._open_options)
        fs.invalidate_cache()  # what was added or deleted since this process last listed
        for name, info in sorted(self._listing(fs, path).items()):
            yield self._ref(fs, name, info)

    @contextmanager
    def open(self, ref: MediaRef) -> Iterator[str]:
        size = ref.metadata.get("size_bytes")
        url = self._real_url(ref.uri)
        if scheme_of(url) in HTTP_SCHEMES:
            if isinstance(size, int) and size > self._open_options.max_bytes:
                raise MediaTooLargeError(ref.uri, self._open_options.max_bytes)
            listed = size if isinstance(size, int) else None  # a body without a length is checked by it
            with open_http(self._target(url), self._open_options, expected_size=listed) as local:
                yield local
            return
        with open_remote(
            url,
            storage_options=self._storage_options,
            options=self._open_options,
            expected_size=size if isinstance(size, int) else None,
        ) as local:
            yield local

    def prune_scope(self) -> str | None:
        """A bucket prefix's URI with ``/`` (a single object's URI); ``None`` for a glob or an
        HTTP index page (what it links to is not under it)."""
        if scheme_of(self._url) in HTTP_SCHEMES or has_glob_magic(self._url.split("://", 1)[1]):
            return None
        return self._shown if is_media_name(self._shown) else self._shown.rstrip("/") + "/"

    def _real_url(self, uri: str) -> str:
        """The real URL of a listed (redacted) ``uri``; lists again where this copy has not."""
        if uri not in self._real and REDACTED in uri:
            for _ in self.discover():
                pass
        return self._real.get(uri, uri)

    def _target(self, url: str) -> Target:
        via = "" if url == self._url else f"linked from {self._shown!r}"
        return Target(url, self._trusted, via)

    def _http_refs(self) -> Iterator[MediaRef]:
        info = None if is_media_name(self._url) else head(self._target(self._url), self._open_options)
        if info is None or str(info.get("type", "")).startswith(_MEDIA_TYPES):
            # a media file, by its name or (``/download?id=7``) by its Content-Type
            yield self._http_ref(self._url, info or head(self._target(self._url), self._open_options))
            return
        links = index_links(self._target(self._url), self._open_options, INDEX_MAX_BYTES)
        for url in (link for link in links if is_media_name(link)):
            try:
                yield self._http_ref(url, head(self._target(url), self._open_options))
            except RefusedError as exc:
                log.warning("skipping a link of %s: %s", self._shown, exc)
            except ConnectorError as exc:  # fails alone, listed with the run's failures
                yield unreadable_ref(redact_url(url), str(exc))
            except ValueError as exc:  # a bad port or host name (UnicodeError too)
                shown = redact_url(url)
                yield unreadable_ref(
                    shown, f"{shown!r} (linked from {self._shown!r}) is not a valid URL ({exc})"
                )

    def _http_ref(self, url: str, info: dict[str, Any]) -> MediaRef:
        uri = redact_url(encoded_url(url))  # stored in normal form, requested as it is
        self._real[uri] = url
        # the name as people read it: 'talk [draft].opus', not 'talk%20%5Bdraft%5D.opus'
        filename = unquote(PurePosixPath(urlsplit(url).path).name, errors="backslashreplace")
        if not has_media_suffix(filename) and info.get("filename"):
            # '/download?id=7' names nothing; its Content-Disposition does ('episode-7.mp3')
            filename = str(info["filename"])
        return _media_ref(uri, filename, info)

    def _listing(self, fs: AbstractFileSystem, path: str) -> dict[str, dict[str, Any]]:
        try:
            if has_glob_magic(path) and not fs.exists(path):  # an existing name is itself
                found: dict[str, dict[str, Any]] = fs.glob(path, detail=True)
            elif has_media_suffix(path) or is_media_name(path):  # a key may hold '?'; '?versionId=' too
                found = {path: fs.info(path)}
            elif _protocol(fs) in ("http", "https"):
                found = {entry["name"]: entry for entry in fs.ls(path, detail=True)}
            else:
                found = fs.find(path, detail=True)
        except FileNotFoundError as exc:
            raise ConnectorError(f"{self._shown!r} does not exist; check the URL") from exc
        return {
            name: info
            for name, info in found.items()
            if info.get("type", "file") == "file" and has_media_suffix(name)
        }

    def _ref(self, fs: AbstractFileSystem, name: str, info: dict[str, Any]) -> MediaRef:
        uri = redact_url(name if scheme_of(name) else fs.unstrip_protocol(name))
        if not any(info.get(key) for key in (*_VERSION_KEYS, *_TIME_KEYS)):
            info = {**info, **fs.info(name)}  # index-page entries carry no headers yet
        key = name.split("?", 1)[0] if scheme_of(name) else name  # a bucket key may hold '?'
        return _media_ref(uri, PurePosixPath(key).name, info)


def _media_ref(uri: str, filename: str, info: dict[str, Any]) -> MediaRef:
    """The item ``uri`` (already redacted) named ``filename``, versioned by its ``info`` headers
    (a Content-Encoding's ``size`` is the encoded one: a version, not the file's size)."""
    size = None if info.get("encoding") else info.get("size")
    return MediaRef(
        uri=uri,
        media_id=media_id_for(uri),
        fingerprint=remote_fingerprint(uri, info),
        title=PurePosixPath(filename).stem,
        metadata={
            "connector": scheme_of(uri),
            "filename": filename,
            **({"size_bytes": int(size)} if size is not None else {}),
        },
    )
