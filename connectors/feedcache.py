"""The feeds fetched before, kept so that the next run asks their servers whether they changed.

A scheduled ingest reads each of its feeds again on every run, and most runs find nothing new.
Feed readers ask with the validators of the last answer (``If-None-Match`` with its ``ETag``,
``If-Modified-Since`` with its ``Last-Modified``): a server whose feed did not change answers
``304 Not Modified`` without the document, and the document kept from the last run is read
instead. :class:`~clasp_ingest.connectors.feed.FeedConnector` does so for http(s) feeds where
``OpenOptions.feed_cache`` names a folder (the CLI and the flows: ``CLASP_FEED_CACHE_DIR``,
default ``~/.cache/clasp-ingest/feeds``).

Each feed is two files named by the SHA-256 of its URL (the URL itself, which may hold a
token, is not written): ``KEY.feed`` (the document) and ``KEY.json`` (its validators, size and
SHA-256), readable by their owner only. A kept document that does not match its record (two
runs wrote at once, a damaged disk) is not used: the feed is fetched whole. Only a well-formed
document is kept (a feed cut short is fetched whole next time). Deleting the folder costs one
whole fetch of each feed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Kept", "forget", "keep", "kept"]

log = logging.getLogger("clasp_ingest.connectors")


@dataclass(frozen=True)
class Kept:
    """A feed document kept from an earlier fetch, and the validators its answer gave."""

    body: bytes
    etag: str | None
    last_modified: str | None


def _paths(folder: Path, url: str) -> tuple[Path, Path]:
    key = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
    return folder / f"{key}.feed", folder / f"{key}.json"


def kept(folder: Path, url: str) -> Kept | None:
    """The document kept for ``url`` in ``folder``, or None (none kept, or it does not match its
    record)."""
    body_path, record_path = _paths(folder, url)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        body = body_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("sha256") != hashlib.sha256(body).hexdigest():
        return None
    etag, modified = record.get("etag"), record.get("last_modified")
    if not (etag or modified):
        return None
    return Kept(
        body, etag if isinstance(etag, str) else None, modified if isinstance(modified, str) else None
    )


def keep(folder: Path, url: str, body: bytes, etag: str | None, last_modified: str | None) -> None:
    """Keep ``body`` as ``url``'s document with its validators (where it has some: else the
    kept one is forgotten). A folder that cannot be written is logged; the next run fetches
    the feed whole."""
    if not (etag or last_modified):
        forget(folder, url)
        return
    body_path, record_path = _paths(folder, url)
    record = {"etag": etag, "last_modified": last_modified, "size": len(body)}
    record["sha256"] = hashlib.sha256(body).hexdigest()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _replace(body_path, body)
        _replace(record_path, json.dumps(record).encode())
    except OSError as exc:
        log.warning("cannot keep a feed's document in %s (%s); it is fetched whole next time", folder, exc)


def forget(folder: Path, url: str) -> None:
    """Drop what is kept for ``url`` (its record first: a document without one is not used)."""
    for path in reversed(_paths(folder, url)):
        with contextlib.suppress(OSError):
            path.unlink()


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(name).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(name).unlink()
        raise
