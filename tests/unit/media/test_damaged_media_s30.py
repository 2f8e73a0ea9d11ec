"""Damaged media found by fuzzing (session 30, tester 1): a damaged packet time, a header's
absurd sample rate, a file of which nothing decodes, ffmpeg only reporting errors, and ffmpeg's
exit codes. Every damaged file is made here from a generated clip."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.media import DecodeOptions, decode_audio, find_ffmpeg
from clasp_ingest.media.decode import _reason
from tests.fixtures_audio import SR, SpokenTrack, convert, tone, write_wav

LENIENT = DecodeOptions(strict=False)
#: The GUID of an ASF file's Data Object: its packets follow 50 bytes on.
_ASF_DATA = bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c")
_WIDTHS = (0, 1, 2, 4)  # an ASF "length type": none, byte, word, dword


def _asf_time_offset(data: bytes, packet: int) -> int:
    """Where the first payload of the ASF packet at ``packet`` keeps its presentation time (ms)."""
    at = packet + 1 + (data[packet] & 0x0F)  # error correction flags and data
    flags, props = data[at], data[at + 1]
    at += 2 + sum(_WIDTHS[(flags >> shift) & 3] for shift in (5, 1, 3))  # packet, sequence, padding lengths
    at += 4 + 2 + (flags & 1)  # send time, duration, the payload flags of multiple payloads
    at += 1 + _WIDTHS[(props >> 4) & 3] + _WIDTHS[(props >> 2) & 3] + _WIDTHS[props & 3]
    return at + 4  # the replicated data: the media object's size, then its presentation time


def _wma_with_a_time_jump(src: Path, dst: Path, fraction: float = 0.25) -> tuple[Path, float]:
    """``src`` as WMA whose one packet, ``fraction`` into it, has bit 22 of its time flipped (+4194 s,
    tester 1's repro); the file and the packet's time (s)."""
    clean = convert(src, dst.with_suffix(".clean.wma"), "-c:a", "wmav2", "-ar", "44100", "-ac", "2")
    data = bytearray(clean.read_bytes())
    start = data.index(_ASF_DATA) + 50
    size = 3200  # ffmpeg's ASF packets
    packet = start + size * int((len(data) - start) // size * fraction)
    assert data[start] == data[packet] == 0x82  # packets where expected
    at = _asf_time_offset(data, packet)
    (was,) = struct.unpack_from("<I", data, at)
    assert 0 < was < 60_000  # a presentation time, with ASF's preroll
    struct.pack_into("<I", data, at, was ^ (1 << 22))
    dst.write_bytes(data)
    return dst, was / 1000


def test_a_damaged_packet_time_neither_pads_the_timeline_nor_loses_the_speech_after_it(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """One flipped bit in one packet's time padded ~50 minutes of silence (3.1 GB in ffmpeg) and
    dropped the speech after it, and the item was stored as ok."""
    damaged, _ = _wma_with_a_time_jump(short_track.path, tmp_path / "jump.wma")
    clean = decode_audio(tmp_path / "jump.clean.wma", LENIENT)
    warnings: list[str] = []
    started = time.monotonic()
    audio = decode_audio(damaged, LENIENT, on_warning=warnings.append)
    assert time.monotonic() - started < 10
    assert abs(audio.size - clean.size) < 0.1 * SR, audio.size / SR  # not 3000 s
    for start_s, end_s in short_track.spans:  # every sentence where it was, as the clean file has it
        span = slice(round(start_s * SR), round(end_s * SR))
        assert np.sqrt(np.mean((audio[span] - clean[span]) ** 2)) < 0.01, (start_s, end_s)
    (warning,) = warnings
    assert "packet times jump by over 600 s at 00:00:" in warning and "(1 packet(s))" in warning


def _opus_with_a_gap(src: Path, dst: Path, at_s: float, gap_s: float) -> Path:
    """``src`` as Opus in Matroska whose packets from ``at_s`` on are ``gap_s`` later: a recording
    whose track paused (WebRTC's silence suppression while muted)."""
    shift = f"asetpts='if(gte(T,{at_s}),PTS+{gap_s}/TB,PTS)'"
    return convert(src, dst, "-af", shift, "-c:a", "libopus")


@pytest.mark.parametrize(("gap_s", "kept"), [(4.0, True), (300.0, True), (700.0, False)])
def test_a_gap_in_the_packet_times_is_kept_up_to_ten_minutes(
    tmp_path: Path, gap_s: float, kept: bool
) -> None:
    """Gaps up to 10 minutes keep the media's timeline (silence there), as before; a longer one
    is closed up and said so."""
    source = write_wav(tmp_path / "tone.wav", tone(440, 3.0))
    gapped = _opus_with_a_gap(source, tmp_path / "gap.mka", 1.5, gap_s)
    warnings: list[str] = []
    audio = decode_audio(gapped, LENIENT, on_warning=warnings.append)
    expected_s = 3.0 + gap_s if kept else 3.0
    assert audio.size / SR == pytest.approx(expected_s, abs=0.1)
    if kept:
        gap = audio[round(1.6 * SR) : round((1.4 + gap_s) * SR)]
        assert warnings == [] and np.abs(gap).max() < 1e-3
    else:
        assert len(warnings) == 1 and "packet times jump by over 600 s at 00:00:01." in warnings[0]


def _with_rate(path: Path, rate: int) -> Path:
    """``path`` (a WAV, AU or CAF) with its header's sample rate set to ``rate``."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".wav":
        struct.pack_into("<I", data, data.index(b"fmt ") + 12, rate)
    elif path.suffix == ".au":
        struct.pack_into(">I", data, 16, rate)
    else:  # CAF: the desc chunk's float64 rate, first in it
        struct.pack_into(">d", data, data.index(b"desc") + 12, float(rate))
    damaged = path.with_name(f"{path.stem}_{rate}{path.suffix}")
    damaged.write_bytes(data)
    return damaged


@pytest.mark.parametrize("suffix", [".wav", ".au", ".caf"])
@pytest.mark.parametrize("rate", [1, 100, 1000])
def test_a_header_rate_no_recording_has_is_refused_at_once(tmp_path: Path, suffix: str, rate: int) -> None:
    """A WAV whose header said 1 Hz decoded for hours (196 hours of audio from 3 MB)."""
    clip = write_wav(tmp_path / "clip.wav", tone(300, 20.0))
    damaged = _with_rate(clip if suffix == ".wav" else convert(clip, tmp_path / f"clip{suffix}"), rate)
    started = time.monotonic()
    with pytest.raises(MediaDecodeError) as error:
        decode_audio(damaged, LENIENT)
    assert time.monotonic() - started < 10
    assert error.value.source == str(damaged) and f"sampled at {rate} Hz" in error.value.reason
    assert "the header is damaged" in error.value.reason and "asetrate" in error.value.reason


def test_telephone_audio_still_decodes(tmp_path: Path) -> None:
    audio = decode_audio(write_wav(tmp_path / "call.wav", tone(300, 2.0, sr=8000), sr=8000))
    assert audio.size / SR == pytest.approx(2.0, abs=0.01)


def test_a_corrupt_header_that_ffmpeg_only_rejects_fails_at_once(tmp_path: Path) -> None:
    """A 24-bit WAV whose rate and block align say 1 waited 60 s (ffmpeg rejected 744,688
    one-byte packets) and then said 'stalled stream; raise read_timeout_s'."""
    clip = write_wav(tmp_path / "clip.wav", tone(300, 20.0))
    clip = convert(clip, tmp_path / "s24.wav", "-c:a", "pcm_s24le")
    data = bytearray(clip.read_bytes())
    fmt = data.index(b"fmt ")
    struct.pack_into("<I", data, fmt + 12, 1)
    struct.pack_into("<H", data, fmt + 20, 1)
    damaged = tmp_path / "align1_rate1.wav"
    damaged.write_bytes(data)
    started = time.monotonic()
    with pytest.raises(MediaDecodeError, match="the header is damaged") as error:
        decode_audio(damaged, LENIENT)
    assert time.monotonic() - started < 10 and "read_timeout_s" not in str(error.value)


def test_ffmpeg_reporting_only_errors_is_damage_not_a_stall(tmp_path: Path) -> None:
    """ffmpeg that keeps reporting errors and writes no audio (an ffmpeg run by a script that
    does just that: the input itself does not matter) is a damaged file, said within seconds."""
    script = tmp_path / "erring-ffmpeg"
    line = "[pcm_s24le @ 0x1] [error] Invalid PCM packet, data has size 1 but a size of 6 was expected"
    script.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -demuxers "*) exec "{find_ffmpeg()}" "$@";; esac\n'
        f'yes "{line}" | head -n 30000 >&2\n'
        "exec sleep 60\n"
    )
    script.chmod(0o755)
    clip = write_wav(tmp_path / "clip.wav", tone(300, 1.0))
    started = time.monotonic()
    with pytest.raises(MediaDecodeError, match="damaged: ffmpeg reported") as error:
        decode_audio(clip, DecodeOptions(strict=False, ffmpeg=str(script), read_timeout_s=30))
    assert time.monotonic() - started < 10
    assert "read_timeout_s" not in str(error.value) and "Invalid PCM packet" in str(error.value)


def test_errors_after_audio_came_out_are_a_damaged_stretch_not_a_damaged_file(tmp_path: Path) -> None:
    """A long damaged stretch inside a file that decoded before it (minutes of zeroed AAC frames
    in a 22-minute talk: over 10,000 errors while no audio came) is damage that decodes in part,
    kept with its warning; it failed the whole item (reviewer 2)."""
    script = tmp_path / "erring-ffmpeg"
    line = "[aac @ 0x1] [error] Error decoding AAC frame header"
    second = 4 * SR  # bytes of one second of f32le
    script.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" -demuxers "*) exec "{find_ffmpeg()}" "$@";; esac\n'
        "echo \"[info] Input #0, aac, from 'talk.aac':\" >&2\n"
        "echo '[info]   Stream #0:0: Audio: aac (LC), 16000 Hz, mono, fltp' >&2\n"
        f"head -c {2 * second} /dev/zero\n"
        "sleep 1\n"  # the audio read, the decode waits for more: the errors come in that wait
        f'yes "{line}" | head -n 30000 >&2\n'
        "sleep 3\n"
        f"head -c {2 * second} /dev/zero\n"
    )
    script.chmod(0o755)
    clip = write_wav(tmp_path / "clip.wav", tone(300, 1.0))
    warnings: list[str] = []
    opts = DecodeOptions(strict=False, ffmpeg=str(script), read_timeout_s=30)
    audio = decode_audio(clip, opts, on_warning=warnings.append)
    assert audio.size == 4 * SR
    assert any("corrupt data" in warning for warning in warnings), warnings


def test_a_damaged_file_of_which_nothing_decodes_fails(short_track: SpokenTrack, tmp_path: Path) -> None:
    """0.0 s decoded with 89 errors (a damaged ASF header) was stored as 'no speech found', and
    skipped on every later run; an AIFF whose SSND chunk lost its data (16 s declared) alike."""
    wma = bytearray(convert(short_track.path, tmp_path / "clean.wma", "-c:a", "wmav2").read_bytes())
    wma[29:31] = struct.pack(">H", 0x7FFF)  # tester 1's case A-151
    damaged = tmp_path / "header.wma"
    damaged.write_bytes(wma)
    with pytest.raises(MediaDecodeError, match=r"no audio decoded: ffmpeg reported \d+ decoding error"):
        decode_audio(damaged, LENIENT)
    aiff = bytearray(convert(short_track.path, tmp_path / "clean.aiff").read_bytes())
    struct.pack_into(">I", aiff, aiff.index(b"SSND") + 4, 8)
    damaged = tmp_path / "ssnd.aiff"
    damaged.write_bytes(aiff)
    with pytest.raises(MediaDecodeError, match=r"no audio decoded: the file declares 00:00:1\d\.\d of audio"):
        decode_audio(damaged, LENIENT)


def test_an_input_too_short_for_one_sample_is_still_no_audio(tmp_path: Path) -> None:
    """1 ms at 48 kHz gives the resampler nothing to output: no audio, no error, as before."""
    tiny = write_wav(tmp_path / "tiny.wav", tone(440, 0.001, sr=48_000), sr=48_000)
    assert tiny.stat().st_size < 200
    assert decode_audio(tiny, LENIENT).size == 0


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(234, "an invalid argument"), (183, "invalid data in the input"), (244, "out of memory")],
)
def test_an_exit_code_says_what_it_means(code: int, meaning: str) -> None:
    """ffmpeg exits with a negative AVERROR modulo 256: 'exit code 234' alone told nothing."""
    assert f"ffmpeg failed ({meaning}" in _reason("", code) and f"exit code {code})" in _reason("", code)
    assert "ffmpeg failed (exit code 1)" in _reason("", 1)


def _envelope(samples: np.ndarray) -> np.ndarray:
    frames = samples.size // 800  # 50 ms
    return np.sqrt(np.mean(samples[: frames * 800].reshape(frames, 800) ** 2, axis=1))


def test_a_cut_across_a_damaged_packet_time_is_the_audio_there(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """Span cuts (lazy words, clips) read the file as the ingest does: a damaged time inside the
    cut's window padded it with silence, and the cut failed ("no audio there")."""
    from clasp_ingest.retriever.audio import span_samples
    from clasp_ingest.retriever.spans import Span

    damaged, jump_s = _wma_with_a_time_jump(short_track.path, tmp_path / "jump.wma")
    start, end = max(0.0, jump_s - 2.0), jump_s + 2.0
    cuts = [
        span_samples(Span(media_id="m", source=path.as_uri(), title="t", start_s=start, end_s=end, score=1.0))
        for path in (tmp_path / "jump.clean.wma", damaged)
    ]
    assert abs(cuts[0].size - cuts[1].size) <= SR // 50
    clean, cut = (_envelope(c) for c in cuts)
    frames = min(clean.size, cut.size)
    assert np.abs(clean[:frames] - cut[:frames]).max() < 0.02  # the same speech, at the same times
