"""The connector protocol and the download helper every remote connector shares.

A connector lists media (:meth:`Connector.discover`) and opens one item as something ffmpeg
reads (:meth:`Connector.open`): a local path as is, a remote object as a streamed download
into a temporary file, bounded in size and time, deleted when the context exits.
"""

from __future__ import annotations

import errno
import logging
import math
import numbers
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol, runtime_checkable

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import MediaRef

__all__ = [
    "LISTING_ERROR",
    "MAX_DEADLINE_S",
    "MAX_TIMEOUT_S",
    "MEDIA_EXTENSIONS",
    "Connector",
    "MediaTooLargeError",
    "OpenOptions",
    "copy_limited",
    "has_media_suffix",
    "is_media_name",
    "is_within",
    "temporary_download",
    "temporary_target",
    "unreadable_ref",
]

log = logging.getLogger("clasp_ingest.connectors")

#: File name endings treated as media by folder, bucket and index listings: every MPEG
#: transport/program stream name that media/decode.py reads as one (``.m2t``/``.tp``/``.trp``
#: from DVB and HDV recorders, ``.m2p``, ``.tod`` from JVC camcorders), and raw AC-3 (``.ac3``)
#: and Sun/NeXT audio (``.au``); broadcast and large WAVs (``.bwf``, ``.rf64``, ``.w64``), DV
#: tapes (``.dv``), E-AC-3 and DTS tracks (``.eac3``/``.ec3``, ``.dts``). Not ``.mod`` (camcorders
#: use it, but so do ``go.mod`` and Fortran modules, which a folder would list as failing media):
#: name such a file to ingest it.
MEDIA_EXTENSIONS = frozenset(
    {
        ".3g2", ".3gp", ".aac", ".ac3", ".aif", ".aifc", ".aiff", ".amr", ".ape", ".asf", ".au",
        ".avi", ".bwf", ".caf", ".dts", ".dv", ".eac3", ".ec3", ".flac", ".flv", ".m2p", ".m2t",
        ".m2ts", ".m4a", ".m4b", ".m4v", ".mka", ".mkv", ".mov", ".mp2", ".mp3", ".mp4", ".mpeg",
        ".mpg", ".mpga", ".mts", ".mxf", ".oga", ".ogg", ".ogv", ".opus", ".rf64", ".spx", ".tod",
        ".tp", ".trp", ".ts", ".vob", ".w64", ".wav", ".weba", ".webm", ".wma", ".wmv", ".wv",
    }
)  # fmt: skip


#: ``MediaRef.metadata`` key of an item found while listing whose details could not be read (an
#: index page's link whose HEAD failed): the run reports it failed, naming the error, and
#: ingests the source's other items.
LISTING_ERROR = "listing_error"


def unreadable_ref(uri: str, error: str) -> MediaRef:
    """The listed item ``uri`` (redacted) that failed with ``error`` before it could be versioned."""
    from clasp_ingest.types import media_id_for

    return MediaRef(uri=uri, media_id=media_id_for(uri), fingerprint="", metadata={LISTING_ERROR: error})


#: The longest ``OpenOptions`` timeout and rate window: a day (``CLASP_READ_TIMEOUT_S`` at most).
#: ``inf`` or a few hundred years overflowed the socket and timer waits of Python
#: ("timestamp out of range for platform time_t"), failing every download.
MAX_TIMEOUT_S = 86_400
#: The longest ``OpenOptions.deadline_s``: a week (``--download-deadline`` at most; 8 GiB at
#: 14 kB/s). ``inf`` killed the deadline's watchdog thread with a traceback per download.
MAX_DEADLINE_S = 7 * 86_400
#: The most each ``OpenOptions`` number may be (the least: ``__post_init__``).
_MOST = {
    "max_bytes": math.inf,
    "connect_timeout_s": MAX_TIMEOUT_S,
    "read_timeout_s": MAX_TIMEOUT_S,
    "chunk_bytes": math.inf,
    "deadline_s": MAX_DEADLINE_S,
    "min_rate_bytes_s": math.inf,
    "rate_window_s": MAX_TIMEOUT_S,
}


@dataclass(frozen=True)
class OpenOptions:
    """Bounds of one download, and where remote documents may lead.

    ``deadline_s``: the whole download (connect, redirects, body) ends by then.
    ``min_rate_bytes_s``: the average rate over any ``rate_window_s`` seconds must stay above
    it (0: no minimum). ``read_timeout_s``: longest wait for the next bytes.
    ``allow_private_hosts``: hosts reached from a remote document (feed enclosures, index
    links, redirects) may be loopback/private/link-local...; the host the user gave always may.
    ``follow_schemes``: URL schemes a remote feed's enclosures may use.
    ``feed_cache``: a folder where http(s) feeds' documents are kept, so that the next fetch
    asks whether they changed (:mod:`clasp_ingest.connectors.feedcache`); None: fetched whole.
    Timeouts and ``rate_window_s`` are at most :data:`MAX_TIMEOUT_S` (a day), ``deadline_s`` at
    most :data:`MAX_DEADLINE_S` (a week); every number is finite (``ValueError`` naming it).
    """

    max_bytes: int = 8 * 1024**3
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0
    chunk_bytes: int = 1024 * 1024
    temp_dir: Path | None = None
    deadline_s: float = 3600.0
    min_rate_bytes_s: float = 1024.0
    rate_window_s: float = 30.0
    allow_private_hosts: bool = False
    follow_schemes: frozenset[str] = frozenset({"http", "https"})
    feed_cache: Path | None = None

    def __post_init__(self) -> None:
        for field, most in _MOST.items():  # NaN passed every check below; None failed deep inside
            value = getattr(self, field)
            whole = isinstance(value, numbers.Integral)  # any size: 10**400 bytes is no limit
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not (whole or math.isfinite(value))
            ):
                raise ValueError(f"OpenOptions.{field} must be a finite number, got {value!r}")
            exact = int(value) if isinstance(value, numbers.Integral) else float(value)  # 10**400: as it is
            if exact > most:  # a longer wait overflows Python's timers: every download failed
                raise ValueError(f"OpenOptions.{field} must be at most {most:g} s, got {value!r}")
        if self.max_bytes <= 0:
            raise ValueError(f"OpenOptions.max_bytes must be > 0, got {self.max_bytes}")
        if min(self.connect_timeout_s, self.read_timeout_s, self.deadline_s, self.rate_window_s) <= 0:
            raise ValueError("OpenOptions timeouts, deadline_s and rate_window_s must be > 0 seconds")
        if self.min_rate_bytes_s < 0:
            raise ValueError(f"OpenOptions.min_rate_bytes_s must be >= 0, got {self.min_rate_bytes_s}")
        if self.chunk_bytes <= 0:
            raise ValueError(f"OpenOptions.chunk_bytes must be > 0, got {self.chunk_bytes}")


class MediaTooLargeError(ConnectorError):
    """A media object is larger than :attr:`OpenOptions.max_bytes` (permanent: no retry)."""

    def __init__(self, uri: str, limit: int) -> None:
        self.uri = uri
        self.limit = limit
        super().__init__(
            f"{uri!r} is larger than the {limit} byte download limit; "
            "raise OpenOptions.max_bytes (--max-bytes) to ingest it"
        )


@runtime_checkable
class Connector(Protocol):
    """A media source: lists items and opens one as ffmpeg-readable input."""

    @property
    def source(self) -> str:
        """The location this connector was made for (path, glob, URL)."""
        ...

    def discover(self) -> Iterator[MediaRef]:
        """Every media item of the source, each once, in a stable order."""
        ...

    def open(self, ref: MediaRef) -> AbstractContextManager[str]:
        """Context manager yielding a path or URL ffmpeg reads; cleans up on exit."""
        ...


def is_media_name(name: str) -> bool:
    """Whether a URL's path ends with a media extension (its ``?query`` and ``#fragment`` aside;
    never its host: ``https://www.abc.net.au/`` is a web site, not ``.au`` audio)."""
    path = name.split("?", 1)[0].split("#", 1)[0]
    _, sep, rest = path.partition("://")
    return has_media_suffix(rest.partition("/")[2] if sep else path)


def is_within(uri: str, scope: str) -> bool:
    """Whether ``uri`` is ``scope`` or lies under it (a folder or bucket-prefix URI, with or
    without its trailing ``/``; ``.../talks-old/x`` is not under ``.../talks``)."""
    return uri == scope or uri.startswith(scope.rstrip("/") + "/")


def has_media_suffix(name: str) -> bool:
    """Whether a file or object name ends with a media extension; ``?`` and ``#`` are part of
    such names (``What? Why.mp3``), unlike in a URL."""
    return PurePosixPath(name).suffix.lower() in MEDIA_EXTENSIONS


def copy_limited(reader: IO[bytes], writer: IO[bytes], uri: str, options: OpenOptions) -> int:
    """Copy ``reader`` to ``writer`` in chunks; raise :class:`MediaTooLargeError` past the limit."""
    total = 0
    while chunk := reader.read(options.chunk_bytes):
        total += len(chunk)
        if total > options.max_bytes:
            raise MediaTooLargeError(uri, options.max_bytes)
        writer.write(chunk)
    return total


@contextmanager
def temporary_target(suffix: str, options: OpenOptions) -> Iterator[Path]:
    """A path ``media<suffix>`` in a new temporary folder, removed on exit (also on Ctrl-C).

    A full disk there is a :class:`ConnectorError` naming the folder and the remedy, not a
    bare ``[Errno 28] No space left on device``: that read as the store's disk, and was
    retried, which cannot help (a ``ConnectorError`` is not retried)."""
    parent = Path(options.temp_dir or tempfile.gettempdir())
    try:
        tmp_dir = tempfile.mkdtemp(prefix="clasp-dl-", dir=options.temp_dir)
    except OSError as exc:  # ENOSPC here: no room, or no inode, for the folder
        if exc.errno != errno.ENOSPC:
            raise
        raise _no_room(parent, exc) from exc
    try:
        yield Path(tmp_dir) / f"media{suffix}"
    except OSError as exc:
        if not _full(exc, tmp_dir, options):
            raise
        raise _no_room(parent, exc) from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _full(exc: OSError, folder: str, options: OpenOptions) -> bool:
    """Whether ``exc`` is the disk of ``folder`` running full (less than a chunk free there): an
    ENOSPC from elsewhere while the file is read (a store on another disk) is left as it is."""
    if exc.errno != errno.ENOSPC:
        return False
    try:
        return shutil.disk_usage(folder).free < max(options.chunk_bytes, 1024**2)
    except OSError:
        return False


def _no_room(folder: Path, exc: OSError) -> ConnectorError:
    return ConnectorError(
        f"the temporary download folder '{folder}' is full ({exc.strerror}); free space on its "
        "disk, or set TMPDIR (OpenOptions.temp_dir in Python) to a folder on a disk with room "
        "for the media"
    )


@contextmanager
def temporary_download(reader: IO[bytes], uri: str, suffix: str, options: OpenOptions) -> Iterator[str]:
    """Stream ``reader`` into a temporary file and yield its path; the file goes on exit."""
    with temporary_target(suffix, options) as target:
        with target.open("wb") as writer:
            size = copy_limited(reader, writer, uri, options)
        log.debug("downloaded %s (%d bytes) to %s", uri, size, target)
        yield str(target)
