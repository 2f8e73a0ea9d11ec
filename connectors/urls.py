"""Credentials in URLs: :func:`redact_url` hides them wherever a URL is shown or stored.

Signed URLs (S3/GCS/Azure/CloudFront) and API links carry secrets in their query string.
Connectors keep the real URL in memory for the download only; everything else (media ids,
fingerprints, payloads, logs, errors, Prefect parameters) sees the redacted form, in which
each credential VALUE is replaced by ``REDACTED`` (the parameter names and their order stay,
so the reader sees that the URL was signed). The signing parameters that change whenever
a URL is signed again (dates, expiries, key ids) are redacted too, so the media id of a
re-signed URL does not change. A ``user:password@`` in the host part loses its password.

:func:`encoded_url` gives an http(s) URL the one form it is stored in (spaces and non-ASCII
percent-encoded, as it is sent), so ``sp ace.wav`` and ``sp%20ace.wav`` are one item.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import SecretStr

__all__ = ["REDACTED", "SecretUrl", "encoded_url", "host_of", "redact_url"]

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


def redact_url(url: str) -> str:
    """``url`` with the values of its credentials replaced by ``REDACTED`` (see the module).

    A URL without credentials (and any plain path) comes back unchanged, character for character.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or (not parts.query and parts.password is None):
        return url
    query = _redacted_query(parts.query)
    netloc = _redacted_netloc(parts)
    if query == parts.query and netloc == parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def encoded_url(url: str) -> str:
    """An http(s) ``url`` as it is sent and stored: after its host, spaces, control and
    non-ASCII characters are percent-encoded (UTF-8, as browsers send them: ``/café talk.opus``
    → ``/caf%C3%A9%20talk.opus``), so that both spellings of one file are one item whose link
    is a valid URL. Every other character, escapes included, stays as it is: a URL without
    such characters comes back unchanged (and keeps its media id), and so do other schemes'
    URLs (an ``s3://`` key is a name, not encoded) and plain paths.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not _UNSENDABLE.search(rest):
        return url
    host_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    path = _UNSENDABLE.sub(lambda found: quote(found[0], safe="", errors="surrogatepass"), rest[host_end:])
    return f"{scheme}{sep}{rest[:host_end]}{path}"


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
