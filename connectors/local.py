"""Local files: a folder (recursive), a single file, or a glob pattern.

A location that exists as a file or folder is taken literally, so names with glob characters
(``Talk [abc123].mp4``, ``Lecture 3 [2019]/``) are found; only a location that does not exist
is read as a pattern (``glob.escape`` a pattern's literal part to match such names). Under a
folder, hidden files and folders (``._talk.mp3`` from macOS, ``.Trash/``) are skipped, as a
glob's ``*`` skips them; a hidden file named on its own is ingested. Symbolic links to files
and folders are followed (each folder once, so a link back up does not loop); a link with a
media name that leads nowhere (broken, or looping) and a sub-folder that cannot be listed are
listed as items that fail, naming the remedy, while the rest of the source is ingested.
Named pipes, sockets and devices are no media files: a folder skips them, and one named as
the source (or a link to one: ``/dev/zero``) fails, saying what it is.

The fingerprint is ``size-mtime_ns``: cheap, and it changes whenever a file is rewritten
(a ``touch`` alone also counts as a change). Content hashes are not computed.

File names are bytes on Linux and need not be UTF-8 (``caf\\xe9.wav`` written by a Latin-1
system). The URI percent-encodes the name's real bytes (``file:///.../caf%E9.wav``: valid
text, a stable media id), :func:`path_of_uri` turns it back into the very same path, and
the title and file name stored with the points show undecodable bytes as ``\\xe9`` escapes.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlparse

from clasp_ingest.connectors.base import has_media_suffix, unreadable_ref
from clasp_ingest.connectors.urls import redact_url

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import MediaRef, media_id_for

__all__ = [
    "LocalConnector",
    "display_name",
    "has_glob_magic",
    "local_fingerprint",
    "local_uri",
    "path_of_uri",
    "special_kind",
]


def has_glob_magic(text: str) -> bool:
    """Whether a path contains glob characters (``*``, ``?``, ``[``)."""
    return glob.has_magic(text)


def special_kind(path: Path) -> str | None:
    """What ``path`` (or the file a link leads to) is when it exists but is no regular file or
    folder ("a named pipe (FIFO)", "a character device"...), or ``None``: such a thing is no
    media file, and reading one could hang (a FIFO) or never end (``/dev/zero``)."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return None
    kinds = (
        (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    )  # fmt: skip
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for test, name in kinds if test(mode)), "a special file")


#: ``scheme:`` at the start of a location (one letter is a Windows drive, ``C:``).
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
#: URL schemes written without ``//`` (``data:audio/wav;base64,...``).
_OPAQUE_SCHEMES = frozenset({"blob", "data", "javascript", "magnet", "mailto"})


def _url_scheme(location: str) -> str | None:
    """The scheme of ``location`` when it is written as a URL (``ftp://...``, ``data:...``), else None."""
    scheme = _SCHEME_RE.match(location)
    if scheme is None:
        return None
    name = scheme[1].lower()
    return name if location[scheme.end() :].startswith("//") or name in _OPAQUE_SCHEMES else None


def _link_problem(path: Path) -> str:
    """Why the symbolic link ``path`` leads to no file (broken, looping, or to a device, a FIFO...),
    with the remedy."""
    try:
        target = str(path.readlink())
    except OSError:
        target = "?"
    kind = special_kind(path)
    if kind is not None:  # '/dev/zero' exists: it is just no file
        return (
            f"is a symbolic link to {display_name(target)!r}, which is {kind}, not a media file; "
            "link to the media file itself"
        )
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"is a symbolic link that loops (to {display_name(target)!r}); fix or remove the link"
    missing = display_name(target)
    return f"is a broken symbolic link (to {missing!r}, which does not exist); fix or remove the link"


def _unreadable(path: Path) -> str | None:
    """Why a listed media name is no file to read (a broken or looping symbolic link), or ``None``."""
    return _link_problem(path) if path.is_symlink() and not path.exists() else None


def _walk(top: Path, onerror: Callable[[OSError], None]) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top, onerror=onerror, followlinks=True)`` (top-down; the caller may prune
    ``dirs``) without recursion: Python 3.11's ``os.walk`` recurses, so one tree deeper than
    about 1,000 folders in an inbox stopped the listing of the whole source (RecursionError)."""
    stack = [os.fspath(top)]
    while stack:
        root = stack.pop()
        try:
            with os.scandir(root) as listing:
                entries = list(listing)
        except OSError as exc:
            onerror(exc)
            continue
        dirs: list[str] = []
        names: list[str] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # a link to a folder too
            except OSError:
                is_dir = False
            (dirs if is_dir else names).append(entry.name)
        yield root, dirs, names
        stack.extend(str(Path(root, name)) for name in reversed(dirs))


def _folder_entries(folder: Path) -> list[tuple[Path, str | None]]:
    """Media files under ``folder`` (symbolic links to files and folders followed, each folder
    once; hidden names skipped), with broken links and folders that cannot be listed as
    problems."""
    found: list[tuple[Path, str | None]] = []
    seen: set[tuple[int, int]] = set()

    def unlisted(exc: OSError) -> None:
        name = display_name(str(exc.filename))
        found.append(
            (
                Path(str(exc.filename)),
                f"folder {name!r} cannot be listed ({exc.strerror}); check its permissions",
            )
        )

    for root, dirs, names in _walk(folder, unlisted):
        stat = Path(root).stat()
        if (stat.st_dev, stat.st_ino) in seen:  # a link back up, or a second link to one folder
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith(".") or not has_media_suffix(name):
                continue
            path = Path(root, name)
            problem = _unreadable(path)
            if problem is not None or path.is_file():
                found.append((path, problem))
    return found


def local_uri(path: str | Path) -> str:
    """The ``file://`` URI of a local path as this connector records it (``~`` expanded,
    resolved: the same file always has the same URI, hence the same media id)."""
    return Path(path).expanduser().resolve().as_uri()


def display_name(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes that are not UTF-8 (kept by Python as lone
    surrogates) become ``\\xNN`` escapes, e.g. ``caf\\xe9.wav``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def local_fingerprint(path: Path) -> str:
    """``size-mtime_ns`` of a file."""
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


class LocalConnector:
    """Media files under a folder (recursively), one file, or the matches of a glob."""

    def __init__(self, location: str | Path) -> None:
        self._location = str(location)

    @property
    def source(self) -> str:
        """The location as given; a URL's credentials redacted (``ftp://user:pass@...`` is no
        local path, and its failed line showed the password)."""
        return redact_url(self._location)

    def __repr__(self) -> str:
        return f"LocalConnector({self.source!r})"

    def discover(self) -> Iterator[MediaRef]:
        for path, problem in self._entries():
            yield self._ref(path) if problem is None else unreadable_ref(path.absolute().as_uri(), problem)

    @contextmanager
    def open(self, ref: MediaRef) -> Iterator[str]:
        path = path_of_uri(ref.uri)
        if not path.is_file():
            raise ConnectorError(
                f"{display_name(str(path))!r} disappeared since it was listed; run the ingest again"
            )
        yield str(path)

    def prune_scope(self) -> str | None:
        """The URI every item of this source starts with, and nothing else stored from outside
        it does: a folder's URI with ``/`` (or an existing file's URI); ``None`` for a glob."""
        location = Path(self._location).expanduser()
        if location.is_dir():
            return local_uri(location).rstrip("/") + "/"
        if location.is_file():
            return local_uri(location)
        return None

    def _entries(self) -> list[tuple[Path, str | None]]:
        """Each media file found (resolved), or a media-named entry that cannot be read with why
        (a broken symbolic link, a folder that cannot be listed): that one fails alone."""
        # A path that exists is that path, even where its name holds glob characters:
        # ``Talk [abc123].mp4`` (yt-dlp's default name) is a file, not the pattern ``[abc123]``.
        location = Path(self._location).expanduser()
        if location.is_file():
            return [(location.resolve(), None)]
        if location.is_dir():
            found = _folder_entries(location)
        elif (kind := special_kind(location)) is not None:  # it exists: no glob, whatever its name
            problem = (
                _link_problem(location)
                if location.is_symlink()
                else f"is {kind}, not a regular file; give a media file, a folder or a glob"
            )
            raise ConnectorError(f"{self._location!r} {problem}")
        elif (scheme := _url_scheme(self._location)) is not None:  # no such path: a URL none reads
            raise ConnectorError(
                f"{redact_url(self._location)!r} is a URL with the scheme {scheme!r}, which clasp-ingest "
                "does not read; give an http(s)://, s3:// or gs:// URL, or a local file, folder or glob"
            )
        elif has_glob_magic(self._location):
            matches = glob.glob(str(location), recursive=True)  # noqa: PTH207 - absolute patterns
            found = [(Path(p), _unreadable(Path(p))) for p in matches if has_media_suffix(Path(p).name)]
            found = [(p, problem) for p, problem in found if problem is not None or p.is_file()]
        elif location.is_symlink():
            raise ConnectorError(f"{self._location!r} {_link_problem(location)}")
        else:
            raise ConnectorError(
                f"{self._location!r} is neither a file, a folder nor a glob that exists; check the path"
            )
        entries = {(p.resolve() if problem is None else p.absolute()): problem for p, problem in found}
        return sorted(entries.items(), key=lambda entry: entry[0])

    @staticmethod
    def _ref(path: Path) -> MediaRef:
        uri = path.as_uri()
        return MediaRef(
            uri=uri,
            media_id=media_id_for(uri),
            fingerprint=local_fingerprint(path),
            title=display_name(path.stem),
            metadata={
                "connector": "local",
                "filename": display_name(path.name),
                "size_bytes": path.stat().st_size,
            },
        )


def path_of_uri(uri: str) -> Path:
    """The local path of a ``file://`` URI (or a plain path); percent-escapes are the name's
    bytes, which need not be UTF-8 (the inverse of :meth:`Path.as_uri`)."""
    if uri.startswith("file://"):
        return Path(os.fsdecode(unquote_to_bytes(urlparse(uri).path)))
    return Path(uri)
