"""What a local RIFF/WAVE file's header says about its length, read from its bytes.

ffmpeg's reading of the ``data`` chunk's size loses or misnames audio in two cases:

- A size that declares *less* than the file holds (a recorder that crashed after its last
  header update; a WAV over 4 GiB whose 32-bit size wrapped) ends the decode at the declared
  length, silently. When the bytes after the declared data are not further chunks (a normal
  file's ``LIST`` or ``id3 `` metadata there must not become noise), they are audio the header
  left out: decoded with the wav demuxer's ``-ignore_length 1``.
- A size that declares *more* than the file holds (a cut download) is replaced by one from
  the file's size ("Estimating duration from bitrate"), so a cut WAV cannot show that it ends
  early. The declared length read here can.

Only PCM data (integer, float, A-law, µ-law) is measured: its bytes give its length exactly.
RF64/BW64 (64-bit sizes in ``ds64``) and a size of 0 or 0xFFFFFFFF (a WAV written to a pipe:
"until the end") already decode to the file's end and are left to ffmpeg. The placeholders
other writers put there when they cannot seek back (sox, arecord) declare no length either.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["WavLength", "ignore_length_args", "wav_length"]

#: ``fmt `` format tags whose data length in bytes gives its duration exactly: integer PCM,
#: IEEE float, A-law, µ-law (and WAVE_FORMAT_EXTENSIBLE with one of those as its subformat).
_PCM_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007})
_EXTENSIBLE = 0xFFFE
#: Data sizes that mean "to the end of the file" (a pipe's WAV): ffmpeg reads on.
_OPEN_SIZES = frozenset({0, 0xFFFF_FFFF})
#: Sizes written, for want of the real one, by writers that cannot seek back to fix them (to a
#: pipe, or stopped before they could): sox's, arecord's (to stdout, and its maximum), INT32_MAX.
#: More than the file holds, they are no cut: the audio runs to the file's end.
_PLACEHOLDER_SIZES = frozenset({0x7FFF_F000, 0x7FFF_FF00, 0x8000_0000, 0x7FFF_FFFF})
#: Chunks walked, before the data or after it, before giving up (a sane file has a handful).
_MAX_CHUNKS = 1000
#: Bytes past the declared data holding less audio than this are stray bytes (padding, a
#: truncated tag), not a recording's lost tail; decoding them would add a click, not speech.
_MIN_UNDECLARED_S = 0.1
#: An ID3v1 tag, appended bare (not in an ``id3 `` chunk) by some taggers: ``TAG`` + 125 bytes.
_ID3V1_SIZE = 128


@dataclass(frozen=True)
class WavLength:
    """The seconds of audio a WAV's ``data`` chunk declares (``None``: a placeholder size, no
    length declared), and whether the file holds more audio than that, not as further chunks
    (``read_to_end``: decode it with ``-ignore_length 1``)."""

    declared_s: float | None
    read_to_end: bool = False

    @property
    def open_ended(self) -> bool:
        """Decoded to the file's end whatever the header says (its last packet is short)."""
        return self.declared_s is None or self.read_to_end


def wav_length(path: str | Path) -> WavLength | None:
    """The declared (and undeclared) length of the PCM audio of ``path``, a local RIFF/WAVE
    file; ``None`` for anything else (not a regular file, another format, RF64, compressed
    data, an open-ended size, a header that does not parse), which is decoded as ffmpeg sees it."""
    file_path = Path(path)
    try:
        if not file_path.is_file():  # a FIFO or device would block the read
            return None
        with file_path.open("rb") as file:
            return _length(file, file_path.stat().st_size)
    except OSError:
        return None


def ignore_length_args(path: str | Path) -> list[str]:
    """ffmpeg input options that read all of ``path``'s audio: ``-ignore_length 1`` when it is a
    WAV whose header declares less than it holds (see :func:`wav_length`), else none."""
    length = wav_length(path)
    return ["-ignore_length", "1"] if length is not None and length.read_to_end else []


def _length(file: BinaryIO, size: int) -> WavLength | None:
    head = file.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
        return None
    found = _find_data(file, size)
    if found is None:
        return None
    data_at, data_size, bytes_per_s = found
    declared_s = data_size / bytes_per_s
    data_end = data_at + data_size
    if data_end > size and data_size in _PLACEHOLDER_SIZES:
        return WavLength(None)
    if data_end >= size:
        return WavLength(declared_s)
    extra_s = (size - data_end) / bytes_per_s
    if extra_s < _MIN_UNDECLARED_S or _chunks_to_end(file, data_end, size):
        return WavLength(declared_s)
    return WavLength(declared_s, read_to_end=True)


def _find_data(file: BinaryIO, size: int) -> tuple[int, int, int] | None:
    """The ``data`` chunk's offset and size, and the bytes per second of the ``fmt `` before it."""
    at, bytes_per_s = 12, None
    for _ in range(_MAX_CHUNKS):
        header = _read(file, at, 8)
        if len(header) < 8:
            return None
        chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"fmt ":
            bytes_per_s = _pcm_bytes_per_s(file.read(min(chunk_size, 40)))
        elif chunk_id == b"data":
            if bytes_per_s is None or chunk_size in _OPEN_SIZES:
                return None
            return at + 8, chunk_size, bytes_per_s
        at += 8 + chunk_size + (chunk_size & 1)
        if at >= size:
            return None
    return None


def _pcm_bytes_per_s(fmt: bytes) -> int | None:
    """Bytes per second of PCM data (sample rate × block align), or ``None`` for another codec."""
    if len(fmt) < 16:
        return None
    tag, _channels, rate, _average, block_align = struct.unpack("<HHIIH", fmt[:14])
    if tag == _EXTENSIBLE:
        tag = struct.unpack("<H", fmt[24:26])[0] if len(fmt) >= 26 else 0
    if tag not in _PCM_TAGS or rate == 0 or block_align == 0:
        return None
    return rate * block_align


def _chunks_to_end(file: BinaryIO, at: int, size: int) -> bool:
    """Whether the bytes from ``at`` to the end are metadata, not samples: whole RIFF chunks
    (a normal file's metadata after its data), possibly ending in a bare ID3 tag, a few stray
    bytes or a known metadata chunk cut short (a cut download: its cover art decoded as 4.7 s
    of full-scale noise), or zeros (padding)."""
    whole = 0
    for _ in range(_MAX_CHUNKS):
        header = _read(file, at, 10)
        if at & 1 and header and not _is_chunk_id(header[:1]):  # the pad byte after an odd-sized chunk
            at += 1
            header = _read(file, at, 10)
        if at >= size:
            return at == size or whole > 0
        if _is_id3_tag(header, size - at):
            return True
        if len(header) < 8:
            return whole > 0 or _zeros(file, at, size)  # stray bytes after the metadata
        if not _is_chunk_id(header[:4]):
            return _zeros(file, at, size)
        end = at + 8 + struct.unpack("<I", header[4:8])[0]
        if end > size:  # cut short: metadata if its id says so (samples rarely spell one)
            return header[:4] in _METADATA_IDS
        at, whole = end, whole + 1
    return True  # this many well-formed chunks: metadata, not samples


def _zeros(file: BinaryIO, at: int, size: int) -> bool:
    """Whether the bytes from ``at`` to the end (at most :data:`_MAX_ZERO_TAIL` of them) are all
    zero: padding, not samples (a longer silent tail is decoded: silence either way)."""
    if size - at > _MAX_ZERO_TAIL:
        return False
    return not _read(file, at, size - at).strip(b"\0")


#: Chunk ids of metadata that WAV writers put after the data (broadcast WAV, cue points,
#: sampler and loop data, tags, cover art in ``id3 ``, padding).
_METADATA_IDS = frozenset(
    {b"LIST", b"INFO", b"adtl", b"id3 ", b"ID3 ", b"bext", b"cue ", b"smpl", b"inst", b"fact",
     b"PEAK", b"JUNK", b"junk", b"FLLR", b"pad ", b"PAD ", b"iXML", b"axml", b"_PMX", b"acid",
     b"cart", b"DISP", b"labl", b"note", b"ltxt", b"umid", b"plst", b"regn", b"minf", b"elm1",
     b"ovwf", b"LGWV", b"ResU", b"afsp", b"strc", b"levl", b"link", b"MD5 ", b"chna", b"dbmd"}
)  # fmt: skip
#: Most bytes read to see whether a tail after the data is zero padding.
_MAX_ZERO_TAIL = 1 << 20


def _read(file: BinaryIO, at: int, count: int) -> bytes:
    file.seek(at)
    return file.read(count)


def _is_chunk_id(raw: bytes) -> bool:
    """Chunk ids are printable ASCII (``LIST``, ``id3 ``, ``JUNK``)."""
    return all(0x20 <= byte <= 0x7E for byte in raw)


def _is_id3_tag(header: bytes, left: int) -> bool:
    """An ID3v1 tag filling the last 128 bytes, or an ID3v2 header (``ID3``, version 2-4)."""
    if header.startswith(b"TAG") and left == _ID3V1_SIZE:
        return True
    return header.startswith(b"ID3") and len(header) >= 4 and header[3] in (2, 3, 4)
