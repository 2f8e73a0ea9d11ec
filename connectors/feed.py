"""RSS/Atom podcast feeds: every episode's audio/video enclosure becomes a media item.

The feed is fetched like a media download (http(s) with the same limits, a size limit of
its own; a local feed file or a bucket object through fsspec) and parsed with feedparser.
An episode's media id comes from its enclosure URL (redacted: see
:func:`~clasp_ingest.connectors.urls.redact_url`); its fingerprint from that URL, the
enclosure length and the published date, so a re-published or re-encoded episode is
ingested again. The feed's declared language (``<language>``, e.g. ``en-us``) becomes each
episode's ``metadata.language`` (``en``), which search filters match.

An http(s) feed is asked for only where it changed since the document kept from the last
fetch (``OpenOptions.feed_cache``: a conditional GET, :mod:`.feedcache`); a ``304 Not
Modified`` answer lists the kept document.

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

A feed that is not well-formed XML (feedparser's ``bozo`` flag: an unescaped ``&``, an
undefined entity, a wrong charset declaration: common in real podcast feeds) is read with
feedparser's lenient parser, its episodes listed, and one warning names the feed, the error
and its line. One that ends inside an open element (a download cut short, a damaged file)
lists the episodes before the cut and the feed itself as a failed item (``LISTING_ERROR``):
the run exits 3 and the next one reads the feed again. The episode the cut runs through is
left out: its title or date may be missing, and would be stored as read.
"""

from __future__ import annotations

import calendar
import io
import logging
import re
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin
from xml.parsers.expat import errors as expat_errors
from xml.sax import SAXParseException

from clasp_ingest.connectors import feedcache
from clasp_ingest.connectors.base import OpenOptions, copy_limited, is_media_name, unreadable_ref
from clasp_ingest.connectors.http import HTTP_SCHEMES, Page, Target, fetch_changed, open_http
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
        self._damage_warned = False

    @property
    def source(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"FeedConnector({self._shown!r})"

    def discover(self) -> Iterator[MediaRef]:
        base, parsed, damage = self._parse()
        entries = parsed.entries[:-1] if damage is not None and damage.in_entry else parsed.entries
        self._check_readable(parsed, entries, damage)
        self._cuts.clear()
        feed_title = self._fit(_title(parsed.feed), TITLE_MAX, "feed title")
        language = feed_language(parsed.feed.get("language"))
        seen: set[str] = set()
        for entry in entries:
            ref = self._episode(entry, base, feed_title, language)
            if ref is not None and ref.media_id not in seen:
                seen.add(ref.media_id)
                yield ref
        self._warn_cuts()
        if damage is not None:
            yield from self._damaged(damage, len(entries))

    def _parse(self) -> tuple[str, Any, _Damage | None]:
        """The feed's base URL (:meth:`_fetch`), feedparser's result, and what is wrong with the
        document (None where it is well-formed)."""
        import feedparser

        # Only titles, dates and links are read, never the episodes' HTML bodies: cleaning those
        # (feedparser's sanitizer and relative-link rewriting) was 9/10 of the parse time of a feed
        # with long show notes (3 MB: 6.7 s → 0.7 s). Links and enclosures are resolved the same.
        base, document, fetched = self._fetch()
        parsed = feedparser.parse(document, sanitize_html=False, resolve_relative_uris=False)
        damage = _damage(parsed, document)
        if fetched is not None:
            self._keep(fetched, whole=damage is None and bool(parsed.get("version")))
        return base, parsed, damage

    def _keep(self, page: Page, *, whole: bool) -> None:
        """Keep ``page`` (just fetched over http(s)) where it is a whole feed and its server gave
        validators, for the next run to ask whether it changed (:mod:`.feedcache`)."""
        folder = self._open_options.feed_cache
        if folder is None:
            return
        if whole and page.body is not None:
            feedcache.keep(folder, self._url, page.body, page.etag, page.last_modified, at=page.url)
        else:
            feedcache.forget(folder, self._url)

    def _check_readable(self, parsed: Any, entries: list[Any], damage: _Damage | None) -> None:
        """Raise where the document gave no episode and is damaged, or is not RSS or Atom."""
        if entries or (damage is None and parsed.get("version")):
            return
        if damage is not None and damage.cut and parsed.get("version"):
            raise ConnectorError(f"{self._ends_early(damage)}: no episode was read before the cut; try again")
        reason = parsed.get("bozo_exception", "not RSS or Atom")
        raise ConnectorError(
            f"{self._shown!r} is not a readable RSS/Atom feed ({reason}); check that the URL is "
            "the feed itself, not its web page (a page of media links: --no-feed)"
        )

    def _damaged(self, damage: _Damage, episodes: int) -> Iterator[MediaRef]:
        """Warn that the feed is not well-formed, and list it as failed where it was cut short
        (the run exits 3, and the next one reads it again: a feed has no version to skip it by)."""
        self._warn_damage(damage, episodes)
        if damage.cut:
            yield unreadable_ref(
                self._shown,
                f"{self._ends_early(damage)}: only its {episodes} episode(s) before the cut were "
                "read; the next run reads it again (episodes stored by now are skipped)",
            )

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

    def _fetch(self) -> tuple[str, bytes, Page | None]:
        """What relative enclosures are relative to (the feed's final URL; a local feed's absolute
        ``file://`` URI), the feed document, and the http(s) page just fetched whole (None: read
        from elsewhere: a file, a bucket, the document kept from the last fetch)."""
        if scheme_of(self._url) in HTTP_SCHEMES:
            return self._fetch_http()
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
        return base, buffer.getvalue(), None

    def _fetch_http(self) -> tuple[str, bytes, Page | None]:
        """An http(s) feed's final URL and document (and the page where it was fetched whole);
        asked for only where it changed since the document kept from the last fetch
        (``OpenOptions.feed_cache``), which is read where the server answers that it did not.
        The validators go only to the URL that document came from (after redirects)."""
        folder = self._open_options.feed_cache
        before = feedcache.kept(folder, self._url) if folder is not None else None
        page = fetch_changed(
            Target(self._url, self._trusted),
            self._open_options,
            FEED_MAX_BYTES,
            etag=before.etag if before else None,
            last_modified=before.last_modified if before else None,
            at=(lambda url: feedcache.digest(url) == before.at) if before else None,
        )
        if page.body is None and before is not None:
            log.info("feed %r: not modified since the last fetch; its kept document is read", self._shown)
            return page.url, before.body, None
        return page.url, page.body or b"", page

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

    def _ends_early(self, damage: _Damage) -> str:
        return (
            f"feed {self._shown!r} ends early, inside an open element ({damage.error}; a download "
            "cut short, or a damaged file)"
        )

    def _warn_damage(self, damage: _Damage, episodes: int) -> None:
        """One warning (once per connector, as :meth:`_warn_cuts`) that the feed is not
        well-formed: feedparser read it with its lenient parser, which may misread or drop the
        episodes near the error, and nothing else would tell."""
        if self._damage_warned:
            return
        self._damage_warned = True
        if damage.cut:
            read = " before the document ends inside an open element (a download cut short or a damaged file)"
        elif damage.lenient:
            read = ", those near the error may be missing or misread; ask the feed's publisher to fix it"
        else:
            read = ", their texts may show wrong characters; ask the feed's publisher to fix it"
        log.warning(
            "feed %r is not well-formed (%s); %s: %d episode(s) found%s",
            self._shown, damage.error,
            "read with a lenient parser" if damage.lenient else "read as feedparser's guess of its charset",
            episodes, read,
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
        published_ts = _epoch_s(entry)
        if published_ts is not None:  # a number, which filters take as a range (``published`` is text)
            metadata["published_ts"] = published_ts
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


#: expat's errors at the end of a document still inside an open element (or a token, a
#: character, a CDATA section): a document cut short.
_CUT_SHORT = frozenset(
    expat_errors.codes[message]
    for message in (
        expat_errors.XML_ERROR_NO_ELEMENTS,
        expat_errors.XML_ERROR_UNCLOSED_TOKEN,
        expat_errors.XML_ERROR_PARTIAL_CHAR,
        expat_errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
    )
)
#: The end tag of an RSS (``</rss>``, RSS 1.0's ``</rdf:RDF>``) or Atom (``</feed>``) document.
_ROOT_END = re.compile(r"</\s*(?:[\w.-]+:)?(?:rss|rdf|feed)\s*>", re.IGNORECASE)
#: A whole start or end tag of an episode (``<item>``, ``<entry xml:lang="en">``, ``</item>``;
#: ``<itemCount>`` is not one, nor a start tag the cut runs through, which feedparser makes no
#: entry of: taking it for an open episode dropped the complete one before it). Groups: the end
#: tag's slash, a self-closing tag's slash.
_ENTRY_TAG = re.compile(r"<(/?)\s*(?:[\w.-]+:)?(?:item|entry)(?:\s[^<>]*?)?(/?)>", re.IGNORECASE)
#: CDATA sections and comments (to the document's end where it ends inside one): the tags they
#: quote (show notes quoting ``</item>``) are not the feed's.
_QUOTED = re.compile(r"<!\[CDATA\[.*?(?:\]\]>|\Z)|<!--.*?(?:-->|\Z)", re.DOTALL)


@dataclass(frozen=True)
class _Damage:
    """What is wrong with a feed feedparser flagged (``bozo``): its error, with its line where
    the XML parser gave one; whether the document ends inside an open element (``cut``);
    whether it ends inside an episode (``in_entry``: the last one feedparser read, in part); and
    whether the XML parser failed, so that feedparser's lenient one read it (``lenient``; else
    only its charset declaration was wrong)."""

    error: str
    cut: bool
    in_entry: bool
    lenient: bool


def _damage(parsed: Any, document: bytes) -> _Damage | None:
    """How ``document`` (parsed into ``parsed``) is damaged; None when it is well-formed.

    A cut is a document without its root's end tag where expat's error is at the document's
    end or, where expat stopped earlier (at an unescaped ``&``), that is RSS or Atom."""
    if not parsed.get("bozo"):
        return None
    exc = parsed.get("bozo_exception")
    code = None
    lenient = isinstance(exc, SAXParseException)
    if isinstance(exc, SAXParseException):
        error = f"line {exc.getLineNumber()}, column {exc.getColumnNumber()}: {exc.getMessage()}"
        code = getattr(exc.getException(), "code", None)
    else:  # a charset declaration the bytes do not match (feedparser's CharacterEncodingOverride)
        error = str(exc or "not well-formed")
    text = _text_of(document, str(parsed.get("encoding") or "utf-8"))
    rooted = str(parsed.get("version", "")).startswith(("rss", "atom"))
    # expat's "unclosed token" after the root's end tag is junk there (a generator's trailing
    # "<!-- 0.2 s"), not a cut: the document is whole
    cut = (code in _CUT_SHORT or rooted) and _ROOT_END.search(text) is None
    return _Damage(error, cut, cut and _ends_inside_entry(text), lenient)


def _ends_inside_entry(text: str) -> bool:
    """Whether the last episode tag of ``text`` is a start tag (an ``<item>`` not closed)."""
    last = deque(_ENTRY_TAG.finditer(_QUOTED.sub("", text)), maxlen=1)
    return bool(last) and not last[0][1] and not last[0][2]


def _text_of(document: bytes, encoding: str) -> str:
    """``document`` decoded as feedparser read it (damaged bytes replaced), to look for tags."""
    try:
        return document.decode(encoding, errors="replace")
    except LookupError:
        return document.decode("utf-8", errors="replace")


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
    stored and shown as text, never rendered. Control characters (a terminal escape, a bell, a
    line break) become spaces: a title is one line in every payload, as a downloaded file's
    name from ``Content-Disposition`` is."""
    title = str(node.get("title", ""))
    kind = str((node.get("title_detail") or {}).get("type", ""))
    if "html" in kind:
        text = _Text()
        text.feed(title)
        text.close()
        title = "".join(text.parts)
    elif not any(unicodedata.category(char) == "Cc" for char in title):
        return title
    return " ".join("".join(" " if unicodedata.category(char) == "Cc" else char for char in title).split())


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _epoch_s(entry: Any) -> int | None:
    """The episode's date as seconds since 1970 (UTC), where the feed's date could be read."""
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    try:
        return calendar.timegm(parsed) if parsed else None
    except (TypeError, ValueError, OverflowError):
        return None


def _iso_date(entry: Any) -> str:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return str(entry.get("published", entry.get("updated", "")))
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", parsed)
