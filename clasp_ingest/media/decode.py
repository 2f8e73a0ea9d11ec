"""Streamed decoding of anything ffmpeg reads to 16 kHz mono float32.

One ffmpeg subprocess per media item writes raw float32 PCM to a pipe; we read it in
fixed-size blocks (never the whole file), drain its stderr on a thread (keeping only the
tail, so ffmpeg never blocks on a full pipe), guard every read with a timeout and always
reap the process.

Damage: ffmpeg logs at ``level+info`` so every line carries its level. Decoding errors
(``Header missing``, ``Invalid data found``, ``partial file``...) and a stream that ends well
before the duration the container declares (a cut download) are *damage*: with
``DecodeOptions.strict`` they raise; otherwise the audio decoded so far is kept and one
warning per item goes to ``on_warning`` (and the log).

Timestamps: the audio filter ``aresample=async=1:first_pts=0`` pads the start with
silence when the audio stream begins after the start of the media (a video whose audio
starts at an offset), so sample ``n`` of the output is at ``n / sample_rate`` seconds of
the media timeline. A jump of over ten minutes in a stream's packet times (:data:`_TIMESTAMP_JUMP_S`:
a damaged time, or a long gap in a recording) is not followed: the audio after it follows on by
its samples, with a warning. MPEG transport and program streams (``.ts``, ``.m2ts``, ``.mpg``,
``.vob``...) need more: ffmpeg moves their start to that of the streams it uses, so there
the video streams are copied to a null output too (no decoding), and the start stays the
media's.

Channels: a track with a channel layout (mono, stereo, a film's 5.1) is downmixed by ffmpeg
(``-ac 1``: a 5.1 mix keeps the centre's dialogue ahead, the LFE out). A track without one
(a multitrack recorder's 6- or 8-channel WAV: one microphone per channel, no mask) would get
a guessed layout, whose "LFE" channel the downmix drops, and one of 9-23 or over 24 channels
none at all (ffmpeg fails: "Rematrix is needed"); such a track is decoded again with every
channel weighted alike (``pan``), before any of it was handed on.

WAV lengths (:mod:`clasp_ingest.media.wav`): a local WAV's ``data`` size is read from its
header. One that declares less than the file holds as audio (a recorder that crashed before
updating it; a WAV over 4 GiB whose size wrapped) is decoded to the file's end
(``-ignore_length 1``) with a warning, strict or not: nothing is lost, but other tools read
less. One that declares more (a cut file) is the declared duration that shows a cut: ffmpeg's
comes from the file's size there.

Scale: float data at the wrong scale (e.g. integer PCM values written as float: a sustained
excess over :data:`_OVER_FULL_SCALE`, +12 dBFS) is scaled down as it streams
(:class:`_Rescale`), with one warning per item, strict or not: nothing is lost. A single
sample far past any audio (:data:`_DAMAGED`) is damage, decoded as silence like NaN.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
import re
import select
import shutil
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from clasp_ingest.errors import ConfigError, IngestInterrupted, MediaDecodeError
from clasp_ingest.log import get_logger
from clasp_ingest.media.wav import WavLength, wav_length

__all__ = [
    "EVEN_MIX",
    "MAX_READ_TIMEOUT_S",
    "REFERENCING_DEMUXERS",
    "DecodeOptions",
    "decode_audio",
    "demuxer_whitelist",
    "describe_damage",
    "find_ffmpeg",
    "is_mpeg_stream",
    "is_url",
    "stream_audio",
]

logger = get_logger("media.decode")

_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_BYTES_PER_SAMPLE = 4  # f32le
_STDERR_TAIL_LINES = 20
#: ffmpeg lines quoted in an error message.
_QUOTED_LINES = 3
#: ffmpeg's advice to its own command-line users: not ours to give.
_HINTS = ("To ignore this",)
#: ``[context @ 0x...] [level] message``: the layout of ``-loglevel level+...``.
_LEVEL_RE = re.compile(
    r"^(?P<context>(?:\[[^\]]*\] )*?)"
    r"\[(?P<level>trace|debug|verbose|info|warning|error|fatal|panic)\] (?P<message>.*)$"
)
_DURATION_RE = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)(?:, start: (-?\d+(?:\.\d+)?))?")
_VIDEO_RE = re.compile(r"^\s*Stream #\d+:\d+.*: Video: (?!.*\(attached pic\))")
#: An audio stream's header line with its language tag, e.g. ``Stream #0:1[0x2](eng): Audio: aac``.
#: The tag as the container gives it: ``eng``, or an IETF one (``en-US``, ``EN``, ``pt_BR``, ``zh-Hant``).
_AUDIO_LANGUAGE_RE = re.compile(
    r"^\s*Stream #0:\d+(?:\[0x[0-9a-f]+\])?\((?P<tag>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)\): Audio: "
)
_AUDIO_RE = re.compile(r"^\s*Stream #0:\d+.*: Audio: ")
_AUDIO_CODEC_RE = re.compile(r": Audio: (?P<codec>[\w-]+)")
_VIDEO_CODEC_RE = re.compile(r": Video: (?P<codec>[\w-]+)")
#: The names in a log line's context (``[h264 @ 0x55...]``, ffmpeg 6+: ``[vist#0:0/h264 @ ...]``).
_CONTEXT_NAME_RE = re.compile(r"\[([^\]@]*?) @ ")
#: Distinct damage lines kept (by who logged them), of which the audio's first three are quoted.
_DAMAGE_LINES = 64
#: Warning-level lines that mean damaged data (error-level lines always do).
_DAMAGE_RE = re.compile(
    r"invalid data|header missing|packet corrupt|corrupt|partial file|truncat|"
    r"error while decoding|filesize and duration do not match|incomplete frame",
    re.IGNORECASE,
)
#: Durations ffmpeg guessed (from the bitrate and file size) rather than read: not declared.
_ESTIMATED = "Estimating duration from bitrate"
#: A WAV of unknown length (written to a pipe); its last packet is short, which ffmpeg calls
#: corrupt: no damage there.
_OPEN_ENDED_WAV = "Ignoring maximum wav data size"
_OPEN_ENDED_NOISE = ("packet corrupt", "corrupt input packet")
#: An input too short for the resampler to give a sample (e.g. 1 ms at 48 kHz): no audio, no error.
_NOTHING_FILTERED = "No filtered frames for output stream"
#: MPEG-TS/PS names: see the module's "Timestamps".
_MPEG_STREAM_SUFFIXES = frozenset(
    {".ts", ".m2ts", ".mts", ".m2t", ".tp", ".trp", ".mpg", ".mpeg", ".m2p", ".vob", ".mod", ".tod"}
)
_RESAMPLE = "aresample=async=1:first_pts=0"
#: The largest jump in a stream's packet times that the timeline follows (seconds). ``_RESAMPLE``
#: fills a jump with silence and drops as much audio where the times come back: one flipped bit
#: in one WMA packet's time (+4194 s) padded 50 minutes (3.1 GB in ffmpeg, which then gave up)
#: and lost the 12 s of speech after it. ffmpeg's ``-dts_error_threshold`` takes the times off a
#: packet further than this from where its stream has got to (the audio follows on by its
#: samples). Ten minutes: a real gap in a recording (an Opus track silent while its speaker was
#: muted) keeps the media's timeline up to it, so spans stay where a player finds them, and the
#: silence filled for a damaged time stays bounded (about 0.2 GB at 48 kHz stereo in ffmpeg). A
#: stream's first packet is never checked: a late audio start keeps its lead. A longer gap is
#: closed up, and said so (:func:`_jumped`).
_TIMESTAMP_JUMP_S = 600
_TIMESTAMP_ARGS = ("-dts_error_threshold", str(_TIMESTAMP_JUMP_S))
#: ffmpeg's line for a packet time it took off: ``DTS 4198019, next:3668000 st:0 invalid dropping``
#: (the packet's time in its stream's units; where the stream had got to, in microseconds).
_DROPPED_TIME_RE = re.compile(r"^[DP]TS -?\d+, next:(?P<next>-?\d+) .*invalid dropping")
#: The lowest input sample rate decoded: under it no speech is left (2 kHz keeps only what is
#: under 1 kHz; speech needs 300-3400 Hz), and every real recording's is far above (telephone
#: 8 kHz; VOC's lowest, 3.9 kHz). A damaged header's rate (1 Hz) made a 3 MB WAV 196 hours of
#: audio, upsampled for hours.
_MIN_INPUT_RATE = 2000
_INPUT_RATE_RE = re.compile(r", (?P<rate>\d+) Hz\b")
#: Decoding errors in a row, with no audio coming out, that make a file damaged beyond reading
#: (a corrupt header: ffmpeg rejected 744,688 one-byte packets, two lines each, and our log
#: reader took 60 s for them, reported as a stalled stream). A damaged stretch that ffmpeg
#: reads past reports a few hundred.
_ERROR_RUN = 10_000
#: How often a wait for ffmpeg's output checks that it need not stop (seconds).
_POLL_S = 0.1
#: A mono downmix weighing every channel alike: ``pan``'s sum of every channel a track can
#: have, ``<`` weighing the ones it has alike (what a track without a channel layout gets; span
#: cuts of such an item use it too, told by its points' ``metadata.channel_mix``).
EVEN_MIX = "pan=mono|c0<" + "+".join(f"c{i}" for i in range(64))
#: ffmpeg's failure to downmix channels without a layout (9-23, over 24).
_REMATRIX = "rematrix is needed"
#: A layout ffmpeg guessed for the channels of input stream N, which had none:
#: ``[aist#0:N/pcm_s16le @ 0x...] Guessed Channel Layout: 5.1`` (ffmpeg 7; it guesses for
#: every stream, not only the one decoded) or ``Guessed Channel Layout for Input Stream #0.N :
#: 5.1`` (ffmpeg 5.1).
_GUESSED_RE = re.compile(r"Guessed Channel Layout.*:\s*(?P<layout>\S+)\s*$")
_GUESSED_STREAM_RE = re.compile(r"(?:aist#0:|Input Stream #0\.)(?P<index>\d+)")
_STREAM_INDEX_RE = re.compile(r"^\s*Stream #0:(?P<index>\d+)")
#: A decoded sample past this (full scale 1) is not audio at the right scale: +12 dBFS. Real
#: files pass full scale a little (a hot master's inter-sample peaks, a lossy codec's or the
#: resampler's overshoot: +1 to +3 dBFS; a float mix left unclipped, a few dB more), never 4x;
#: integer PCM values written as float (``float(int16)``, a common slip) reach +90 dBFS.
_OVER_FULL_SCALE = 4.0
#: The share of a block's samples past the threshold that makes it data at the wrong scale
#: (int16 values as float exceed it nearly everywhere); fewer are single damaged samples.
_SUSTAINED = 0.01
#: A sample past this many times full scale after any rescaling is damage (a flipped exponent
#: bit), not audio: past every integer scale (2^31 = 2.1e9), with room for 12 dB more. Below it,
#: a block of integer data written as float that is not yet scaled (its sound starts in the
#: block's last milliseconds: too few loud samples to be sustained) passes as it is.
_DAMAGED = 2.0**33
#: Integer full scales (16-, 24- and 32-bit PCM) that such data is divided by (:class:`_Rescale`).
_INTEGER_SCALES = (2.0**15, 2.0**23, 2.0**31)
#: ffmpeg's error where a stream changes its channels part-way (a chained Ogg); it stops there.
_STREAM_CHANGE = "Channel change is not supported"
#: Decoded audio this much shorter than the declared duration is a stream that ends early.
_SHORTFALL_MIN_S = 1.0
_SHORTFALL_FRACTION = 0.01


#: The longest ``DecodeOptions.read_timeout_s``: a day (as ``CLASP_READ_TIMEOUT_S``). ``inf``
#: or a few hundred years overflowed ``select()`` ("timestamp out of range for platform time_t").
MAX_READ_TIMEOUT_S = 86_400


@dataclass(frozen=True)
class DecodeOptions:
    """How ffmpeg decodes a media item.

    ``strict``: raise when the data is damaged (ffmpeg reports decoding errors, or the
    stream ends well before the duration the file declares: a truncated or corrupt file)
    even though some audio decoded; otherwise keep that audio and report one warning
    (``stream_audio``'s ``on_warning``, and the log). The ingest pipeline decodes with
    ``strict=False`` unless given options that say otherwise.
    """

    sample_rate: int = 16_000
    block_s: float = 2.0
    read_timeout_s: float = 60.0
    ffmpeg: str | None = None
    strict: bool = True

    def __post_init__(self) -> None:
        for field in ("sample_rate", "block_s", "read_timeout_s"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ConfigError(f"DecodeOptions.{field} must be a finite number, got {value!r}")
        if self.sample_rate < 1000:
            raise ConfigError(f"DecodeOptions.sample_rate must be >= 1000 Hz, got {self.sample_rate}")
        if not 0 < self.block_s <= 600:
            raise ConfigError(f"DecodeOptions.block_s must be in (0, 600] seconds, got {self.block_s}")
        if self.read_timeout_s <= 0:
            raise ConfigError(f"DecodeOptions.read_timeout_s must be > 0, got {self.read_timeout_s}")
        if self.read_timeout_s > MAX_READ_TIMEOUT_S:  # a longer wait overflowed select(): every item failed
            raise ConfigError(
                f"DecodeOptions.read_timeout_s must be at most {MAX_READ_TIMEOUT_S:g} s (a day), "
                f"got {self.read_timeout_s:g}"
            )

    @property
    def block_bytes(self) -> int:
        return max(1, round(self.block_s * self.sample_rate)) * _BYTES_PER_SAMPLE


def find_ffmpeg(explicit: str | None = None) -> str:
    """The ffmpeg executable: ``explicit``, else ``CLASP_FFMPEG``, else ``ffmpeg`` on PATH, else
    imageio-ffmpeg's (every cut, clip and decode uses the same one)."""
    named = explicit or os.environ.get("CLASP_FFMPEG") or None
    if named:
        found = shutil.which(os.path.expanduser(named))  # noqa: PTH111 - a Path drops the './' of './ffwrap'
        if found is None:
            where = "" if explicit else " (CLASP_FFMPEG)"
            raise ConfigError(
                f"ffmpeg executable {named!r}{where} not found; give the path of an ffmpeg program or "
                "leave it unset (ffmpeg on PATH, then imageio-ffmpeg's)"
            )
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ConfigError("no ffmpeg found: install ffmpeg on PATH or `pip install imageio-ffmpeg`") from None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


#: Demuxers that open other files or addresses named in their input (playlists, manifests,
#: stream descriptions, scripts): never used for a local file (module docstring).
REFERENCING_DEMUXERS = frozenset(
    {
        "applehttp", "avisynth", "concat", "dash", "hls", "imf", "rtp", "rtsp", "sdp",
        "vapoursynth", "webm_dash_manifest",
    }
)  # fmt: skip
_DEMUXER_LINE_RE = re.compile(r"^\s*D\S*\s+(\S+)")
_WHITELIST_RE = re.compile(r"(Format not on whitelist) '[^']*'")


def required_whitelist(ffmpeg: str) -> str:
    """:func:`demuxer_whitelist`, or a ``ConfigError`` where ``ffmpeg`` cannot list its demuxers,
    naming why: without the list a playlist could not be refused, so nothing is decoded (it
    failed open). The why is the error's own words (an ``ulimit -n`` reached read as a broken
    ffmpeg before: the ``[Errno 24]`` was only in the debug log)."""
    if ffmpeg in _WHITELISTS:
        return _WHITELISTS[ffmpeg]
    try:
        listed = subprocess.run(
            [ffmpeg, "-hide_banner", "-demuxers"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:  # its file name, if any, is ffmpeg's or /dev/null's: left out
        why = f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)
        raise _unlisted(ffmpeg, why, _os_remedy(exc)) from exc
    except subprocess.SubprocessError as exc:
        raise _unlisted(ffmpeg, str(exc), _UNLISTED_REMEDY) from exc
    _, _, table = listed.stdout.partition("--\n")
    names = []
    for line in table.splitlines():
        match = _DEMUXER_LINE_RE.match(line)
        # one entry may have several names ("hls,applehttp"): a match on any one admits it
        if match and not REFERENCING_DEMUXERS.intersection(match[1].split(",")):
            names.append(match[1])
    if not names:
        said = listed.stderr.strip().splitlines()[-1:]
        why = f"it listed none, exit status {listed.returncode}" + "".join(f": {line}" for line in said)
        raise _unlisted(ffmpeg, why, _UNLISTED_REMEDY)
    _WHITELISTS[ffmpeg] = ",".join(names)
    return _WHITELISTS[ffmpeg]


#: The whitelists listed so far, by ffmpeg (a failure to list is not kept: it may pass).
_WHITELISTS: dict[str, str] = {}
_UNLISTED_REMEDY = (
    "check that it is a working ffmpeg (CLASP_FFMPEG), or try again if the machine was too busy "
    "to answer in 30 s"
)


def _unlisted(ffmpeg: str, why: str, remedy: str) -> ConfigError:
    return ConfigError(
        f"ffmpeg {ffmpeg!r} did not list its demuxers ('-demuxers': {why}), so playlists and "
        f"manifests could not be refused and nothing is decoded; {remedy}"
    )


def _os_remedy(exc: OSError) -> str:
    """What to do where starting ffmpeg failed: its open files are the process's limit
    (``ulimit -n``) or the system's, not a broken ffmpeg."""
    if exc.errno == errno.EMFILE:
        try:
            import resource

            limit = f", now {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
        except (ImportError, OSError, ValueError):  # no resource module off Unix
            limit = ""
        return (
            f"this process has as many files open as it may: raise its limit (ulimit -n{limit}), e.g. to 1024"
        )
    if exc.errno == errno.ENFILE:
        return "the system has as many files open as it may: close programs, or raise its limit (fs.file-max)"
    return _UNLISTED_REMEDY


def demuxer_whitelist(ffmpeg: str) -> str | None:
    """The demuxers of ``ffmpeg`` minus :data:`REFERENCING_DEMUXERS`, comma-separated, for
    ``-format_whitelist``; ``None`` (and a warning saying why) when it cannot list them
    (:func:`required_whitelist` refuses to decode then)."""
    try:
        return required_whitelist(ffmpeg)
    except ConfigError as exc:
        logger.warning("%s", exc)
        return None


def is_url(source: str) -> bool:
    """True for ``scheme://...`` sources that ffmpeg opens itself (http, https, rtmp...)."""
    return bool(_URL_RE.match(source)) and not source.startswith("file://")


def stream_audio(
    source: str | os.PathLike[str],
    options: DecodeOptions | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
    on_language: Callable[[str], None] | None = None,
    on_tracks: Callable[[int], None] | None = None,
    on_even_mix: Callable[[], None] | None = None,
    shown: str | None = None,
    stop: threading.Event | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 mono blocks of ``options.block_s`` seconds (the last one shorter).

    Raises :class:`MediaDecodeError` (naming ``source`` and quoting ffmpeg's errors) for a
    missing, empty, corrupt or audio-less input, or when a read stalls longer than
    ``options.read_timeout_s``. Damaged data that still decoded in part (a truncated or
    corrupt file) raises after the last block with ``options.strict``; otherwise it is
    logged and passed to ``on_warning`` as one line (e.g. ``"ends early: ..."``). A WAV whose
    header declares less than the file holds is decoded to its end and reported the same way,
    strict or not (module docstring). The ffmpeg process is reaped when the generator
    finishes, is closed early, or raises.

    ``on_language`` gets the language tag of the audio stream decoded (the container's, e.g.
    ``eng`` for a film's track; none for most audio files), once, with the first block.
    ``on_tracks`` gets the number of audio tracks of the input (only the first is decoded),
    once, after the last block. ``on_even_mix`` is called, before the first block, when the
    track's channels have no layout and are mixed alike (:data:`EVEN_MIX`; module docstring).

    ``shown``: what warnings and errors call the input, where ``source`` is not what the user
    gave (a download's temporary file: its URL, which tells which item it was).

    ``stop``: set from another thread, the decode ends at its next read (within 0.1 s, even
    while ffmpeg writes nothing), raising :class:`~clasp_ingest.errors.IngestInterrupted`.
    """
    opts = options or DecodeOptions()
    name = _check_source(source, shown)
    wav = None if is_url(name) else wav_length(name.removeprefix("file:"))  # as ffmpeg's file: names it
    label = shown or name
    told = (on_warning, on_language, on_tracks)

    def decoded(every_channel: bool) -> Iterator[np.ndarray]:
        started = False
        try:
            for block in _stream(name, label, opts, *told, wav, every_channel=every_channel, stop=stop):
                started = True
                yield block
        except MediaDecodeError as exc:
            if started or not _audio_found_late(name, exc):
                raise
            logger.debug("%s: no audio stream in ffmpeg's first 5 s of probing; probing further", label)
            yield from _stream(
                name, label, opts, *told, wav, every_channel=every_channel, stop=stop, probe_longer=True
            )

    try:
        try:
            yield from decoded(every_channel=False)
        except _UnlabelledChannels:
            if on_even_mix is not None:
                on_even_mix()
            yield from decoded(every_channel=True)
    except MediaDecodeError as exc:
        if exc.source != name or label == name:
            raise
        path = name.removeprefix("file:")
        tail = exc.stderr_tail.replace(f"file:{path}", label).replace(path, label)  # ffmpeg's lines too
        raise MediaDecodeError(label, exc.reason, tail) from None


class _UnlabelledChannels(Exception):
    """The track's channels have no layout: decode it again with every channel alike."""


#: How far ffmpeg looks for an MPEG program/transport stream's streams when it found no audio
#: in its default 5 s (µs, bytes): a DVD's or camcorder's audio may start later than that
#: (``-itsoffset 6``: "matches no streams", or "sample rate not set" for the copy output).
_PROBE_LONGER = ("-analyzeduration", str(120 * 1_000_000), "-probesize", str(256 * 1024 * 1024))


def _audio_found_late(name: str, exc: MediaDecodeError) -> bool:
    """Whether ``exc`` (nothing decoded) may be an MPEG stream's audio that begins after what
    ffmpeg probes by default (:data:`_PROBE_LONGER`)."""
    return says_audio_found_late(f"{exc.reason} {exc.stderr_tail}") and is_mpeg_stream(name)


def says_audio_found_late(told: str) -> bool:
    """Whether ffmpeg's ``told`` errors are those of an input whose audio it did not find in
    its default probe (on an MPEG stream: audio that starts late; :data:`_PROBE_LONGER`)."""
    lowered = told.lower()
    return any(sign in lowered for sign in _LATE_AUDIO_SIGNS)


_LATE_AUDIO_SIGNS = ("matches no streams", "sample rate not set", "could not write header", "no audio stream")


def _stream(
    name: str,
    label: str,
    opts: DecodeOptions,
    on_warning: Callable[[str], None] | None,
    on_language: Callable[[str], None] | None,
    on_tracks: Callable[[int], None] | None,
    wav: WavLength | None,
    *,
    every_channel: bool,
    stop: threading.Event | None = None,
    probe_longer: bool = False,
) -> Iterator[np.ndarray]:
    short_header_s = wav.declared_s if wav is not None and wav.read_to_end else None  # read on past it
    process = _start_ffmpeg(
        name,
        opts,
        every_channel=every_channel,
        ignore_length=short_header_s is not None,
        probe_longer=probe_longer,
    )
    stderr = _FfmpegLog(process.stderr, open_ended=wav is not None and wav.open_ended)
    samples = 0
    not_numbers = 0
    rescale = _Rescale()
    try:
        for block in _read_blocks(process, name, opts, stderr, stop):
            if samples == 0 and stderr.audio_seen.wait(2.0):
                _check_input_rate(name, stderr)
            if samples == 0 and not every_channel and stderr.audio_seen.wait(2.0) and stderr.guessed_layout:
                raise _UnlabelledChannels
            finite = np.isfinite(block)
            if not finite.all():  # a damaged float file: one NaN would blind the VAD from there on
                not_numbers += block.size - int(np.count_nonzero(finite))
                block = np.where(finite, block, np.float32(0.0))
            block = rescale(block, samples / opts.sample_rate)
            # ffmpeg logs the input's streams before it writes audio; its log is read on a thread
            if samples == 0 and on_language is not None and stderr.audio_seen.wait(2.0):
                language = stderr.audio_language
                if language:
                    on_language(language)
            samples += block.size
            yield block
        if samples == 0 and not every_channel and process.wait() != 0 and _REMATRIX in stderr.text().lower():
            raise _UnlabelledChannels
        _check_exit(process, name, stderr)
        if short_header_s is not None:
            _undeclared(label, short_header_s, samples / opts.sample_rate, on_warning)
        _check_damage(label, samples / opts.sample_rate, opts, stderr, on_warning, wav)
        if stderr.dropped_times:
            _jumped(label, stderr, on_warning)
        if not_numbers:
            _not_numbers(label, not_numbers, opts, on_warning)
        if rescale.scale != 1.0:
            _warn(label, rescale.warning(), on_warning)
        if rescale.damaged:
            _not_numbers(
                label,
                rescale.damaged,
                opts,
                on_warning,
                kind=("far past full scale", "past any integer scale"),
            )
        if on_tracks is not None:
            on_tracks(stderr.audio_streams)
    finally:
        _reap(process)
        stderr.join()


class _Rescale:
    """Scales down decoded blocks far above full scale (:data:`_OVER_FULL_SCALE`), and silences
    samples no audio reaches (:data:`_DAMAGED`).

    Only a sustained excess rescales (:data:`_SUSTAINED` of a block's samples past the
    threshold; its level then taken robustly, at the 99.9th percentile): one damaged sample of
    1e20 (a flipped exponent bit) divided every later block by 1e20 and lost the rest of the
    file. Such samples, past :data:`_DAMAGED` times full scale after any rescaling, are decoded
    as silence and counted, as NaN are.

    Blocks stream, so the scale can only come from what was seen so far. Data at the wrong
    scale is divided by the integer full scale (:data:`_INTEGER_SCALES`) that holds its level
    within 24 dB, else by its level: integer PCM written as float gets back the level it was
    recorded at, the same for the whole item. A later block louder still (not integer data,
    then), or data past 2^31, is divided by its level. Each block by its own level would pump
    the level block by block (a pause as loud as speech; the VAD measures level), so the scale
    only grows. Blocks before the first one past the threshold stay as they were (at most +12
    dBFS but for single samples: for integer data written as float, a near-silent opening)."""

    def __init__(self) -> None:
        self.scale = 1.0
        self.peak = 0.0
        self.from_s = 0.0
        self.damaged = 0  # samples decoded as silence

    def __call__(self, block: np.ndarray, at_s: float) -> np.ndarray:
        if not block.size:
            return block
        size = np.abs(block)
        limit = max(self.scale, _OVER_FULL_SCALE)
        if np.count_nonzero(size > limit) >= _SUSTAINED * block.size:
            level = float(np.quantile(size, 0.999))
            if level > limit:
                self.peak = max(self.peak, level)
                if self.scale == 1.0:
                    self.from_s = at_s
                    # an integer scale only where the level lies within 24 dB under it (speech in
                    # int16 values peaks at 2,000-32,767)
                    self.scale = next((s for s in _INTEGER_SCALES if s / 16 <= level <= s), level)
                else:
                    self.scale = level
        scaled = block if self.scale == 1.0 else (block / np.float32(self.scale)).astype(np.float32)
        wild = np.abs(scaled) > _DAMAGED
        if wild.any():
            self.damaged += int(np.count_nonzero(wild))
            scaled = np.where(wild, np.float32(0.0), scaled)
        return scaled

    def warning(self) -> str:
        return (
            f"samples reach {20 * np.log10(self.peak):+.0f} dBFS (level {self.peak:.6g}, full scale is 1): "
            f"float data at the wrong scale (integer samples written as float?); scaled down by "
            f"{self.scale:.6g} from {_clock(self.from_s)} on; export it again at full scale ±1.0, "
            "or as integer PCM"
        )


def decode_audio(
    source: str | os.PathLike[str],
    options: DecodeOptions | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
) -> np.ndarray:
    """The whole clip as one float32 mono array (for short files: training, evaluation)."""
    blocks = list(stream_audio(source, options, on_warning=on_warning))
    if not blocks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(blocks)


def _check_source(source: str | os.PathLike[str], shown: str | None = None) -> str:
    """``source`` as a name for ffmpeg, or :class:`MediaDecodeError` for no file, a folder or an
    empty file. A download (``shown``: its URL) that is empty is called by its URL: its
    temporary file, deleted by then, told the user nothing (a 0-byte body, HTTP 204 or 304)."""
    name = os.fspath(source)
    if is_url(name):
        return name
    path = Path(name.removeprefix("file://"))
    if not path.exists():
        raise MediaDecodeError(name, "no such file; check the path")
    if path.is_dir():
        raise MediaDecodeError(
            name, "is a directory, not a media file; give a file in it (ingest takes folders)"
        )
    if path.is_file() and path.stat().st_size == 0:
        if shown is not None:
            raise MediaDecodeError(
                shown, "the server sent an empty body (0 bytes); check that the URL serves the media"
            )
        raise MediaDecodeError(name, "the file is empty (0 bytes); download or export it again")
    return name


def _ffmpeg_args(
    source: str,
    opts: DecodeOptions,
    *,
    every_channel: bool = False,
    ignore_length: bool = False,
    probe_longer: bool = False,
) -> list[str]:
    """The ffmpeg command line. Built by hand: ``source`` may hold the undecodable bytes of a
    non-UTF-8 file name (surrogate escapes), which ``subprocess`` passes on as they are.
    ``ignore_length``: a WAV read to its end, past the length its header declares;
    ``probe_longer``: look further into the input for its streams (:data:`_PROBE_LONGER`)."""
    args = [find_ffmpeg(opts.ffmpeg), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info"]
    args += _TIMESTAMP_ARGS  # a damaged packet time: no jump
    if ignore_length:
        args += ["-ignore_length", "1"]
    if probe_longer:
        args += _PROBE_LONGER
    if is_url(source):
        # ffmpeg's own I/O timeout (microseconds), so a stalled network read fails inside ffmpeg too.
        args += ["-rw_timeout", str(int(opts.read_timeout_s * 1_000_000))]
    else:
        if not source.startswith("file:"):
            source = f"file:{source}"  # a local name is never read as a protocol (``concat:``, ``subfile:``)
        args += ["-format_whitelist", required_whitelist(args[0])]
    mpeg = is_mpeg_stream(source)
    # the videos of an MPEG stream copied to nowhere keep its start time (module docstring); the
    # audio too, so that output never lacks a stream (older ffmpeg refuses an empty one)
    keep_start = ["-map", "0:a:0", "-map", "0:v?", "-c", "copy", "-f", "null", "-"] if mpeg else []
    return [
        *args,
        "-i",
        source,
        "-map",
        "0:a:0",
        *(("-af", f"{EVEN_MIX},{_RESAMPLE}") if every_channel else ("-af", _RESAMPLE)),
        "-ac",
        "1",
        "-ar",
        str(opts.sample_rate),
        "-f",
        "f32le",
        "-acodec",
        "pcm_f32le",
        "pipe:",
        *keep_start,
    ]


def is_mpeg_stream(source: str) -> bool:
    """Whether ``source`` is an MPEG transport or program stream, by its name or (a local file)
    its first bytes: TS sync bytes every 188 (or M2TS 192) bytes, or a PS pack header."""
    path = source.removeprefix("file:")
    if Path(path.split("?", 1)[0]).suffix.lower() in _MPEG_STREAM_SUFFIXES:
        return True
    if is_url(path) or not Path(path).is_file():  # a FIFO or device would block the read
        return False
    try:
        with Path(path).open("rb") as file:
            head = file.read(4 + 3 * 192)
    except OSError:
        return False
    ts = len(head) >= 377 and head[0] == head[188] == head[376] == 0x47
    m2ts = len(head) >= 389 and head[4] == head[196] == head[388] == 0x47
    return ts or m2ts or head.startswith(b"\x00\x00\x01\xba")


def _start_ffmpeg(
    source: str,
    opts: DecodeOptions,
    *,
    every_channel: bool = False,
    ignore_length: bool = False,
    probe_longer: bool = False,
) -> subprocess.Popen[bytes]:
    args = _ffmpeg_args(
        source, opts, every_channel=every_channel, ignore_length=ignore_length, probe_longer=probe_longer
    )
    logger.debug("decoding %s: %s", source, " ".join(args))
    try:
        # its own process group: a terminal's Ctrl-C and Prefect's cancellation signal the whole
        # group, and an ffmpeg stopped by them read as a file that cannot be decoded; the run
        # stops it itself (_reap), and it ends on a broken pipe if this process dies
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0
        )
    except OSError as exc:
        raise MediaDecodeError(source, f"cannot start ffmpeg ({exc}); set the ffmpeg path") from exc


class _FfmpegLog:
    """Drains ffmpeg's stderr on a daemon thread, keeping the declared duration, the first
    errors (the cause; quoted in error messages), the last warnings, and the count and first
    lines of damage reports (decoding errors). ``open_ended``: a WAV read to its end, whatever
    its header says (its last packet, short, is no damage)."""

    def __init__(self, pipe: IO[bytes] | None, *, open_ended: bool = False) -> None:
        self._errors: list[str] = []
        self._warnings: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._lock = threading.Lock()
        self.declared_s: float | None = None
        self.has_video = False
        self.audio_streams = 0  # the input's audio streams (only the first is decoded)
        self._in_input = False  # reading the "Input #0" stream list, not an output's
        self.audio_seen = threading.Event()  # the first audio stream's header line was read
        self.audio_language: str | None = None  # that stream's language tag (the one decoded)
        self._damage_lines: list[tuple[str, str]] = []  # (who logged it, message): the first ones
        self._damage_counts: Counter[str] = Counter()  # damage lines by who logged them
        self._video_codecs: set[str] = set()  # the input's video streams' codecs (their decoders' names)
        self.duration_estimated = False  # ffmpeg guessed the duration: nothing was declared
        self.ogg = False  # an Ogg input, whose "Duration" is its last page's time (_check_damage)
        self.matroska = False  # a Matroska/WebM input, whose "Duration" counts from 0, not its start
        self.start_s = 0.0  # the input's start time, as ffmpeg prints it beside the duration
        self.audio_codec: str | None = None  # the first audio stream's codec (``opus``, ``flac``)
        self.open_ended_wav = open_ended
        self.nothing_filtered = False
        self.audio_rate: int | None = None  # the decoded stream's sample rate, as its header says
        self.dropped_times = 0  # packets whose times ffmpeg took off (_TIMESTAMP_JUMP_S)
        self.audio_out = False  # some decoded audio came out (set by _fill, which reads it)
        self.dropped_at_s: float | None = None  # where the first of them was, in the media
        self._guessed: dict[int, str] = {}  # input stream -> a layout of over two channels ffmpeg guessed
        self._audio_index: int | None = None  # the input stream decoded (the first audio one)
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        with pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    self._take(line)

    def _take(self, line: str) -> None:
        match = _LEVEL_RE.match(line)
        level, message = (match["level"], match["message"].strip()) if match else ("", line)
        guessed = _GUESSED_RE.search(message)
        stream = _GUESSED_STREAM_RE.search(line)
        if guessed and stream and guessed["layout"] not in ("mono", "stereo"):
            self._guessed.setdefault(int(stream["index"]), guessed["layout"])
        if level in ("", "trace", "debug", "verbose", "info"):
            self._note_info(message)
        if level not in ("", "warning", "error", "fatal", "panic"):
            return
        self.duration_estimated = self.duration_estimated or message.startswith(_ESTIMATED)
        self.open_ended_wav = self.open_ended_wav or message.startswith(_OPEN_ENDED_WAV)
        self.nothing_filtered = self.nothing_filtered or message.startswith(_NOTHING_FILTERED)
        dropped = _DROPPED_TIME_RE.match(message)
        if dropped:  # its DTS, then its PTS (the time the audio is placed by): counted, never quoted
            self.dropped_times += message.startswith("PTS")
            if self.dropped_at_s is None:
                self.dropped_at_s = max(0.0, int(dropped["next"]) / 1e6)
            return
        if self.open_ended_wav and message.lower().startswith(_OPEN_ENDED_NOISE):
            return
        with self._lock:
            if level in ("", "warning"):
                _add_new(self._warnings, message)  # bounded: the last ones
            elif len(self._errors) < _STDERR_TAIL_LINES and not message.startswith(_HINTS):
                _add_new(self._errors, message)  # the first ones: the cause
            if level in ("error", "fatal", "panic") or _DAMAGE_RE.search(message):
                origin = _origin(match["context"] if match else "")
                self._damage_counts[origin] += 1
                if len(self._damage_lines) < _DAMAGE_LINES and all(
                    m != message for _, m in self._damage_lines
                ):
                    self._damage_lines.append((origin, message))

    def _of_audio(self, origin: str) -> bool:
        """Whether damage logged by ``origin`` (:func:`_origin`) may be the audio's: not a video
        decoder's (a TV recording cut mid-GOP: "non-existing PPS 0 referenced" while ffmpeg
        probes) nor the stream copy's muxer (an MPEG stream's ``keep_start`` output)."""
        return origin not in ("video", "copy") and origin not in self._video_codecs

    @property
    def damage_count(self) -> int:
        """Damage reports (decoding errors) that may concern the decoded audio."""
        with self._lock:
            return sum(count for origin, count in self._damage_counts.items() if self._of_audio(origin))

    @property
    def damage(self) -> list[str]:
        """The first three distinct damage reports that may concern the decoded audio."""
        with self._lock:
            return [message for origin, message in self._damage_lines if self._of_audio(origin)][:3]

    def _note_info(self, message: str) -> None:
        duration = _DURATION_RE.match(message)
        if duration and self.declared_s is None:
            hours, minutes, seconds, start = duration.groups()
            self.declared_s = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            self.start_s = float(start) if start else 0.0
        if _VIDEO_RE.match(message):
            self.has_video = True
            codec = _VIDEO_CODEC_RE.search(message)
            if codec:
                with self._lock:
                    self._video_codecs.add(codec["codec"])
        if message.startswith(("Input #", "Output #")):
            self._in_input = message.startswith("Input #")
            self.ogg = self.ogg or message.startswith("Input #0, ogg,")
            self.matroska = self.matroska or message.startswith("Input #0, matroska")
        if self._in_input and _AUDIO_RE.match(message):
            self.audio_streams += 1
        if not self.audio_seen.is_set() and _AUDIO_RE.match(message):
            index = _STREAM_INDEX_RE.match(message)
            self._audio_index = int(index["index"]) if index else None
            codec = _AUDIO_CODEC_RE.search(message)
            self.audio_codec = codec["codec"] if codec else None
            tagged = _AUDIO_LANGUAGE_RE.match(message)
            self.audio_language = tagged["tag"] if tagged else None
            rate = _INPUT_RATE_RE.search(message)
            self.audio_rate = int(rate["rate"]) if rate else None
            self.audio_seen.set()

    @property
    def guessed_layout(self) -> str | None:
        """The layout ffmpeg guessed for the decoded stream's channels (they had none), if any."""
        return None if self._audio_index is None else self._guessed.get(self._audio_index)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def text(self, wait: bool = True) -> str:
        """ffmpeg's first errors (or, without any, its last warnings), one line; ``wait`` for
        the pipe to end first (once ffmpeg has exited)."""
        if wait:
            self.join()
        with self._lock:
            lines = self._errors or list(self._warnings)
            return " | ".join(lines[:_QUOTED_LINES])


def _origin(context: str) -> str:
    """Who logged a line, from its context's last ``[name @ 0x...]``: ``"video"`` for a video
    stream's (ffmpeg 6+), ``"copy"`` for the muxer of the stream copy to nowhere (``out#1``,
    ffmpeg 5's ``null``), else the name (a decoder's: ``h264``, ``aac``; a demuxer's: ``mpegts``),
    ``""`` for none."""
    names = _CONTEXT_NAME_RE.findall(context)
    if not names:
        return ""
    name = names[-1].strip()
    if name.startswith(("vist#", "vost#")):
        return "video"
    if name.startswith("out#") and not name.startswith("out#0"):
        return "copy"
    last = name.rsplit("/", 1)[-1]
    return "copy" if last == "null" else last


def _add_new(lines: MutableSequence[str], line: str) -> None:
    if line not in lines:
        lines.append(line)


def _read_blocks(
    process: subprocess.Popen[bytes],
    source: str,
    opts: DecodeOptions,
    stderr: _FfmpegLog,
    stop: threading.Event | None = None,
) -> Iterator[np.ndarray]:
    assert process.stdout is not None  # set by Popen(stdout=PIPE)
    fd = process.stdout.fileno()
    total = 0
    while True:
        buffer = bytearray(opts.block_bytes)
        filled = _fill(fd, memoryview(buffer), source, opts, stderr, stop)
        usable = filled - filled % _BYTES_PER_SAMPLE
        if usable:
            total += usable
            yield np.frombuffer(buffer, dtype="<f4", count=usable // _BYTES_PER_SAMPLE)
        if filled < opts.block_bytes:
            break
    if total == 0 and process.wait() == 0:
        stderr.join()
        unread = _unread(stderr)
        if unread:  # not an input too short to give a sample: nothing of it could be read
            raise MediaDecodeError(
                source,
                f"no audio decoded: {unread} and not one sample came out (a damaged file); check that "
                "it plays, or download or export it again",
                stderr.text(),
            )
        if not stderr.nothing_filtered:  # else: audio too short to resample, i.e. none
            raise MediaDecodeError(
                source,
                "no audio samples decoded (an audio track without sound data); check that the file "
                "plays, or export it again",
                stderr.text(),
            )


def _unread(stderr: _FfmpegLog) -> str | None:
    """Why an input of which no sample decoded is damaged, not too short to give one (ffmpeg's
    "No filtered frames" either way): ffmpeg reported decoding errors, or the file declares a
    length (as :func:`_check_damage` trusts it: one audio track, no video, not estimated). It was
    stored as having no speech, and skipped on every later run."""
    if stderr.damage_count:
        return f"ffmpeg reported {stderr.damage_count} decoding error(s)"
    whole_file = stderr.has_video or stderr.audio_streams > 1 or stderr.duration_estimated
    if not whole_file and stderr.declared_s is not None and stderr.declared_s > _SHORTFALL_MIN_S:
        return f"the file declares {_clock(stderr.declared_s)} of audio"
    return None


def _fill(
    fd: int,
    view: memoryview,
    source: str,
    opts: DecodeOptions,
    stderr: _FfmpegLog,
    stop: threading.Event | None = None,
) -> int:
    """Read into ``view`` until it is full or the pipe ends; the number of bytes read."""
    filled = 0
    while filled < len(view):
        _await_output(fd, source, opts, stderr, stop)
        count = os.readv(fd, [view[filled:]])
        if count == 0:
            break
        filled += count
        stderr.audio_out = True
    return filled


def _await_output(
    fd: int, source: str, opts: DecodeOptions, stderr: _FfmpegLog, stop: threading.Event | None
) -> None:
    """Wait until ffmpeg's output can be read. Every :data:`_POLL_S` of the wait it checks what
    ends the decode without any output: ``stop`` set by the caller (raises
    :class:`IngestInterrupted`: a Ctrl-C waited for a silent file's end, as no segment came to
    check it on), an input rate no audio has, and ffmpeg only reporting errors before any audio
    came out (:data:`_ERROR_RUN`: damage, which a longer ``read_timeout_s`` cannot help; once audio
    came out, a damaged stretch is kept as damage that decodes in part, with its warning: minutes
    of zeroed AAC frames in a 22-minute talk failed it whole). Raises for a stall of ``read_timeout_s``."""
    errors = stderr.damage_count
    deadline = time.monotonic() + opts.read_timeout_s
    while True:
        if stop is not None and stop.is_set():
            raise IngestInterrupted(f"{source}: decoding was stopped before its end")
        if select.select([fd], [], [], max(0.0, min(_POLL_S, deadline - time.monotonic())))[0]:
            return
        if stderr.audio_seen.is_set():
            _check_input_rate(source, stderr)
        reported = stderr.damage_count - errors
        if reported >= _ERROR_RUN and not stderr.audio_out:
            raise MediaDecodeError(
                source,
                f"damaged: ffmpeg reported {reported} decoding error(s) in a row and no audio came out "
                "(a corrupt header or data); check that the file plays, or download or export it again",
                stderr.text(wait=False),
            )
        if time.monotonic() >= deadline:
            raise MediaDecodeError(
                source,
                f"no data from ffmpeg for {opts.read_timeout_s:g} s (stalled stream); "
                "raise read_timeout_s or check the source",
                stderr.text(wait=False),
            )


def _check_input_rate(source: str, stderr: _FfmpegLog) -> None:
    """Refuse an input whose header gives a sample rate under :data:`_MIN_INPUT_RATE`."""
    rate = stderr.audio_rate
    if rate is not None and rate < _MIN_INPUT_RATE:
        raise MediaDecodeError(
            source,
            f"its header says the audio is sampled at {rate} Hz, under the {_MIN_INPUT_RATE} Hz any speech "
            "recording has (telephone audio: 8000 Hz): the header is damaged; export the file again, or, "
            "knowing its true rate, rewrite it (ffmpeg -i FILE -af asetrate=44100 fixed.wav)",
            stderr.text(wait=False),
        )


def _check_exit(process: subprocess.Popen[bytes], source: str, stderr: _FfmpegLog) -> None:
    code = process.wait()
    if code != 0:
        tail = _WHITELIST_RE.sub(r"\1", stderr.text())
        reason = _PLAYLIST if _is_hls_playlist(source) else _reason(tail, code)
        raise MediaDecodeError(source, reason, tail)


def _is_hls_playlist(source: str) -> bool:
    """Whether the local file ``source`` is an HLS playlist (``#EXTM3U``) under another name
    (``talk.mp4``): ffmpeg then said "invalid data" or "non standard extension", not that it
    was a playlist."""
    if is_url(source):
        return False
    path = Path(source.removeprefix("file:"))
    try:
        if not path.is_file():
            return False
        with path.open("rb") as file:
            return file.read(16).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"#EXTM3U")
    except OSError:
        return False


def _check_damage(
    source: str,
    decoded_s: float,
    opts: DecodeOptions,
    stderr: _FfmpegLog,
    on_warning: Callable[[str], None] | None,
    wav: WavLength | None = None,
) -> None:
    """Raise (strict) or report a truncated or corrupt stream that still decoded in part.

    A video's declared duration is not its audio's (a sound track may end before the
    pictures), nor is that of a file with several audio tracks the first track's, so there
    only decoding errors count. A WAV's is its header's (``wav``): ffmpeg's, for a cut WAV,
    comes from the file's size. An Ogg file's is its last page's time: a capture of a live
    stream starts at the stream's clock (``start: 3600``) and "ended early" by that much, so
    its start is taken off where ffmpeg counts it in (Opus; Vorbis's is printed without it),
    and a file missing pages inside is still found out; FLAC in Ogg, which prints ``start: 0``
    with the clock's duration, is checked for decoding errors only. A Matroska/WebM file's
    counts from 0, so an audio track that starts late (cut out of a film) has its start taken
    off too (its audio is decoded from its first sample, as other audio-only files')."""
    stderr.join()
    whole_file = stderr.has_video or stderr.audio_streams > 1 or stderr.duration_estimated
    declared_s = None if whole_file else stderr.declared_s
    if declared_s is not None and stderr.ogg:
        if stderr.audio_codec == "flac":  # FLAC in Ogg prints start 0 and the stream's clock
            declared_s = None
        elif declared_s >= stderr.start_s:  # Opus counts from the stream's clock; Vorbis not
            declared_s -= stderr.start_s
    elif declared_s is not None and stderr.matroska and declared_s >= stderr.start_s:
        declared_s -= stderr.start_s  # a track cut out of a film (-map 0:a:1 -c copy x.mka) keeps its lead
    if wav is not None:
        declared_s = wav.declared_s  # None for a placeholder size: no length declared
    if stderr.dropped_times:  # a jump closed up (_jumped) shortens the audio, not a cut: said there
        declared_s = None
    if any(_STREAM_CHANGE in line for line in stderr.damage):
        _changed_stream(source, decoded_s, opts, stderr, on_warning)
        return
    if opts.strict:
        damage = describe_damage(decoded_s, declared_s, stderr.damage_count)
        if damage is not None:
            raise MediaDecodeError(source, f"{damage}; use strict=False to keep what decodes", stderr.text())
        return
    damage = describe_damage(decoded_s, declared_s, stderr.damage_count, stderr.damage[:1])
    if damage is None:
        return
    _warn(source, f"{damage}; decoded what was readable", on_warning)


def _changed_stream(
    source: str,
    decoded_s: float,
    opts: DecodeOptions,
    stderr: _FfmpegLog,
    on_warning: Callable[[str], None] | None,
) -> None:
    """Raise (strict) or report a stream that changes its channels or rate part-way: ffmpeg
    stops there, and the rest of the file is lost (a chained Ogg, files joined with ``cat``).
    It was "corrupt data: the audio may have gaps", which did not say half the file was gone."""
    what = (
        f"stops at {_clock(decoded_s)}: the stream changes its channels or sample rate there (a chained "
        "Ogg, or files joined one after another), which ffmpeg cannot decode past; what follows is not "
        "read (split it there into files of their own, each of which decodes, or export the recording "
        "again in one piece)"
    )
    if opts.strict:
        raise MediaDecodeError(source, f"{what}; use strict=False to keep the first part", stderr.text())
    _warn(source, what, on_warning)


def _warn(source: str, warning: str, on_warning: Callable[[str], None] | None) -> None:
    """Damage kept (not strict): logged, and told to ``on_warning``."""
    logger.warning("decoding %s: %s", source, warning)
    if on_warning is not None:
        on_warning(warning)


def _undeclared(
    source: str, declared_s: float, decoded_s: float, on_warning: Callable[[str], None] | None
) -> None:
    """Report a WAV decoded past the length its header declares (strict or not: nothing was
    lost, but other readers of the file stop at that length)."""
    _warn(
        source,
        f"the header declares {_clock(declared_s)} of audio but the file holds {_clock(decoded_s)} "
        "(a recording stopped before its header was updated, or a WAV over 4 GiB); decoded all of it "
        "(`ffmpeg -ignore_length 1 -i FILE -c copy -rf64 auto fixed.wav` rewrites the header)",
        on_warning,
    )


def _jumped(source: str, stderr: _FfmpegLog, on_warning: Callable[[str], None] | None) -> None:
    """Report packet times that jumped and were taken off (:data:`_TIMESTAMP_JUMP_S`), strict or
    not: all the audio was decoded, but placed by its samples there, not by its times."""
    at = _clock(stderr.dropped_at_s or 0.0)
    _warn(
        source,
        f"its packet times jump by over {_TIMESTAMP_JUMP_S} s at {at} ({stderr.dropped_times} packet(s)): "
        "damaged times, or a gap in the recording; decoded all of it, the audio after the jump placed "
        "right after what comes before it: its spans lie early against the media's clock, and the "
        "clips and words cut for them (by that clock) may miss their speech",
        on_warning,
    )


def _not_numbers(
    source: str,
    count: int,
    opts: DecodeOptions,
    on_warning: Callable[[str], None] | None,
    *,
    kind: tuple[str, str] = ("not numbers", "NaN or infinite"),
) -> None:
    """Raise (strict) or report samples that were NaN or infinite, or far past any audio's level
    (``kind``); they were yielded as 0."""
    # counted after ffmpeg resampled and downmixed them: one NaN reaches a few output samples
    span_ms = 1000 * count / opts.sample_rate
    what = f"{count} decoded sample(s) ({span_ms:.1f} ms) are {kind[0]} ({kind[1]}: damaged float data)"
    if opts.strict:
        raise MediaDecodeError(source, f"{what}; use strict=False to keep the rest, with silence there")
    _warn(source, f"{what}; decoded them as silence", on_warning)


def describe_damage(
    decoded_s: float, declared_s: float | None, problems: int, first: Sequence[str] = ()
) -> str | None:
    """One line on damaged data (``problems`` ffmpeg reported, the ``first`` of them quoted),
    or ``None`` when the stream decoded whole."""
    quoted = f" (ffmpeg: {problems} problem(s), first: {first[0]!r})" if first else ""
    if declared_s is not None and declared_s - decoded_s > max(
        _SHORTFALL_MIN_S, _SHORTFALL_FRACTION * declared_s
    ):
        return (
            f"ends early: the stream is truncated or corrupt after {_clock(decoded_s)} "
            f"of the {_clock(declared_s)} it declares{quoted}"
        )
    if problems:
        return f"corrupt data: the audio may have gaps ({_clock(decoded_s)} decoded){quoted}"
    return None


def _clock(seconds: float) -> str:
    """``HH:MM:SS.s``."""
    tenths = round(seconds * 10)
    minutes, tenth_seconds = divmod(tenths, 600)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:{tenth_seconds // 10:02d}.{tenth_seconds % 10}"


#: ffmpeg's http error, e.g. ``Server returned 404 Not Found`` or ``HTTP error 403 Forbidden``.
_HTTP_ERROR_RE = re.compile(r"(?:server returned|http error) (?P<status>[45]\d\d\b[^|\n.]*)", re.IGNORECASE)


#: Why a playlist or manifest is refused (the module docstring: never opened for a local file).
_PLAYLIST = (
    "a playlist or stream description (HLS, DASH, IMF, SDP or ffconcat), not a media file: "
    "it names other files or addresses, which are not opened; give the media file itself"
)


def _reason(tail: str, code: int) -> str:
    lowered = tail.lower()
    if "format not on whitelist" in lowered:
        return _PLAYLIST
    if "matches no streams" in lowered:
        return (
            "the media has no audio stream (video only?); give a file with an audio track "
            "(ingest --exclude PATTERN leaves such files out of a scheduled run)"
        )
    if "no such file" in lowered:
        return "no such file or URL; check the source"
    if "permission denied" in lowered:  # "check that it plays, or convert it" cannot help
        return "the file cannot be read (permission denied); check its permissions"
    answered = _HTTP_ERROR_RE.search(tail)
    if answered:
        status = answered["status"].strip()
        return f"the server answered {status}; check the URL (and that it needs no sign-in)"
    if any(
        word in lowered for word in ("invalid data", "invalid argument", "moov atom not found", "end of file")
    ):
        return (
            "not a readable media file (corrupt, truncated, or not audio/video); "
            "check that it plays, or download it again"
        )
    meaning = _EXIT_MEANINGS.get(code)
    said = f"ffmpeg failed ({meaning}, exit code {code})" if meaning else f"ffmpeg failed (exit code {code})"
    return f"{said}; check that the file plays, or convert it (ffmpeg -i FILE out.wav) and give that"


#: What ffmpeg's exit codes say: it exits with its error, a negative AVERROR, modulo 256 (234
#: is -22, EINVAL), which alone told a user nothing. The codes several errors share are left out.
_EXIT_MEANINGS = {
    183: "invalid data in the input",  # AVERROR_INVALIDDATA
    176: "something ffmpeg does not implement",  # AVERROR_PATCHWELCOME
    234: "an invalid argument or setting for this input",  # EINVAL
    251: "an input/output error",  # EIO
    244: "out of memory",  # ENOMEM
    228: "no space left on the device",  # ENOSPC
    243: "permission denied",  # EACCES
    254: "no such file",  # ENOENT
    8: "something it needs (a decoder, format, protocol or option) was not found",  # AVERROR_*_NOT_FOUND
}


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie-proof kill should not block
        logger.warning("ffmpeg (pid %d) did not exit after kill", process.pid)
    if process.stdout is not None:
        process.stdout.close()
