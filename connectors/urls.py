"""Credentials in URLs: :func:`redact_url` hides them wherever a URL is shown or stored.

Signed URLs (S3/GCS/Azure/CloudFront) and API links carry secrets in their query string.
Connectors keep the real URL in memory for the download only; everything else (media ids,
fingerprints, payloads, logs, errors, Prefect parameters) sees the redacted form, in which
each credential VALUE is replaced by ``REDACTED`` (the parameter names and their order stay,
so the reader sees that the URL was signed). The signing parameters that change whenever
a URL is signed again (dates, expiries, key ids) are redacted too, so the media id of a
re-signed URL does not change. A ``user:password@`` in the host part loses its password.

:func:`encoded_url` gives an http(s) URL the one form it is sent and stored in (spaces and
non-ASCII percent-encoded, and RFC 3986's normal form, section 6.2.2: ``HTTP://Example.COM:80``,
``%7e``, ``/a/./b.wav`` as ``http://example.com``, ``~``, ``/a/b.wav``), so that spellings of one
file are one item. :func:`url_problem` says what keeps an http(s) URL from being requested.
"""

from __future__ import annotations

import re
import string
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

__all__ = ["REDACTED", "SecretUrl", "encoded_url", "host_of", "redact_url", "sent_url", "url_problem"]

#: What a credential value becomes.
REDACTED = "REDACTED"

#: Query parameters that are credentials wherever they appear (compared in lower case).
_ALWAYS = frozenset(
    {
        "token", "access_token", "id_token", "refresh_token", "auth", "authorization", "api_key",
        "apikey", "api-key", "key", "secret", "client_secret", "password", "passwd", "pwd",
        "signature", "sig", "session", "sessionid", "credential", "credentials",
    }
)  # fmt: skip
#: Prefixes of the signing parameters of AWS SigV4 (and S3-compatible stores) and GCS V4.
_PREFIXES = ("x-amz-", "x-goog-", "x-oss-", "x-cos-")
#: Parameters that belong to a signature when the URL carries one (Azure SAS with ``sig``,
#: CloudFront with ``Signature``, legacy S3 with ``Signature``/``AWSAccessKeyId``).
_WHEN_SIGNED = frozenset(
    {
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sr", "sip", "si", "skoid", "sktid", "skt",
        "ske", "sks", "skv", "saoid", "suoid", "scid", "sdd", "ses", "expires", "policy",
        "key-pair-id", "awsaccesskeyid", "googleaccessid",
    }
)  # fmt: skip
_SIGNATURES = frozenset({"sig", "signature"})
#: What :func:`encoded_url` percent-encodes: spaces, control and non-ASCII characters.
_UNSENDABLE = re.compile(r"[^\x21-\x7e]+")
#: A percent-escape; one of an unreserved character (RFC 3986 section 2.3) is that character.
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_credential(name: str, signed: bool) -> bool:
    lowered = name.lower()
    return lowered in _ALWAYS or lowered.startswith(_PREFIXES) or (signed and lowered in _WHEN_SIGNED)


def _redacted_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    signed = any(name.lower() in _SIGNATURES for name, _ in pairs)
    if not any(_is_credential(name, signed) for name, _ in pairs):
        return query
    return urlencode([(name, REDACTED if _is_credential(name, signed) else value) for name, value in pairs])


def _redacted_netloc(parts: SplitResult) -> str:
    if parts.password is None:
        return parts.netloc
    user, _, host = parts.netloc.rpartition("@")
    return f"{user.split(':', 1)[0]}:{REDACTED}@{host}"


#: A ``user:password@`` after the scheme, and a query's ``name=value`` pairs, found without parsing.
_USERINFO_RE = re.compile(r"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#@:]*):[^?#]*@")  # to the last '@'
_PAIR_RE = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&#;]*)=(?P<value>[^&#;]*)")


def _redacted_unparsed(url: str) -> str:
    """``url``, which :func:`~urllib.parse.urlsplit` cannot read (a host without its ``]``), with
    its password and credential values redacted all the same: errors quote such URLs."""
    shown = _USERINFO_RE.sub(lambda m: f"{m['head']}:{REDACTED}@", url)
    names = [m["name"] for m in _PAIR_RE.finditer(shown)]
    signed = any(name.lower() in _SIGNATURES for name in names)
    return _PAIR_RE.sub(
        lambda m: f"{m['sep']}{m['name']}={REDACTED if _is_credential(m['name'], signed) else m['value']}",
        shown,
    )


def redact_url(url: str) -> str:
    """``url`` with the values of its credentials replaced by ``REDACTED`` (see the module).

    A URL without credentials (and any plain path) comes back unchanged, character for character.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # 'http://[::1/x?token=...': its error message names it
        return _redacted_unparsed(url)
    if not parts.scheme or (not parts.query and parts.password is None):
        return url
    query = _redacted_query(parts.query)
    netloc = _redacted_netloc(parts)
    if query == parts.query and netloc == parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def sent_url(url: str) -> str:
    """An http(s) ``url`` as it is requested: after its host, spaces, control and non-ASCII
    characters percent-encoded (UTF-8, as browsers send them: ``/café talk.opus`` →
    ``/caf%C3%A9%20talk.opus``); every other character as given, so a signed URL whose
    signature covers its exact path (a CDN token, an S3 key with ``./``) is sent as signed.
    Other schemes' URLs and plain paths come back unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _DEFAULT_PORTS or not _UNSENDABLE.search(rest):
        return url
    host_end = _authority_end(rest)
    path = _UNSENDABLE.sub(lambda found: quote(found[0], safe="", errors="surrogatepass"), rest[host_end:])
    return f"{scheme}{sep}{rest[:host_end]}{path}"


def encoded_url(url: str) -> str:
    """An http(s) ``url`` as its item is stored (and named, and linked): :func:`sent_url`'s form
    in RFC 3986's normal form (section 6.2.2), so that spellings of one file are one item:
    the scheme and host in lower case, no default port (``:80``, ``:443``) or empty one,
    escapes in upper case (``%c3`` → ``%C3``) and those of unreserved characters decoded
    (``%7E`` → ``~``), no ``.`` or ``..`` segments in the path. The URL requested stays
    :func:`sent_url`'s (the connectors keep it beside the stored one).

    Nothing else changes: reserved characters and their escapes stay (``%2F`` is not ``/``;
    a signed query keeps its ``+``, ``%20``, ``&`` and ``=`` and its order), so a URL already
    in that form comes back unchanged (and keeps its media id), and so do a URL that cannot be
    parsed (a bad port: :func:`url_problem` tells), other schemes' URLs (an ``s3://`` key is a
    name, not encoded) and plain paths.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in _DEFAULT_PORTS or url_problem(url) is not None:
        return url  # a broken URL's error names it as it was given ('http://:80/x' not 'http:///x')
    scheme = scheme.lower()
    rest = sent_url(url).partition("://")[2]
    host_end = _authority_end(rest)
    path, fragment_mark, fragment = rest[host_end:].partition("#")
    path, query_mark, query = path.partition("?")
    path = _without_dot_segments(_normal_escapes(path))
    query = _normal_escapes(query)
    authority = _normal_authority(rest[:host_end], _DEFAULT_PORTS[scheme])
    return f"{scheme}{sep}{authority}{path}{query_mark}{query}{fragment_mark}{fragment}"


def _authority_end(rest: str) -> int:
    """Where the host part of a URL after its ``scheme://`` ends."""
    return min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))


def _host_and_port(authority: str) -> tuple[str, str | None]:
    """The host and the port as written (``None``: no ``:``) of an authority, as
    :func:`urllib.parse.urlsplit` reads them (``h:1:`` is host ``h``, port ``1:``)."""
    host_port = authority.rpartition("@")[2]
    if host_port.startswith("["):
        host, bracket, after = host_port.partition("]")
        host += bracket
    else:
        host, after = "", host_port
    more, colon, port = after.partition(":")
    return host + more, port if colon else None


def _normal_authority(authority: str, default_port: int) -> str:
    """``authority`` with its host in lower case (``BÜCHER.de`` too) and without an empty or
    default port; the user name and password stay as they are (they are case-sensitive)."""
    user, at, _ = authority.rpartition("@")
    host, port = _host_and_port(authority)
    if port is not None and port.isascii() and port.isdigit():  # ':0080' is ':80', ':08766' ':8766'
        port = "" if int(port) == default_port else str(int(port))
    return f"{user}{at}{host.lower()}{f':{port}' if port else ''}"


def _normal_escapes(text: str) -> str:
    """Percent-escapes in upper case, and those of unreserved characters decoded."""

    def normal(found: re.Match[str]) -> str:
        char = chr(int(found[1], 16))
        return char if char in _UNRESERVED else f"%{found[1].upper()}"

    return _ESCAPE.sub(normal, text) if "%" in text else text


def _without_dot_segments(path: str) -> str:
    """``path`` without ``.`` and ``..`` segments (RFC 3986 section 5.2.4: ``/a/x/../b`` → ``/a/b``;
    ``..`` above the root stays at the root)."""
    segments = path.split("/")
    if not path.startswith("/") or not any(part in (".", "..") for part in segments):
        return path
    kept: list[str] = []
    for part in segments[1:]:
        if part == "..":
            if kept:
                kept.pop()
        elif part != ".":
            kept.append(part)
    if segments[-1] in (".", ".."):  # '/a/b/..' is the folder '/a/'
        kept.append("")
    return "/" + "/".join(kept)


def url_problem(url: str) -> str | None:
    """What keeps the http(s) ``url`` from being requested, worded for an error message (``its
    port '8766:' is not a number``), or ``None`` when nothing does. :mod:`urllib` and the socket
    layer fail on these with a bare ValueError that does not say which part is wrong."""
    rest = url.partition("://")[2]
    authority = rest[: _authority_end(rest)]
    host, port = _host_and_port(authority)
    if host.startswith("[") and not host.endswith("]"):
        return f"its host {host!r} lacks the ']' that ends an IPv6 address"
    if not host:
        return "it names no host"
    if port and not (port.isascii() and port.isdigit()):
        return f"its port {port!r} is not a number"
    if port and not 0 < int(port) <= 65535:
        return f"its port {port} is out of range (1-65535)"
    try:
        _ = urlsplit(url).port  # what else urllib refuses (a bad IPv6 address)
        host.strip("[]").encode("idna")  # what the socket layer does with a host name
    except ValueError as exc:  # UnicodeError: a label that is empty or longer than 63 characters
        return f"its host {host!r} is not valid ({exc})"
    return None


def host_of(url: str) -> str:
    """The lower-case host name of a URL (``""`` when it has none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class SecretUrl(SecretStr):
    """A URL held as a secret: shown (``str``, JSON, Prefect's flow-run parameters) redacted."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())
