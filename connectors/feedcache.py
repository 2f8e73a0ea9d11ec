"""The feeds fetched before, kept so that the next run asks their servers whether they changed.

A scheduled ingest reads each of its feeds again on every run, and most runs find nothing new.
Feed readers ask with the validators of the last answer (``If-None-Match`` with its ``ETag``,
``If-Modified-Since`` with its ``Last-Modified``): a server whose feed did not change answers
``304 Not Modified`` without the document, and the document kept from the last run is read
instead. :class:`~clasp_ingest.connectors.feed.FeedConnector` does so for http(s) feeds where
``OpenOptions.feed_cache`` names a folder (the CLI and the flows: ``CLASP_FEED_CACHE_DIR``,
default ``~/.cache/clasp-ingest/feeds``).

Each feed is two files named by the SHA-256 of its URL (the URL itself, which may hold a
token, is not written): ``KEY.feed`` (the document) and ``KEY.json`` (its validators, size,
SHA-256, and the SHA-256 of the URL it was fetched from after redirects: the validators go only
to that URL, :func:`~clasp_ingest.connectors.http.fetch_changed`), readable by their owner only.
A kept document that does not match its record (two runs wrote at once, a damaged disk), that
another user owns, or that is older than :data:`MAX_AGE_S` (a server that answers "not
modified" wrongly would hold a feed back for ever) is not used: the feed is fetched whole.
Each write deletes the entries past that age (feeds no longer ingested) and temporary files
left by writes cut short, so the folder holds the feeds fetched within a day.
Only a well-formed document is kept (a feed cut short is fetched whole next time). Deleting
the folder costs one whole fetch of each feed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_AGE_S", "Kept", "digest", "forget", "keep", "kept"]

log = logging.getLogger("clasp_ingest.connectors")

#: The oldest kept document read instead of a whole fetch (a day: an hourly ingest fetches each
#: unchanged feed whole once a day).
MAX_AGE_S = 86_400.0
#: Age after which a temporary file of a write is taken as left by a process that died.
_STALE_TEMP_S = 3_600.0
#: Names this module writes: entries, and the temporary files of :func:`_replace`.
_NAME = re.compile(r"[0-9a-f]{64}\.(?:feed|json)")
_TEMP_NAME = re.compile(r"\.[0-9a-f]{64}\.(?:feed|json)\..+\.tmp")


@dataclass(frozen=True)
class Kept:
    """A feed document kept from an earlier fetch, and the validators its answer gave."""

    body: bytes
    etag: str | None
    last_modified: str | None
    at: str  # digest() of the URL it was fetched from, after redirects


def digest(url: str) -> str:
    """The SHA-256 of ``url`` (hex): what is written of a URL."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def _paths(folder: Path, url: str) -> tuple[Path, Path]:
    key = digest(url)
    return folder / f"{key}.feed", folder / f"{key}.json"


def kept(folder: Path, url: str, *, max_age_s: float = MAX_AGE_S) -> Kept | None:
    """The document kept for ``url`` in ``folder``, or None (none kept, not this user's, older
    than ``max_age_s``, or not matching its record)."""
    body_path, record_path = _paths(folder, url)
    try:
        stats = [record_path.stat(), body_path.stat()]
        if any(st.st_uid != os.geteuid() for st in stats) or time.time() - stats[0].st_mtime > max_age_s:
            return None
        record = json.loads(record_path.read_text(encoding="utf-8"))
        body = body_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("sha256") != hashlib.sha256(body).hexdigest():
        return None
    etag, modified, at = (record.get(key) for key in ("etag", "last_modified", "at"))
    etag, modified = (value if isinstance(value, str) else None for value in (etag, modified))
    if not (etag or modified) or not isinstance(at, str):
        return None
    return Kept(body, etag, modified, at)


def keep(
    folder: Path, url: str, body: bytes, etag: str | None, last_modified: str | None, *, at: str
) -> None:
    """Keep ``body`` as ``url``'s document, fetched from ``at`` (its URL after redirects), with
    its validators (where it has some: else the kept one is forgotten). A folder that cannot be
    written is logged; the next run fetches the feed whole."""
    if not (etag or last_modified):
        forget(folder, url)
        return
    body_path, record_path = _paths(folder, url)
    record = {"etag": etag, "last_modified": last_modified, "size": len(body), "at": digest(at)}
    record["sha256"] = hashlib.sha256(body).hexdigest()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _replace(body_path, body)
        _replace(record_path, json.dumps(record).encode())
    except OSError as exc:
        log.warning("cannot keep a feed's document in %s (%s); it is fetched whole next time", folder, exc)
        return
    _sweep(folder)


def _sweep(folder: Path) -> None:
    """Delete what no fetch will read again: this user's entries older than :data:`MAX_AGE_S`
    (feeds no longer ingested) and temporary files of writes cut short over an hour ago. Only
    names this module writes are touched (the folder may be one the user shares with others)."""
    now = time.time()
    for path in folder.iterdir():
        oldest = _STALE_TEMP_S if _TEMP_NAME.fullmatch(path.name) else MAX_AGE_S
        if not (_NAME.fullmatch(path.name) or _TEMP_NAME.fullmatch(path.name)):
            continue
        with contextlib.suppress(OSError):
            info = path.lstat()
            if info.st_uid == os.geteuid() and now - info.st_mtime > oldest:
                path.unlink()


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
