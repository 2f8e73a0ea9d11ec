"""WAV headers whose ``data`` size is not what the file holds: read from the header, not
taken from ffmpeg (which stops at a short size silently, and measures a cut file by its size)."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.media import DecodeOptions, decode_audio, find_ffmpeg
from clasp_ingest.media.wav import WavLength, ignore_length_args, wav_length
from tests.fixtures_audio import SR, SpokenTrack, piped_wav, tone, truncate, write_wav

#: Bytes per second of the fixtures' 16 kHz mono 16-bit PCM.
RATE = 2 * SR


def _patched(src: Path, dst: Path, data_size: int, tail: bytes = b"") -> Path:
    """``src`` (a WAV) with ``tail`` appended and its ``data`` size (and RIFF size) set to
    ``data_size``: what a recorder that stopped, a wrapped 4 GiB size or a pipe's writer leaves."""
    raw = bytearray(src.read_bytes() + tail)
    at = raw.index(b"data")
    raw[at + 4 : at + 8] = struct.pack("<I", data_size)
    raw[4:8] = struct.pack("<I", min(at + data_size, 0xFFFF_FFFF))
    dst.write_bytes(bytes(raw))
    return dst


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def _warned(path: Path, strict: bool = False) -> tuple[np.ndarray, list[str]]:
    warnings: list[str] = []
    return decode_audio(path, DecodeOptions(strict=strict), on_warning=warnings.append), warnings


def test_a_header_that_declares_less_than_the_file_holds_is_decoded_to_the_end(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """A recorder that crashed after its last header update (or a WAV over 4 GiB whose 32-bit
    size wrapped): ffmpeg stopped at the declared 4 s, silently, and the speech after was lost."""
    whole = decode_audio(short_track.path)
    assert short_track.spans[-1][0] > 8.0  # speech well past the declared 4 s
    short = _patched(short_track.path, tmp_path / "short_header.wav", 4 * RATE)
    for strict in (False, True):  # nothing is lost: a warning either way, never an error
        audio, warnings = _warned(short, strict)
        np.testing.assert_array_equal(audio, whole)
        assert len(warnings) == 1, warnings
        said = re.fullmatch(
            r"the header declares 00:00:04\.0 of audio but the file holds 00:00:(\d\d\.\d) "
            r"\(a recording stopped .*\); decoded all of it \(`ffmpeg -ignore_length 1 .*`.*\)",
            warnings[0],
        )
        assert said is not None, warnings[0]
        assert float(said[1]) == pytest.approx(short_track.duration_s, abs=0.06)
    assert ignore_length_args(short) == ["-ignore_length", "1"]  # for other readers of the file


def test_chunks_after_the_data_are_metadata_not_undeclared_audio(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """A normal file's LIST/id3 chunks (or a bare ID3v1 tag) after its data: never decoded as
    noise; the header is right."""
    whole = decode_audio(short_track.path)
    size = len(short_track.path.read_bytes()) - 44  # write_wav's plain 44-byte header
    info = _chunk(b"LIST", b"INFO" + _chunk(b"INAM", b"a talk\x00"))
    # an ID3v2 tag with 20 kB of padding (or cover art): 0.6 s, were it audio
    id3 = _chunk(b"id3 ", b"ID3\x03\x00\x00\x00\x01\x1c\x20" + bytes(20_000))
    odd = b"JUNK" + struct.pack("<I", 8191) + bytes(8191)  # odd, and written without its pad byte
    art = id3[: len(id3) // 2]  # cover art cut short by an interrupted copy: decoded as 0.3 s of noise
    tails = {
        "chunks": info + id3,
        "bare_id3v1": odd + b"TAG" + bytes(125),
        "cut_metadata": info + art,
        "zero_padding": bytes(8192),
        "stray_bytes": info + b"\x01\x02",
    }
    for name, tail in tails.items():
        with_meta = _patched(short_track.path, tmp_path / f"{name}.wav", size, tail)
        audio, warnings = _warned(with_meta, strict=True)
        np.testing.assert_array_equal(audio, whole)
        assert warnings == [] and ignore_length_args(with_meta) == []


def test_a_cut_wav_ends_early_after_what_it_declares(short_track: SpokenTrack, tmp_path: Path) -> None:
    """Like a cut mp3 or flac: ffmpeg measured a cut WAV by its size, so it read as "corrupt
    data: the audio may have gaps" (the short last packet), not as a file that ends early."""
    for fraction, name in ((0.4, "cut.wav"), (0.1, "ten_times.wav")):
        if name == "cut.wav":
            cut = truncate(short_track.path, tmp_path / name, fraction)
        else:  # a header that claims ten times the audio there is
            data = len(short_track.path.read_bytes()) - 44
            cut = _patched(short_track.path, tmp_path / name, data * 10)
        audio, warnings = _warned(cut)
        assert len(warnings) == 1 and warnings[0].endswith("; decoded what was readable"), warnings
        times = re.match(
            r"ends early: the stream is truncated or corrupt after 00:00:(\d\d\.\d) of the "
            r"(\d\d):(\d\d):(\d\d\.\d) it declares",
            warnings[0],
        )
        assert times is not None, warnings[0]
        assert float(times[1]) == pytest.approx(audio.size / SR, abs=0.06)
        declared = int(times[2]) * 3600 + int(times[3]) * 60 + float(times[4])
        expected = short_track.duration_s * (1 if name == "cut.wav" else 10)
        assert declared == pytest.approx(expected, abs=0.1)
        with pytest.raises(MediaDecodeError, match="ends early"):
            decode_audio(cut)  # strict


def test_streamed_wavs_declare_no_length_and_are_not_damaged(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """WAVs written where the writer could not seek back to fix the size: ffmpeg's 0xFFFFFFFF,
    0, and sox's and arecord's placeholders (more than the file holds: no cut)."""
    whole = decode_audio(short_track.path)
    streamed = [piped_wav(short_track.path, tmp_path / "ffmpeg_pipe.wav")]
    for size in (0, 0xFFFF_FFFF, 0x7FFF_F000, 0x8000_0000):
        streamed.append(_patched(short_track.path, tmp_path / f"size_{size:x}.wav", size))
    for path in streamed:
        audio, warnings = _warned(path, strict=True)  # raised "ends early" / "corrupt data"
        assert warnings == [], (path.name, warnings)
        np.testing.assert_allclose(audio, whole, atol=1e-4, err_msg=path.name)


def test_wav_length_reads_the_header_only_where_bytes_give_the_length(tmp_path: Path) -> None:
    pcm = write_wav(tmp_path / "tone.wav", tone(440.0, 2.0))
    assert wav_length(pcm) == WavLength(2.0)
    assert wav_length(_patched(pcm, tmp_path / "short.wav", RATE)) == WavLength(1.0, read_to_end=True)
    assert wav_length(_patched(pcm, tmp_path / "cut.wav", 3 * RATE)) == WavLength(3.0)
    assert wav_length(_patched(pcm, tmp_path / "sox.wav", 0x7FFF_F000)) == WavLength(None)
    # a few stray bytes past the data (under 0.1 s) are no lost recording
    assert wav_length(_patched(pcm, tmp_path / "stray.wav", 2 * RATE, b"\x01\x02" * 100)) == WavLength(2.0)
    renamed = write_wav(tmp_path / "x.wav", tone(440.0, 0.5)).rename(tmp_path / "x.flac")
    assert wav_length(renamed) == WavLength(0.5)  # the magic bytes count, not the name
    ffmpeg = [find_ffmpeg(), "-nostdin", "-v", "error", "-y", "-i", str(pcm)]
    subprocess.run([*ffmpeg, "-f", "mp3", str(tmp_path / "mp3.wav")], check=True)
    subprocess.run([*ffmpeg, "-rf64", "always", str(tmp_path / "rf64.wav")], check=True)
    subprocess.run([*ffmpeg, "-c:a", "adpcm_ms", str(tmp_path / "adpcm.wav")], check=True)
    left_to_ffmpeg = {
        "pipe": _patched(pcm, tmp_path / "pipe.wav", 0xFFFF_FFFF),
        "zero": _patched(pcm, tmp_path / "zero.wav", 0),
        "an mp3 named .wav": tmp_path / "mp3.wav",
        "rf64": tmp_path / "rf64.wav",
        "adpcm (not pcm)": tmp_path / "adpcm.wav",
        "missing": tmp_path / "missing.wav",
        "a folder": tmp_path,
    }
    for name, path in left_to_ffmpeg.items():
        assert wav_length(path) is None, name


def test_a_span_past_a_short_header_is_cut_from_the_audio_there(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """Lazy words and clips cut what the ingest decoded: a cut past the declared 4 s came back empty."""
    from clasp_ingest.retriever.audio import span_samples
    from clasp_ingest.retriever.spans import Span

    short = _patched(short_track.path, tmp_path / "short_header.wav", 4 * RATE)
    start, end = short_track.spans[-1]
    span = Span(media_id="m", source=short.as_uri(), title="t", start_s=start, end_s=end, score=1.0)
    cut = span_samples(span)
    whole = decode_audio(short_track.path)
    expected = whole[int(start * SR) : int(end * SR)]
    assert abs(cut.size - expected.size) <= SR // 100 and np.abs(cut).max() > 0.05
