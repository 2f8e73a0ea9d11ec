"""Media sources: local folders and globs, fsspec URLs (http(s), s3, gs), RSS/Atom feeds.

:func:`connector_for` picks the connector for a source string the way the CLI does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from clasp_ingest.connectors.base import (
    MEDIA_EXTENSIONS,
    Connector,
    MediaTooLargeError,
    OpenOptions,
    is_media_name,
)
from clasp_ingest.connectors.feed import FeedConnector, looks_like_feed_name
from clasp_ingest.connectors.http import HTTP_SCHEMES, Target, head
from clasp_ingest.connectors.local import LocalConnector, path_of_uri
from clasp_ingest.connectors.remote import REMOTE_SCHEMES, FsspecConnector, scheme_of
from clasp_ingest.connectors.urls import SecretUrl, host_of, redact_url

from clasp_ingest.errors import ConfigError, ConnectorError

__all__ = [
    "MEDIA_EXTENSIONS",
    "Connector",
    "FeedConnector",
    "FsspecConnector",
    "LocalConnector",
    "MediaTooLargeError",
    "OpenOptions",
    "SecretUrl",
    "connector_for",
    "redact_url",
]

log = logging.getLogger("clasp_ingest.connectors")

_FEED_TYPES = ("rss", "atom", "/xml", "+xml")
_PAGE_TYPES = frozenset({"application/xhtml+xml"})


def connector_for(
    source: str,
    *,
    feed: bool | None = None,
    storage_options: Mapping[str, Any] | None = None,
    open_options: OpenOptions | None = None,
) -> Connector:
    """The connector for a path, glob, ``file://``/``http(s)://``/``s3://``/``gs://`` URL or feed.

    ``feed=None`` detects feeds, among http(s) URLs without a media extension: a path that
    says so (``.rss``, ``.xml``, a ``feed``/``rss``/``atom`` folder...) or else a
    ``Content-Type`` of RSS/Atom/XML. ``feed=False``: never a feed.
    """
    if not source:  # Path("") is the current folder: an unset variable would ingest it
        raise ConfigError(
            "a source is empty (an unset variable?); give a file, folder, glob or URL ('.' for the "
            "current folder)"
        )
    scheme = scheme_of(source)
    options = open_options or OpenOptions()
    if feed or (feed is None and scheme in HTTP_SCHEMES and _is_feed(source, options)):
        return FeedConnector(source, storage_options=storage_options, open_options=options)
    if scheme in REMOTE_SCHEMES:
        return FsspecConnector(source, storage_options=storage_options, open_options=options)
    if scheme == "file":
        host = urlparse(source).netloc
        if host and host.lower() != "localhost":  # file://HOST/path read the local /path
            raise ConfigError(
                f"{redact_url(source)!r} names the host {host!r}, and file:// URLs name local files; "
                "give file:///PATH (three slashes) for a file here, or mount that host's share and give "
                "its path"
            )
        return LocalConnector(path_of_uri(source))
    return LocalConnector(source)


def _is_feed(url: str, options: OpenOptions) -> bool:
    if is_media_name(url):  # '/feeds/ep.mp3' is an episode
        return False
    if looks_like_feed_name(url):
        return True
    content_type = _content_type(url, options)
    if content_type in _PAGE_TYPES:  # an XHTML index page
        return False
    return content_type.endswith(_FEED_TYPES) or "rss" in content_type


def _content_type(url: str, options: OpenOptions) -> str:
    try:
        return str(head(Target(url, frozenset({host_of(url)})), options)["type"])
    except ConnectorError as exc:
        log.debug("HEAD %s failed (%s); treating it as a media location", redact_url(url), exc)
        return ""
