"""Playable clips of returned spans (for RAG answers): context around the span, fades, any format.

ffmpeg decodes only the clip's stretch (it seeks, so long media cost little) to 16-bit PCM,
which becomes a pydub ``AudioSegment`` (``AudioSegment(data=..., ...)``: pydub's own
``from_file`` would need ``ffprobe``); pydub fades it and exports it, WAV by itself, other
formats through the same ffmpeg (:func:`~clasp_ingest.media.decode.find_ffmpeg`, e.g.
imageio-ffmpeg's). Only ``ffmpeg`` is needed, never ``ffprobe``.

Sample rate: a clip is for listening, so it keeps the source's rate and channels (at most
two) unless :class:`ClipOptions` asks for a rate or mono; the 16 kHz mono the pipeline
embeds would sound muffled (nothing above 8 kHz).
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import os
import re
import subprocess
import threading
import time
import warnings
import wave
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
from clasp_ingest.connectors.local import local_fingerprint, path_of_uri
from langchain_core.documents import Document

from clasp_ingest.errors import ClaspIngestError, ConfigError, MediaDecodeError
from clasp_ingest.types import SpanHit

if TYPE_CHECKING:
    from clasp_ingest.retriever.spans import Span

__all__ = [
    "ClipOptions",
    "SpanCut",
    "check_unchanged",
    "save_span_audio",
    "span_clip",
    "span_in_context",
    "span_samples",
]

#: The local connector's fingerprint, ``size-mtime_ns``
#: (:func:`~clasp_ingest.connectors.local.local_fingerprint`).
_LOCAL_VERSION = re.compile(r"\d+--?\d+")  # size-mtime_ns (an mtime before 1970 is negative)

#: A cut may be this much shorter than its span (ffmpeg's seek and frame rounding, a span that
#: ends a few milliseconds past the media's last sample); shorter is a failed cut.
SHORT_CUT_S = 0.25

#: File suffixes whose ffmpeg muxer has another name.
_MUXERS = {"m4a": "ipod", "aac": "adts", "oga": "ogg"}


#: The longest ``ClipOptions.timeout_s``: a day. The wait for ffmpeg overflows past about 24
#: days (``subprocess`` polls in milliseconds: "timeout is too large").
MAX_TIMEOUT_S = 86_400


@dataclass(frozen=True)
class ClipOptions:
    """How a span's clip is cut.

    * ``context_s``: seconds of the media kept before and after the span (less at its ends);
      the span starts ``min(context_s, start_s)`` into the clip, a lead the audio lacks (a
      video whose audio track starts late) being silence, as the ingest decoded it;
    * ``fade_s``: fade-in at the clip's start and fade-out at its end (at most half the clip);
      the default only removes the click of a hard cut; ``fade_s=context_s`` fades the
      context in and out around a span at full level;
    * ``sample_rate``: ``None`` keeps the source's; ``16000`` is what the pipeline embeds;
    * ``mono``: downmix; otherwise the source's channels (more than two are mixed to stereo);
    * ``timeout_s``: the longest ffmpeg may take to decode the stretch;
    * ``allow_private_hosts``: let the cut of a stored http(s) URL reach a loopback, private or
      link-local address (media served on your LAN); ``None`` reads ``CLASP_ALLOW_PRIVATE_HOSTS``
      (default: public addresses only, as a point of a shared collection may name any host).
    """

    context_s: float = 0.0
    fade_s: float = 0.01
    sample_rate: int | None = None
    mono: bool = False
    timeout_s: float = 120.0
    allow_private_hosts: bool | None = None

    def __post_init__(self) -> None:
        given = {"context_s": self.context_s, "fade_s": self.fade_s, "timeout_s": self.timeout_s}
        if self.sample_rate is not None:
            given["sample_rate"] = self.sample_rate
        for field, value in given.items():  # NaN passed the checks below and failed the cut
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"ClipOptions.{field} must be a finite number, got {value!r}")
        if self.context_s < 0 or self.fade_s < 0:
            raise ConfigError(f"ClipOptions needs context_s >= 0 and fade_s >= 0, got {self}")
        if self.sample_rate is not None and not 1000 <= self.sample_rate <= 384_000:
            raise ConfigError(f"ClipOptions.sample_rate must be in 1000..384000 Hz, got {self.sample_rate}")
        if self.timeout_s <= 0:
            raise ConfigError(f"ClipOptions.timeout_s must be > 0, got {self.timeout_s}")
        if self.timeout_s > MAX_TIMEOUT_S:  # ffmpeg's wait overflowed ("timeout is too large")
            raise ConfigError(
                f"ClipOptions.timeout_s must be at most {MAX_TIMEOUT_S:g} s (a day), got {self.timeout_s:g}"
            )


def _pydub() -> Any:
    """pydub, imported without its import-time warnings (no ffmpeg on PATH: we pass ours)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "Couldn't find ffmpeg or avconv"
            warnings.simplefilter("ignore", DeprecationWarning)  # audioop, Python 3.11-3.12
            import pydub
    except ImportError as exc:
        raise ImportError(
            f"span clips need pydub ({exc}): pip install pydub (and audioop-lts on Python >= 3.13)"
        ) from None
    return pydub


def _local_or_url(source: str) -> str:
    if urlparse(source).scheme == "file":
        return str(path_of_uri(source))  # percent-escapes are the name's bytes (maybe not UTF-8)
    return source


def _span_of(span: Document | SpanHit | Span) -> tuple[str, float, float]:
    if not isinstance(span, Document):
        return span.source, span.start_s, span.end_s
    meta = span.metadata
    try:
        return str(meta["source"]), float(meta["start_s"]), float(meta["end_s"])
    except KeyError as exc:
        raise ValueError(f"document metadata lacks {exc}; pass a Document from ClaspRetriever") from None


def _stored(span: Document | SpanHit | Span) -> dict[str, Any]:
    """The metadata the span's media item was stored with (what a caller's Span carries)."""
    if isinstance(span, Document):
        return span.metadata
    if isinstance(span, SpanHit):
        return dict(span.payload.get("metadata", {}))
    return span.extra


def _stored_version(span: Document | SpanHit | Span) -> str | None:
    """The ``version`` (fingerprint) of the media the span was ingested from, if it carries one."""
    version = _stored(span).get("version")
    return str(version) if version else None


def _mixed_evenly(span: Document | SpanHit | Span) -> bool:
    """Whether the span's item was ingested with every channel weighed alike (its track has no
    channel layout): its cut is mixed the same way, else its words may be another mix's."""
    from clasp_ingest.store.base import CHANNEL_MIX

    return _stored(span).get(CHANNEL_MIX) == "even"


def _trusted_host(span: Document | SpanHit | Span, source: str) -> str | None:
    """The host a cut of ``source`` may reach at any address: a :class:`Span` you made is taken
    as given (its host is yours); a store's hit or Document trusts none (a point of a shared
    collection may name a LAN or metadata address), so its reads reach public addresses only,
    unless ``CLASP_ALLOW_PRIVATE_HOSTS``."""
    from clasp_ingest.connectors.urls import host_of
    from clasp_ingest.retriever.spans import Span

    return host_of(source) if isinstance(span, Span) else None


def check_unchanged(span: Document | SpanHit | Span, *, allow_private_hosts: bool | None = None) -> None:
    """Raise :class:`~clasp_ingest.errors.MediaDecodeError` when the span's media changed.

    A span's times hold for the version of the file that was ingested (payload ``version``: a
    local file's ``size-mtime_ns``, an http(s) file's ETag or Last-Modified and size); a file
    rewritten since may hold other audio there, so cutting it would play, or transcribe and
    store, the wrong words. A local file that is gone (moved or deleted since) raises too,
    naming the remedy; an http(s) source is asked for its version (a HEAD, remembered for a
    minute; signed (redacted) URLs and versions of another form are not checked). A local file
    of a store's hit or Document without its recorded ``size-mtime_ns`` is refused (a point in a
    shared collection may name any file of the searching machine; a :class:`Span` you made is
    taken as given), and so is any other scheme (``s3:``, ``ftp:``...). ``allow_private_hosts``:
    as :class:`ClipOptions` says.
    """
    source, start_s, end_s = _span_of(span)
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        trusted = _trusted_host(span, source)
        _check_remote_unchanged(source, _stored_version(span), start_s, end_s, trusted, allow_private_hosts)
        return
    if scheme not in ("file", ""):
        raise MediaDecodeError(
            source,
            f"spans of {scheme}: sources are not cut (only local files and http(s) URLs are read "
            "for clips and words); download the file and ingest it from there",
        )
    path = path_of_uri(source)
    if not path.exists():
        raise MediaDecodeError(
            source,
            "the file is no longer there (moved or deleted since it was ingested); ingest it from "
            "where it is now (clasp-ingest ingest NEW_PATH) and search again, or remove its spans "
            f"(clasp-ingest store delete '{source}')",
        )
    version = _stored_version(span)
    if version is None or not _LOCAL_VERSION.fullmatch(version):
        from clasp_ingest.retriever.spans import Span

        if isinstance(span, Span):  # made by the caller, not read from a store: as given
            return
        # a point of a shared collection may name any file of this machine: without the file's
        # own version it cannot be the one ingested, and its words would reach the store
        raise MediaDecodeError(
            source,
            f"the store records no version of this file (its size and time, got {version!r}), so "
            f"it cannot be checked to be the file that was ingested; ingest it again "
            f"(clasp-ingest ingest '{path}') and search again",
        )
    try:
        now = local_fingerprint(path)
    except OSError as exc:
        raise MediaDecodeError(source, f"cannot read the file ({exc.strerror or exc})") from None
    if now != version:
        raise MediaDecodeError(
            source,
            f"the file changed since it was ingested (size-mtime {version}, now {now}), so "
            f"{start_s:.3f}–{end_s:.3f}s may hold other audio; ingest it again "
            f"(clasp-ingest ingest '{path}') and search again",
        )


#: How long a remote source's checked version is trusted (one search cuts many spans of it).
_REMOTE_CHECK_TTL_S = 60.0
_REMOTE_CHECKED: dict[str, tuple[float, str | None]] = {}
_REMOTE_CHECKED_MAX = 1024
_REMOTE_LOCK = threading.Lock()


def _check_remote_unchanged(
    source: str,
    version: str | None,
    start_s: float,
    end_s: float,
    trusted_host: str | None,
    allow_private: bool | None = None,
) -> None:
    """The http(s) form of :func:`check_unchanged`: the version (ETag, or Last-Modified and size)
    the server reports now (a HEAD, remembered for a minute) against the stored one. A URL
    stored redacted (signed), a version of another form, or a server that does not answer is
    not checked here (the cut reports what fails)."""
    from clasp_ingest.connectors.urls import REDACTED

    if version is None or REDACTED in source or not version.startswith(("etag:", "last-modified:", "size:")):
        return
    with _REMOTE_LOCK:  # one HEAD per source however many threads cut its spans
        current = _remote_version(source, trusted_host, allow_private)
    if current is not None and current != version:
        raise MediaDecodeError(
            source,
            f"the file changed on its server since it was ingested ({version}, now {current}), so "
            f"{start_s:.3f}–{end_s:.3f}s may hold other audio; ingest it again "
            f"(clasp-ingest ingest '{source}') and search again",
        )


def _remote_version(source: str, trusted_host: str | None, allow_private: bool | None) -> str | None:
    """What the server of ``source`` reports as its version now (remembered for a minute), or
    None when it does not answer with one. Call with ``_REMOTE_LOCK`` held."""
    from clasp_ingest.connectors.base import OpenOptions
    from clasp_ingest.connectors.http import Target, head
    from clasp_ingest.connectors.proxy import private_hosts_allowed
    from clasp_ingest.connectors.remote import remote_fingerprint

    now = time.monotonic()
    checked = _REMOTE_CHECKED.get(source)
    if checked is not None and now - checked[0] < _REMOTE_CHECK_TTL_S:
        return checked[1]
    try:
        current: str | None = remote_fingerprint(
            source,
            head(
                Target(source, frozenset({trusted_host} if trusted_host else ())),
                OpenOptions(
                    deadline_s=15.0,
                    allow_private_hosts=private_hosts_allowed() if allow_private is None else allow_private,
                ),
            ),
        )
    except (ClaspIngestError, OSError, ValueError):  # unreachable, or no version: the cut will say
        current = None
    if len(_REMOTE_CHECKED) >= _REMOTE_CHECKED_MAX:  # a long-lived process: keep what is fresh
        for stale in [key for key, (at, _) in _REMOTE_CHECKED.items() if now - at >= _REMOTE_CHECK_TTL_S]:
            del _REMOTE_CHECKED[stale]
        if len(_REMOTE_CHECKED) >= _REMOTE_CHECKED_MAX:
            _REMOTE_CHECKED.clear()
    _REMOTE_CHECKED[source] = (now, current)
    return current


def _decode_command(
    ffmpeg: str,
    source: str,
    start: float,
    duration: float,
    opts: ClipOptions,
    *,
    sequential: bool = False,
    proxy: str | None = None,
    even_mix: bool = False,
    ignore_length: bool = False,
    probe_longer: bool = False,
) -> list[str]:
    """ffmpeg seeking to ``start`` in the input; ``sequential``: reading the input from its
    start and dropping what comes before ``start`` (no seek: for servers without byte ranges);
    ``proxy``: the :class:`~clasp_ingest.connectors.proxy.GuardedProxy` an http(s) read goes
    through; ``even_mix``: every channel weighed alike, as the item's ingest mixed them (its
    channels have no layout: ffmpeg's downmix would drop one as LFE, or fail). A local WAV whose
    header declares less than it holds is read to its end, as its ingest read it
    (:func:`~clasp_ingest.media.wav.ignore_length_args`: a cut past that length came back empty).

    The cut keeps the ingest's timeline (:mod:`clasp_ingest.media.decode`, "Timestamps"): where
    the audio stream starts after ``start`` (a video whose audio begins late) its missing lead
    is silence, as the ingest decoded it, so sample ``n`` of the cut is at ``start + n / rate``
    seconds of the media; an MPEG stream's videos go to a null output, else ffmpeg would start
    the cut at its audio's first sample. ``probe_longer``: an MPEG stream whose audio starts
    past ffmpeg's default probe, as its ingest decoded it (``media.decode._PROBE_LONGER``)."""
    from clasp_ingest.media.decode import (
        _PROBE_LONGER,
        _RESAMPLE,
        _TIMESTAMP_ARGS,
        EVEN_MIX,
        is_mpeg_stream,
        is_url,
        required_whitelist,
    )
    from clasp_ingest.media.wav import ignore_length_args

    layouts = "mono" if opts.mono else "mono|stereo"
    mix = f"{EVEN_MIX}," if even_mix else ""
    # the ingest's filter: a late audio stream's missing start is silence (media time kept)
    audio_filter = f"{mix}{_RESAMPLE},aformat=sample_fmts=s16:channel_layouts={layouts}"
    reading = ["-rw_timeout", str(int(opts.timeout_s * 1_000_000))] if is_url(source) else []
    if proxy is not None:
        reading += ["-http_proxy", proxy, "-protocol_whitelist", "http,https,httpproxy,tcp,tls"]
    # never a playlist's or manifest's demuxer: it would open what it names (media.decode)
    reading += ["-format_whitelist", required_whitelist(ffmpeg)]
    reading += _TIMESTAMP_ARGS  # as the ingest: a damaged packet time pads no hour of silence
    if probe_longer:
        reading += _PROBE_LONGER
    if not is_url(source):
        reading += ignore_length_args(_local_or_url(source))
    elif ignore_length:  # a remote WAV read past its header's length (not for other formats: ffmpeg fails)
        reading += ["-ignore_length", "1"]
    rate = ["-ar", str(opts.sample_rate)] if opts.sample_rate else []
    window = ("-ss", f"{start:.3f}", "-t", f"{duration:.3f}")
    given = (
        ("-seekable", "0", "-i", _local_or_url(source), *window)
        if sequential
        else (*window, "-i", _local_or_url(source))
    )
    # an MPEG stream's videos copied to nowhere keep its start (media.decode); a sequential
    # read bounds only the cut's output, so this one stops where the cut does
    until = ("-t", f"{start + duration:.3f}") if sequential else ()
    keep_start = ("-map", "0:a:0", "-map", "0:v?", "-c", "copy", *until, "-f", "null", "-")
    return [
        *(ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *reading, *given),
        *("-vn", "-map", "0:a:0", "-af", audio_filter, *rate),
        *("-f", "wav", "pipe:1"),
        *(keep_start if is_mpeg_stream(_local_or_url(source)) else ()),
    ]


def _cut(
    source: str,
    start: float,
    duration: float,
    covers_s: float,
    opts: ClipOptions,
    ffmpeg: str | None,
    parse: Callable[[bytes], Any],
    length_s: Callable[[Any], float],
    span: Document | SpanHit | Span,
) -> tuple[Any, str | None]:
    """The parsed cut of ``span`` (its ``source``) and None, or None and why it failed. A url
    whose cut falls short of ``covers_s`` seconds is read once more from its start (its server
    may not allow seeking), and a ``.wav`` one then from its start past its header's length (a
    header that declares less than the file holds: the ingest decoded all of it). An http(s)
    source is read through a :class:`~clasp_ingest.connectors.proxy.GuardedProxy`, so a
    redirect or a changed DNS answer cannot lead ffmpeg to a private address. The channels are
    mixed as the span's item was."""
    from clasp_ingest.connectors.proxy import GuardedProxy

    from clasp_ingest.media.decode import find_ffmpeg, is_mpeg_stream, is_url, says_audio_found_late

    exe = find_ffmpeg(ffmpeg)
    mpeg = is_mpeg_stream(_local_or_url(source))  # its audio may start past ffmpeg's first probe
    web = urlparse(source).scheme.lower() in ("http", "https")
    trusted, private = _trusted_host(span, source), opts.allow_private_hosts
    guard = GuardedProxy(trusted, allow_private=private, timeout_s=opts.timeout_s) if web else None
    even_mix = _mixed_evenly(span)
    reason: str | None = None
    tries = [(False, False)]
    if is_url(source):
        tries += [(True, False)] + ([(True, True)] if urlparse(source).path.lower().endswith(".wav") else [])
    with guard if guard is not None else contextlib.nullcontext() as proxy:
        env = None if proxy is None else _without_no_proxy()

        def run(sequential: bool, past_header: bool, probe_longer: bool = False) -> _Decoded:
            command = _decode_command(exe, source, start, duration, opts, sequential=sequential, proxy=proxy,
                                      even_mix=even_mix, ignore_length=past_header,
                                      probe_longer=probe_longer)  # fmt: skip
            return _run_decoder(command, opts.timeout_s, env)

        for sequential, past_header in tries:
            decoded = run(sequential, past_header)
            if decoded.reason is not None and mpeg and says_audio_found_late(decoded.reason):
                decoded = run(sequential, past_header, probe_longer=True)  # its audio starts late
            parsed = parse(decoded.data) if decoded.reason is None else None
            reason = _shortfall(decoded, length_s(parsed) if parsed is not None else 0.0, covers_s)
            if guard is not None and guard.ranges_ignored and not sequential:
                reason = "its server does not allow seeking (http byte ranges)"  # read it from the start
            if reason is None:
                return parsed, None
    if guard is not None and guard.refused:
        refused = guard.refused[0]
        where = refused.host if refused.host == refused.address else f"{refused.host} ({refused.address})"
        reason = (
            f"reading it would reach {where}, a {refused.problem} address, refused (a stored URL may "
            "lead to public addresses only); if you trust the collection, set CLASP_ALLOW_PRIVATE_HOSTS=1 "
            "(search --allow-private-hosts, allow_private_hosts=True)"
        )
    elif guard is not None and guard.unreachable:  # ffmpeg only saw the proxy's 502
        reason = f"{guard.unreachable[0]}; check the URL and that its server is up"
    elif guard is not None and guard.ranges_ignored and urlparse(source).path.lower().endswith(_MP4_NAMES):
        reason = f"{reason}; {_MP4_FROM_START}"
    return None, reason


#: MP4 family names: their index (``moov``) is often at the end, which a cut read from the
#: start of a server that ignores byte ranges never reaches.
_MP4_NAMES = (".mp4", ".m4a", ".m4b", ".m4v", ".mov", ".3gp", ".3g2")
_MP4_FROM_START = (
    "an MP4/M4A whose index is at its end cannot be read from the start: remux it with "
    "'ffmpeg -i IN -c copy -movflags +faststart OUT', or serve it with byte ranges"
)


def _without_no_proxy() -> dict[str, str]:
    """This environment less ``no_proxy``: ffmpeg connects to the hosts it names itself, past
    the proxy (``no_proxy=169.254.169.254,.internal`` is common in clouds; ``*`` is every host)."""
    return {name: value for name, value in os.environ.items() if name.lower() != "no_proxy"}


@dataclass(frozen=True)
class _Decoded:
    """ffmpeg's stdout, the reason it failed (None when it did not) and its last error line."""

    data: bytes
    reason: str | None
    note: str = ""


def _run_decoder(command: list[str], timeout_s: float, env: dict[str, str] | None = None) -> _Decoded:
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _Decoded(b"", str(exc))
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    if done.returncode == 0:
        return _Decoded(done.stdout, None, lines[-1] if lines else "")
    return _Decoded(b"", (lines or [f"ffmpeg exit code {done.returncode}"])[-1])


def _shortfall(decoded: _Decoded, got_s: float, want_s: float) -> str | None:
    """Why the cut is unusable: no audio, or less than the span (None when it covers it).

    ffmpeg can end a cut early and still exit 0, e.g. over http from a server that ignores
    byte ranges ("Stream ends prematurely"): playing or transcribing that would give (and
    store) the words of a part of the span only.
    """
    if decoded.reason is not None:
        return decoded.reason
    said = f" (ffmpeg: {decoded.note})" if decoded.note else ""
    if got_s <= 0 and not said:
        return "no audio there; does the span lie beyond the end of the media?"
    if got_s < want_s - SHORT_CUT_S:
        return (
            f"ffmpeg gave {got_s:.2f} s of the {want_s:.2f} s asked for{said}; the media may be "
            "damaged there, or its server may not allow seeking (http byte ranges)"
        )
    return None


def _segment_from_wav(data: bytes) -> Any:
    """A pydub AudioSegment from ffmpeg's piped 16-bit WAV (size fields unset: read to the end).

    None when ``data`` holds no WAV (ffmpeg wrote nothing).
    """
    try:
        with wave.open(io.BytesIO(data)) as wav:
            channels, rate = wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    usable = len(frames) - len(frames) % (2 * channels)
    return _pydub().AudioSegment(data=frames[:usable], sample_width=2, frame_rate=rate, channels=channels)


def span_clip(
    span: Document | SpanHit | Span, options: ClipOptions | None = None, *, ffmpeg: str | None = None
) -> Any:
    """The span's audio as a pydub ``AudioSegment``: ``options.context_s`` around it, faded.

    Raises :class:`~clasp_ingest.errors.MediaDecodeError` naming the source when it cannot be
    read or the span lies beyond its end.
    """
    opts = options or ClipOptions()
    source, start_s, end_s = _span_of(span)
    check_unchanged(span, allow_private_hosts=opts.allow_private_hosts)
    if end_s <= start_s:
        raise ValueError(f"span of {source!r} needs end_s > start_s, got {start_s}..{end_s}")
    start = max(0.0, start_s - opts.context_s)
    stop = end_s + opts.context_s
    # the clip must cover the span; the context after it may run short (the media's end)
    clip, reason = _cut(
        source,
        start,
        stop - start,
        end_s - start,
        opts,
        ffmpeg,
        _segment_from_wav,
        _ms_to_s,
        span,
    )
    if clip is None:
        raise MediaDecodeError(source, f"cannot cut {start:.3f}–{stop:.3f}s for playback: {reason}")
    fade_ms = min(round(opts.fade_s * 1000), len(clip) // 2)
    return clip.fade_in(fade_ms).fade_out(fade_ms) if fade_ms else clip


def span_samples(
    span: Document | SpanHit | Span,
    *,
    ffmpeg: str | None = None,
    timeout_s: float = 120.0,
    allow_private_hosts: bool | None = None,
) -> np.ndarray:
    """The span's audio as 16 kHz mono float32 (what Whisper reads), cut by ffmpeg's seek.

    Only the span's stretch is decoded (``-ss``/``-t`` before the input: long media cost
    little). Raises :class:`~clasp_ingest.errors.MediaDecodeError` like :func:`span_clip`.
    ``allow_private_hosts``: as :class:`ClipOptions` says.
    """
    return span_in_context(
        span, window_s=0.0, ffmpeg=ffmpeg, timeout_s=timeout_s, allow_private_hosts=allow_private_hosts
    ).span


@dataclass(frozen=True)
class SpanCut:
    """A span's 16 kHz mono float32 audio with the media around it: ``audio`` is the cut, the
    span is ``audio[first:last]`` (:attr:`span`)."""

    audio: np.ndarray
    first: int
    last: int

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last <= self.audio.size:
            raise ValueError(
                f"SpanCut needs 0 <= first <= last <= {self.audio.size} (the cut's samples), "
                f"got {self.first}..{self.last}"
            )

    @property
    def span(self) -> np.ndarray:
        """The span's own samples (a view of :attr:`audio`)."""
        return self.audio[self.first : self.last]

    @property
    def has_context(self) -> bool:
        """Whether the cut holds audio before or after the span."""
        return self.first > 0 or self.last < self.audio.size


def span_in_context(
    span: Document | SpanHit | Span,
    *,
    window_s: float = 30.0,
    ffmpeg: str | None = None,
    timeout_s: float = 120.0,
    allow_private_hosts: bool | None = None,
) -> SpanCut:
    """The span's audio with the media around it, up to ``window_s`` seconds in all, in one
    ffmpeg cut (16 kHz mono float32, as :func:`span_samples`).

    The span sits in the middle of the window; near the media's start the window begins at 0 s
    and runs on further after the span, near its end it is cut short (the media's length is not
    stored). A span of ``window_s`` or longer is cut alone. Whisper reads 30 s at a time, so a
    short span's language can be told from the 30 s around it (a few seconds of Russian can
    sound like Bulgarian) while its words are read from the span alone. Raises
    :class:`~clasp_ingest.errors.MediaDecodeError` like :func:`span_clip`.
    ``allow_private_hosts``: as :class:`ClipOptions` says.
    """
    if not math.isfinite(window_s) or window_s < 0:
        raise ConfigError(f"span_in_context needs a finite window_s >= 0 (seconds), got {window_s!r}")
    opts = ClipOptions(fade_s=0.0, sample_rate=16_000, mono=True, timeout_s=timeout_s)
    opts = replace(opts, allow_private_hosts=allow_private_hosts)
    source, start_s, end_s = _span_of(span)
    check_unchanged(span, allow_private_hosts=allow_private_hosts)
    if end_s <= start_s:
        raise ValueError(f"span of {source!r} needs end_s > start_s, got {start_s}..{end_s}")
    pad = max(0.0, window_s - (end_s - start_s)) / 2
    # whole milliseconds (ffmpeg's -ss), so the span starts on a sample of the cut
    start = round(max(0.0, start_s - pad), 3) if pad else start_s
    stop = max(end_s, start + window_s)  # a window clipped at 0 s runs on after the span
    # the cut must cover the span; the context after it may run short (the media's end)
    samples, reason = _cut(
        source, start, stop - start, end_s - start, opts, ffmpeg, _pcm_from_wav, _seconds_at_16k, span
    )
    if samples is None:
        what = (
            "" if (start, stop) == (start_s, end_s) else f" (the span {start_s:.3f}–{end_s:.3f}s in context)"
        )
        raise MediaDecodeError(
            source, f"cannot cut {start:.3f}–{stop:.3f}s{what} for transcription: {reason}"
        )
    if pad == 0:  # the span alone, as ffmpeg cut it
        return SpanCut(samples, 0, samples.size)
    first = round((start_s - start) * 16_000)
    last = min(samples.size, first + round((end_s - start_s) * 16_000))
    if last <= first:  # the context reached the span's start, the media ended there
        raise MediaDecodeError(
            source, f"cannot cut {start_s:.3f}–{end_s:.3f}s for transcription: no audio there; does the "
            "span lie beyond the end of the media?",
        )  # fmt: skip
    return SpanCut(samples, first, last)


def _ms_to_s(clip: Any) -> float:
    return len(clip) / 1000


def _seconds_at_16k(samples: np.ndarray) -> float:
    return samples.size / 16_000


def _pcm_from_wav(data: bytes) -> np.ndarray | None:
    """float32 samples of ffmpeg's piped 16-bit mono WAV; None when ``data`` holds no WAV."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError):
        return None
    usable = len(frames) - len(frames) % 2
    return np.frombuffer(frames[:usable], dtype="<i2").astype(np.float32) / 32768.0


def save_span_audio(
    span: Document | SpanHit | Span,
    out_path: Path,
    options: ClipOptions | None = None,
    *,
    audio_format: str | None = None,
    ffmpeg: str | None = None,
) -> Path:
    """Write :func:`span_clip` to ``out_path``; returns it.

    The format defaults to ``out_path``'s suffix (``.wav``, ``.mp3``, ``.ogg``, ``.opus``,
    ``.flac``, ``.m4a``...). A source that cannot be read raises
    :class:`~clasp_ingest.errors.MediaDecodeError`, a clip that cannot be written
    :class:`~clasp_ingest.errors.ConfigError`; either names the source and leaves no file at
    ``out_path``.
    """
    from clasp_ingest.media.decode import find_ffmpeg

    out_path = Path(out_path)
    fmt = (audio_format or out_path.suffix.lstrip(".") or "wav").lower()
    clip = span_clip(span, options, ffmpeg=ffmpeg)
    clip.converter = find_ffmpeg(ffmpeg)  # pydub encodes non-WAV formats with this ffmpeg
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.part")
    try:
        with partial.open("wb") as handle:
            clip.export(handle, format=_MUXERS.get(fmt, fmt))
        partial.replace(out_path)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(
            f"cannot write the clip of {_span_of(span)[0]!r} as {fmt!r} to {str(out_path)!r} "
            f"({lines[-1] if lines else repr(exc)}); use a format ffmpeg writes (wav, mp3, ogg, "
            "opus, flac, m4a) and a writable folder"
        ) from exc
    return out_path
