"""Qdrant storage of CLASP span vectors: an embedded engine (Qdrant Edge) or a Qdrant server.

``open_store`` picks the backend; both implement :class:`QdrantStore` and give the same
results for the same operations. Filters: :mod:`clasp_ingest.store.filters`.
"""

from __future__ import annotations

import errno
from pathlib import Path
from urllib.parse import urlsplit

from clasp_ingest.errors import ConfigError, StoreBusyError, StoreError
from clasp_ingest.log import get_logger
from clasp_ingest.store.base import (
    DEFAULT_COLLECTION,
    VECTOR_NAME,
    CollectionIdentity,
    QdrantStore,
    RetryOptions,
    StoredMedia,
    StoredPoint,
    StoreNames,
    WriteOptions,
    build_payload,
    check_collection_name,
    format_timestamp,
    point_id,
    span_url,
)
from clasp_ingest.store.edge import EdgeOptions, EdgeStore
from clasp_ingest.store.export import ExportReport, export_collection, export_to, is_client_folder
from clasp_ingest.store.filters import Condition, FilterLike, SearchFilter, Where, to_where
from clasp_ingest.store.server import ServerStore

__all__ = [
    "DEFAULT_COLLECTION",
    "VECTOR_NAME",
    "CollectionIdentity",
    "Condition",
    "EdgeOptions",
    "EdgeStore",
    "ExportReport",
    "FilterLike",
    "QdrantStore",
    "RetryOptions",
    "SearchFilter",
    "ServerStore",
    "StoreNames",
    "StoredMedia",
    "StoredPoint",
    "Where",
    "WriteOptions",
    "build_payload",
    "export_collection",
    "export_to",
    "format_timestamp",
    "open_store",
    "point_id",
    "span_url",
    "to_where",
]

_MEMORY = ":memory:"

log = get_logger("store")


def open_store(
    *,
    url: str | None = None,
    path: Path | None = None,
    api_key: str | None = None,
    prefer_grpc: bool = False,
    collection: str = DEFAULT_COLLECTION,
    backend: str = "auto",
    edge: EdgeOptions | None = None,
    write: WriteOptions | None = None,
    timeout_s: int = 30,
    names: StoreNames | None = None,
) -> QdrantStore:
    """Open a store: ``url`` → a Qdrant server; ``path`` → Qdrant Edge in that directory.

    ``":memory:"`` (as url or path) → qdrant-client's in-memory local mode.
    ``backend="client"`` with a ``path`` → qdrant-client's on-disk local mode instead of Edge;
    ``"auto"`` picks it too for a folder qdrant-client wrote (e.g. by ``store export --to PATH``).
    Either embedded form allows one open store per folder at a time (one process).
    ``names``: the options the user named the store with, for messages (default: ``--qdrant-url``,
    ``CLASP_QDRANT_URL``...); a malformed ``url`` is a ``ConfigError`` naming the URL and them.
    """
    if backend not in {"auto", "edge", "client"}:
        raise ConfigError(f"unknown store backend {backend!r}; use 'auto', 'edge' or 'client'")
    if url is not None and path is not None:
        raise ConfigError("give either a Qdrant url or an embedded path, not both")
    names = names or StoreNames()
    check_collection_name(collection, option=names.name)  # named as the caller named it
    store: QdrantStore
    if _MEMORY in (url, str(path) if path is not None else None):
        store = _client_store(collection, write, location=_MEMORY)
    elif url is not None:
        if backend == "edge":
            raise ConfigError(f"backend 'edge' needs a path, got url {url!r}")
        store = _server_store(url, collection, write, names, api_key, prefer_grpc, timeout_s)
    elif path is None:
        raise ConfigError("no store given: pass url= (Qdrant server) or path= (embedded directory)")
    else:
        store = _embedded_store(Path(path), collection, backend, edge, write, names)
    store.names = names
    return store


def _embedded_store(
    path: Path,
    collection: str,
    backend: str,
    edge: EdgeOptions | None,
    write: WriteOptions | None,
    names: StoreNames,
) -> QdrantStore:
    folder = path.expanduser()  # '~/store' as a shell would read it, also when quoted
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"the embedded store {str(folder)!r} is a file, not a folder; give a folder ({names.path}) "
            f"or a server ({names.url})"
        )
    if backend == "client" or (backend == "auto" and is_client_folder(folder)):
        return _client_store(collection, write, path=str(folder))
    return EdgeStore(folder, collection, options=edge, write=write, names=names)


def _server_store(
    url: str,
    collection: str,
    write: WriteOptions | None,
    names: StoreNames,
    api_key: str | None,
    prefer_grpc: bool,
    timeout_s: int,
) -> ServerStore:
    """The store of the Qdrant server at ``url``; a malformed URL (no host, a port out of range,
    a space in the host...) is a ``ConfigError`` naming the URL and ``names.url``. An empty or
    blank ``api_key`` (``CLASP_QDRANT_API_KEY=`` in a unit file) means no key: no header is sent."""
    api_key = api_key if api_key and api_key.strip() else None
    remedy = f"give the server's URL, e.g. http://localhost:6333 ({names.url})"
    if not url.strip():
        raise ConfigError(f"the Qdrant URL is empty; {remedy}")
    try:
        parts = urlsplit(url)
        if "://" in url and not parts.hostname:
            raise ValueError("no host")
        parts.port  # noqa: B018 - a port out of range raises ValueError
        if api_key is not None and parts.scheme.lower() != "https":
            _key_sent_in_clear(url, parts.hostname or "")
        return _client_store(
            collection, write, url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout_s
        )
    except ValueError as exc:  # urllib's and urllib3's parse errors (LocationParseError)
        from clasp_ingest.connectors.urls import redact_url

        why = str(exc).removeprefix("Failed to parse: ")
        shown = redact_url(url)
        detail = "" if why == url else f" ({why.replace(url, shown)})"
        raise ConfigError(f"the Qdrant URL {shown!r} is not valid{detail}; {remedy}") from None


#: The server URLs whose unencrypted key was reported (once per URL and process).
_KEY_IN_CLEAR_SAID: set[str] = set()


def _key_sent_in_clear(url: str, host: str) -> None:
    """An API key for an ``http://`` URL travels unencrypted. qdrant-client said so as a Python
    warning, two raw lines (its file and source line) on every run, also where the server is on
    a network of the user's own: our compose deployment's ``http://qdrant:6333``. Said here once
    per URL, as a warning where the host may be across networks, else (a loopback address,
    ``localhost``, a name without a dot such as a compose service's) at debug level."""
    from clasp_ingest.connectors.urls import redact_url

    if url in _KEY_IN_CLEAR_SAID:
        return
    _KEY_IN_CLEAR_SAID.add(url)
    say = log.debug if _host_of_your_own(host) else log.warning
    say(
        "the API key goes to %r unencrypted (http://); give an https:// URL where the traffic "
        "crosses a network that is not yours",
        redact_url(url),
    )


def _host_of_your_own(host: str) -> bool:
    """A loopback address, ``localhost`` or a single-label name (``qdrant``: a compose service)."""
    import ipaddress

    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return "." not in host.rstrip(".")


def _shown(url: str) -> str:
    """A server's URL as messages, logs and reports show it: without a password or a signed
    query (``https://user:secret@host``, ``?api_key=``), which every store error printed."""
    from clasp_ingest.connectors.urls import redact_url

    return redact_url(url)


def _client_store(collection: str, write: WriteOptions | None, **kwargs: object) -> ServerStore:
    import warnings

    from qdrant_client import QdrantClient

    where = str(kwargs.get("url") or kwargs.get("path") or kwargs.get("location"))
    remote = kwargs.get("url") is not None
    # qdrant-client checks the server version on a thread of its own and warns even when the
    # server is down; ServerStore checks it on first contact instead (check_version).
    try:
        with warnings.catch_warnings():  # said by _server_store, once and in one line
            warnings.filterwarnings("ignore", "Api key is used with an insecure connection")
            client = QdrantClient(**kwargs, check_compatibility=False)  # type: ignore[arg-type]
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise StoreBusyError(
            f"the qdrant-client folder {where!r} is open in another process or client; close it "
            "there, or serve the collection from a Qdrant server for concurrent access"
        ) from None
    except OSError as exc:  # its lock file, even to read: a read-only folder or mount
        if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
            raise
        raise StoreError(
            f"the qdrant-client folder {where!r} is not writable ({exc.strerror or exc}); qdrant-client "
            "writes a lock file there even to read: copy the folder to a writable place, or serve it "
            "from a Qdrant server"
        ) from None
    return ServerStore(
        client,
        collection,
        write=write,
        owns_client=True,
        location=_shown(where) if remote else where,
        check_version=remote,
    )
