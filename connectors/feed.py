"""RSS/Atom podcast feeds: every episode's audio/video enclosure becomes a media item.

The feed is fetched like a media download (http(s) with the same limits, a size limit of
its own; a local feed file or a bucket object through fsspec) and parsed with feedparser.
An episode's media id comes from its enclosure URL (redacted: see
:func:`~clasp_ingest.connectors.urls.redact_url`); its fingerprint from that URL, the
enclosure length and the published date, so a re-published or re-encoded episode is
ingested again. The feed's declared language (``<language>``, e.g. ``en-us``) becomes each
episode's ``metadata.language`` (``en``), which search filters match.

A feed read from the network never leads to local files: its enclosures must use a scheme
of ``OpenOptions.follow_schemes`` (http(s)), and those on another host than the feed's
must resolve to public addresses unless ``allow_private_hosts``. A refused enclosure fails
alone, naming itself, the feed and the remedy. A local feed file (the user's own) may
point at local files; they are recorded by absolute ``file://`` URI, as a folder's files are,
so an episode is one item whatever the working folder (or folder ingest) it came from.
Enclosures that name no file to read (``javascript:``, ``data:``, ``mailto:``) are refused
in any feed, naming their scheme.

Relative enclosure URLs resolve against the feed's URL finally fetched (after redirects:
``/feeds/moved.rss`` redirected to ``/feeds/new/feed.rss``), as browsers and feed readers do,
and a relative local feed path against its absolute location. A relative name with a colon
(``Talk:Part1.wav``) is a name there too, not the URL scheme ``talk:``: only ``file:``,
``http(s):``, ``javascript:``, ``data:``, ``mailto:`` and the like, and ``scheme://`` start a URL.

A feed is a document from elsewhere, and its titles are stored with every span of their
episode: titles longer than :data:`TITLE_MAX` characters and other texts (guid, link, date)
longer than :data:`TEXT_MAX` are cut (ending in ``…``), and an episode whose enclosure URL is
longer than :data:`URL_MAX` is skipped, with one warning naming the feed.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

from clasp_ingest.connectors.base import OpenOptions, copy_limited, is_media_name, unreadable_ref
from clasp_ingest.connectors.http import HTTP_SCHEMES, Target, fetch_page, open_http
from clasp_ingest.connectors.local import local_uri, path_of_uri, special_kind
from clasp_ingest.connectors.remote import REMOTE_SCHEMES, filesystem_for, open_remote, scheme_of
from clasp_ingest.connectors.urls import REDACTED, encoded_url, host_of, redact_url, sent_url, url_problem

from clasp_ingest.errors import ConnectorError
from clasp_ingest.types import MediaRef, media_id_for

__all__ = [
    "FEED_MAX_BYTES",
    "TEXT_MAX",
    "TITLE_MAX",
    "URL_MAX",
    "FeedConnector",
    "feed_language",
    "looks_like_feed_name",
]

log = logging.getLogger("clasp_ingest.connectors")

#: Largest feed document read (feeds with thousands of episodes stay well under this).
FEED_MAX_BYTES = 64 * 1024 * 1024
#: Longest episode or feed title stored: each span's payload holds it (twice, and once more in
#: its ``page_content``), and a 5 MB ``<title>`` made a 132 MB store of 9 spans.
TITLE_MAX = 300
#: Longest other feed text stored with every span (guid, episode link, MIME type, a date that
#: does not parse).
TEXT_MAX = 2048
#: Longest enclosure URL followed (servers refuse request lines past 8 KiB; a path is at most 4 KiB).
URL_MAX = 16 * 1024

#: What starts an enclosure URL (``javascript:``) when no ``//`` follows; any other ``word:`` is
#: part of a relative file name (``Talk:Part1.wav``), which urljoin would read as a scheme.
_URL_SCHEMES = frozenset(
    {"file", "http", "https", "about", "blob", "data", "javascript", "mailto", "magnet", "news", "sms",
     "tel", "urn", "vbscript"}
)  # fmt: skip
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")

_FEED_SUFFIXES = (".rss", ".atom", ".xml")
_FEED_FOLDERS = frozenset({"feed", "rss", "atom"})
_FEED_QUERY_WORDS = ("format=rss", "feed=")


def looks_like_feed_name(url: str) -> bool:
    """Whether a URL's path says "feed": it ends with ``.rss``/``.atom``/``.xml`` or has a
    ``feed``, ``rss`` or ``atom`` folder (``/feed``, ``/podcast/rss/``; not ``/feedback``), or
    its query asks for one (``?format=rss``)."""
    lowered = url.lower().split("#", 1)[0]
    path, _, query = lowered.partition("?")
    folders = path.split("://", 1)[-1].split("/")[1:]
    return (
        path.endswith(_FEED_SUFFIXES)
        or any(folder in _FEED_FOLDERS for folder in folders)
        or any(word in query for word in _FEED_QUERY_WORDS)
    )


class FeedConnector:
    """The episodes of an RSS or Atom feed (their audio/video enclosures)."""

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        open_options: OpenOptions | None = None,
    ) -> None:
        self._url = url
        self._shown = redact_url(url)
        self._real: dict[str, str] = {}  # redacted enclosure uri -> real URL, in memory only
        self._remote = scheme_of(url) not in ("", "file")  # ftp:, s3:... a feed not of this machine
        self._trusted = frozenset({host_of(url)}) if scheme_of(url) in HTTP_SCHEMES else frozenset()
        self._storage_options = dict(storage_options or {})
        self._open_options = open_options or OpenOptions()
        self._cuts: Counter[str] = Counter()  # what the last listing cut or skipped, for its warning
        self._warned = False

    @property
    def source(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"FeedConnector({self._shown!r})"

    def discover(self) -> Iterator[MediaRef]:
        import feedparser

        # Only titles, dates and links are read, never the episodes' HTML bodies: cleaning those
        # (feedparser's sanitizer and relative-link rewriting) was 9/10 of the parse time of a feed
        # with long show notes (3 MB: 6.7 s → 0.7 s). Links and enclosures are resolved the same.
        base, document = self._fetch()
        parsed = feedparser.parse(document, sanitize_html=False, resolve_relative_uris=False)
        if not parsed.entries and (parsed.get("bozo") or not parsed.get("version")):
            reason = parsed.get("bozo_exception", "not RSS or Atom")
            raise ConnectorError(
                f"{self._shown!r} is not a readable RSS/Atom feed ({reason}); check that the URL is "
                "the feed itself, not its web page (a page of media links: --no-feed)"
            )
        self._cuts.clear()
        feed_title = self._fit(_title(parsed.feed), TITLE_MAX, "feed title")
        language = feed_language(parsed.feed.get("language"))
        seen: set[str] = set()
        for entry in parsed.entries:
            ref = self._episode(entry, base, feed_title, language)
            if ref is not None and ref.media_id not in seen:
                seen.add(ref.media_id)
                yield ref
        self._warn_cuts()

    @contextmanager
    def open(self, ref: MediaRef) -> Iterator[str]:
        url = self._real_url(ref.uri)
        self._check_scheme(ref.uri, url)
        length = ref.metadata.get("enclosure_length")
        if self._is_local(url):  # the user's own file, read where it is (as a folder's files)
            path = path_of_uri(url)
            if not path.is_file():
                kind = special_kind(path)
                what = f"is {kind}, not a media file" if kind else "does not exist"
                raise ConnectorError(
                    f"{ref.uri!r} (enclosure of feed {self._shown!r}) {what}; check the feed"
                )
            yield str(path)
            return
        if scheme_of(url) in HTTP_SCHEMES:
            target = Target(url, self._trusted, via=f"enclosure of feed {self._shown!r}")
            with open_http(target, self._open_options) as local:
                yield local
            return
        with open_remote(
            url,
            storage_options=self._storage_options,
            options=self._open_options,
            expected_size=length if isinstance(length, int) and length > 0 else None,
        ) as local:
            yield local

    def _real_url(self, uri: str) -> str:
        """The real URL of a listed (redacted) ``uri``; reads the feed again where this copy has not."""
        if uri not in self._real and REDACTED in uri:
            for _ in self.discover():
                pass
        return self._real.get(uri, uri)

    def _check_scheme(self, uri: str, url: str) -> None:
        """Refuse an enclosure this feed may not lead to: one that names no file to read
        (``javascript:``, ``data:``, ``mailto:``: a scheme without ``//``) in any feed, and in
        a feed read from the network one whose scheme is not in ``follow_schemes``."""
        scheme = _scheme(url)
        opaque = bool(scheme) and not url[len(scheme) + 1 :].startswith("//")
        refused = f"refused {uri!r} (enclosure of feed {self._shown!r})"
        if opaque and scheme in HTTP_SCHEMES:  # 'https:x.wav': it said "not https: ones"
            raise ConnectorError(
                f"{refused}: an {scheme}: URL without '//' names no server; write it "
                f"{scheme}://host/path (or a name relative to the feed)"
            )
        readable = not scheme or scheme == "file" or scheme in REMOTE_SCHEMES  # data:// failed in fsspec
        if not self._remote and not opaque and readable:
            return
        if not self._remote:
            raise ConnectorError(
                f"{refused}: {scheme}: names no file to read; a local feed's enclosures are files "
                f"(relative to the feed's folder, or file:// URIs) and URLs such as https://; "
                f"for a file of that name write './{uri}'"
            )
        allowed = self._open_options.follow_schemes
        followed = "/".join(sorted(allowed))
        if opaque:
            raise ConnectorError(
                f"{refused}: a feed read from the network only follows {followed} enclosures, "
                f"not {scheme}: ones, which name no file to download"
            )
        if (scheme or "file") not in allowed:
            raise ConnectorError(
                f"{refused}: a feed read from the network may only lead to {followed} URLs, not "
                f"{scheme or 'file'}:// ones; add the scheme to OpenOptions.follow_schemes if you "
                "trust the feed"
            )

    def _is_local(self, url: str) -> bool:
        """Whether ``url`` is a local file that this feed may lead to (a local feed's enclosure)."""
        return not self._remote and scheme_of(url) in ("file", "")

    def _fetch(self) -> tuple[str, bytes]:
        """What relative enclosures are relative to (the feed's final URL; a local feed's absolute
        ``file://`` URI) and the feed document."""
        if scheme_of(self._url) in HTTP_SCHEMES:
            return fetch_page(Target(self._url, self._trusted), self._open_options, FEED_MAX_BYTES)
        base = self._url
        if self._is_local(self._url):  # 'lfeed/feed.xml' read from any folder: one absolute base
            base = path_of_uri(self._url).expanduser().absolute().as_uri()
        limits = OpenOptions(
            max_bytes=FEED_MAX_BYTES,
            connect_timeout_s=self._open_options.connect_timeout_s,
            read_timeout_s=self._open_options.read_timeout_s,
        )
        fs, path = filesystem_for(self._url, self._storage_options, limits)
        buffer = io.BytesIO()
        try:
            with fs.open(path, "rb", **({"block_size": 0} if "http" in fs.protocol else {})) as reader:
                copy_limited(reader, buffer, self._url, limits)
        except FileNotFoundError as exc:
            raise ConnectorError(f"feed {self._shown!r} does not exist; check the URL") from exc
        return base, buffer.getvalue()

    def _fit(self, text: str, limit: int, what: str) -> str:
        """``text`` cut to ``limit`` characters (the last one ``…``) when longer, counted for the
        listing's warning under ``what``."""
        if len(text) <= limit:
            return text
        self._cuts[what] += 1
        return text[: limit - 1] + "…"

    def _warn_cuts(self) -> None:
        """One warning for what the listing cut or skipped (once per connector: a signed feed's
        enclosures are looked up by listing it again)."""
        if not self._cuts or self._warned:
            return
        self._warned = True
        skipped = self._cuts.pop("skipped", 0)
        parts = [f"cut {count} {what}(s)" for what, count in sorted(self._cuts.items())]
        if skipped:
            parts.append(
                f"skipped {skipped} episode(s) whose enclosure URL is longer than {URL_MAX} characters"
            )
        log.warning(
            "feed %r has texts too long to store with every span of an episode: %s (titles are cut "
            "to %d characters, other texts to %d)",
            self._shown, "; ".join(parts), TITLE_MAX, TEXT_MAX,
        )  # fmt: skip

    def _enclosure(self, base: str, href: str) -> tuple[str, bool]:
        """The real URL of an enclosure written ``href``, and whether it is a local file of a
        local feed (recorded as a folder ingest records the file: one media id)."""
        real = urljoin(base, _relative_name(href))
        if scheme_of(real) in HTTP_SCHEMES:  # a fragment is never sent; the item's links add '#t='
            return sent_url(real.split("#", 1)[0]), False
        if not self._remote and _scheme(real) == "file":
            return local_uri(path_of_uri(real)), True
        return real, False

    def _episode(self, entry: Any, base: str, feed_title: str, language: str | None) -> MediaRef | None:
        enclosure = _media_enclosure(entry)
        if enclosure is None:
            return None
        written = str(enclosure.get("href", "")).strip()  # " javascript:x" read as a file name
        # measured as written (before work on it) and as stored: percent-encoded, 3-9 times longer
        try:
            real, local = self._enclosure(base, written) if len(written) <= URL_MAX else (written, False)
        except ValueError as exc:  # urljoin's 'Invalid IPv6 URL' failed the whole feed
            shown = redact_url(written)
            return unreadable_ref(
                shown,
                f"{shown!r} (enclosure of feed {self._shown!r}) is not a valid URL: "
                f"{url_problem(written) or exc}; check the feed",
            )
        stored = encoded_url(real)  # requested as written, stored in normal form (connectors.urls)
        if len(stored) > URL_MAX:
            self._cuts["skipped"] += 1
            return None
        href = redact_url(stored)
        self._real[href] = real
        length = _int_or_none(enclosure.get("length"))
        published = self._fit(_iso_date(entry), TEXT_MAX, "date")
        title = self._fit(_title(entry) or href.rsplit("/", 1)[-1], TITLE_MAX, "episode title")
        metadata: dict[str, Any] = {
            "connector": "feed",
            "feed_url": self._shown,
            "feed_title": feed_title,
            "episode_title": title,
            "guid": self._fit(redact_url(str(entry.get("id", ""))), TEXT_MAX, "guid"),
            "mime_type": self._fit(str(enclosure.get("type", "")), TEXT_MAX, "MIME type"),
        }
        if published:
            metadata["published"] = published
        if language:
            metadata["language"] = language
        if length is not None:
            metadata["enclosure_length"] = length
        if entry.get("link"):
            metadata["episode_link"] = self._fit(redact_url(str(entry.get("link"))), TEXT_MAX, "episode link")
        version = _local_version(real) if local else None
        return MediaRef(
            uri=href,
            media_id=media_id_for(href),
            fingerprint=version or f"{href}|{length if length is not None else ''}|{published}",
            title=title,
            metadata=metadata,
        )


def _local_version(enclosure: str) -> str | None:
    """A local enclosure's own version (its ``size-mtime_ns``, as the local connector records a
    file's): a rewritten file is seen as changed, and its spans can be checked before they are
    cut (search refuses to cut a local file whose version it cannot check). None otherwise."""
    from clasp_ingest.connectors.local import local_fingerprint, path_of_uri

    if scheme_of(enclosure) not in ("file", ""):
        return None
    path = path_of_uri(enclosure)
    try:
        return local_fingerprint(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _relative_name(href: str) -> str:
    """``href`` as urljoin should read it: a relative name with a colon (``Talk:Part1.wav``),
    which urljoin takes for the URL scheme ``talk:`` and leaves unresolved, made
    ``./Talk:Part1.wav``; a URL (``file:``, ``http(s):``, ``javascript:``... or ``scheme://``)
    and any other name as it is."""
    found = _SCHEME.match(href)
    if found is None or found[0][:-1].lower() in _URL_SCHEMES or href[found.end() :].startswith("//"):
        return href
    return f"./{href}"


def _scheme(url: str) -> str:
    """The lower-case scheme of a resolved enclosure URL, also one without ``//``
    (``javascript:``, ``data:``); ``""`` for a plain path."""
    found = _SCHEME.match(url)
    return found[0][:-1].lower() if found else ""


def feed_language(tag: Any) -> str | None:
    """A feed's declared language (RSS ``<language>``, Atom ``xml:lang``) as the two-letter code
    of its primary subtag (``en-US`` → ``en``, ``pt_BR`` → ``pt``, ``eng`` → ``en``), the form
    ``SearchFilter(language=...)`` matches; None when absent or not a language tag."""
    from clasp_ingest.media.languages import tag_language

    return tag_language(str(tag or ""))


def _media_enclosure(entry: Any) -> Mapping[str, Any] | None:
    """The first audio/video enclosure of an entry (by MIME type or file extension)."""
    candidates = list(entry.get("enclosures", []))
    candidates += [link for link in entry.get("links", []) if link.get("rel") == "enclosure"]
    for item in candidates:
        mime = str(item.get("type", "")).lower()
        href = str(item.get("href", ""))
        if href and (mime.startswith(("audio/", "video/")) or is_media_name(href)):
            return item
    return None


_SKIPPED_TAGS = frozenset({"script", "style"})


class _Text(HTMLParser):
    """The text of an HTML fragment: tags dropped, entities decoded, script/style bodies skipped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _title(node: Any) -> str:
    """A feed's or an episode's title as plain text. An HTML title (Atom ``type="html"``/``"xhtml"``)
    loses its markup (``<b>E</b> 1`` → ``E 1``); feedparser's sanitizer is off, and a title is
    stored and shown as text, never rendered."""
    title = str(node.get("title", ""))
    kind = str((node.get("title_detail") or {}).get("type", ""))
    if "html" not in kind:
        return title
    text = _Text()
    text.feed(title)
    text.close()
    return " ".join("".join(text.parts).split())


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _iso_date(entry: Any) -> str:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return str(entry.get("published", entry.get("updated", "")))
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", parsed)
