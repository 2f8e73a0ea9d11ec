"""Media a film/TV archive holds that decoded badly (a reviewer's findings, 2026-12-08): a TV
recording cut mid-GOP and a DVD's MPEG-2 stream were called damaged for their *video*
decoder's errors; an MPEG program stream whose audio starts past ffmpeg's 5 s probe had "no
audio stream"; a Matroska/WebM audio track cut out of a film (it starts late) "ended early".
Real ffmpeg; no network."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.media import DecodeOptions, decode_audio, find_ffmpeg, stream_audio
from clasp_ingest.media.decode import _origin
from tests.fixtures_audio import SR, SpokenTrack, mux_video


def _ffmpeg(*args: str) -> None:
    subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-y", *args], check=True)


def _warnings(path: Path) -> tuple[np.ndarray, list[str]]:
    said: list[str] = []
    audio = np.concatenate(list(stream_audio(path, DecodeOptions(strict=False), on_warning=said.append)))
    return audio, said


def _onset_s(audio: np.ndarray) -> float:
    return float(np.nonzero(np.abs(audio) > 0.05)[0][0]) / SR


@pytest.mark.parametrize(
    ("context", "origin"),
    [
        ("[h264 @ 0x55d0] ", "h264"),
        ("[vist#0:0/h264 @ 0x55d0] ", "video"),  # ffmpeg 6+
        ("[aist#0:1/aac @ 0x55d0] ", "aac"),
        ("[out#1/null @ 0x55d0] ", "copy"),  # the stream copy to nowhere (MPEG streams)
        ("[null @ 0x55d0] ", "copy"),  # ffmpeg 5's name for it
        ("[out#0/f32le @ 0x55d0] ", "f32le"),  # the audio's own output counts
        ("[mpegts @ 0x55d0] ", "mpegts"),
        ("", ""),
    ],
)
def test_who_logged_a_line(context: str, origin: str) -> None:
    assert _origin(context) == origin


def test_a_tv_recording_cut_mid_gop_is_not_damaged(short_track: SpokenTrack, tmp_path: Path) -> None:
    whole = tmp_path / "whole.ts"
    video = "testsrc=size=160x120:rate=25:d=16"
    _ffmpeg("-f", "lavfi", "-i", video, "-i", str(short_track.path), "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "100", "-c:a", "aac", "-ar", "48000",
            "-t", "16", str(whole))  # fmt: skip
    data = whole.read_bytes()
    packets = len(data) // 188
    cut = tmp_path / "cut.ts"  # a recording that starts mid-GOP, on a packet boundary
    cut.write_bytes(data[(packets // 3) * 188 :])
    probe = subprocess.run([find_ffmpeg(), "-nostdin", "-i", str(cut), "-map", "0:v", "-f", "null", "-"],
                           capture_output=True, text=True)  # fmt: skip
    assert "non-existing PPS" in probe.stderr or "no frame" in probe.stderr  # the video's errors
    audio, said = _warnings(cut)
    assert said == [] and audio.size / SR > 8
    decode_audio(cut, DecodeOptions(strict=True))  # raised "corrupt data: the audio may have gaps"


def test_a_dvd_stream_whose_audio_starts_late_decodes(short_track: SpokenTrack, tmp_path: Path) -> None:
    on_time = mux_video(short_track.path, tmp_path / "a.mpg")
    late = mux_video(short_track.path, tmp_path / "late.mpg", audio_offset_s=7.0)
    plain, shifted = decode_audio(on_time), decode_audio(late)  # raised "no audio stream"
    assert _onset_s(shifted) - _onset_s(plain) == pytest.approx(7.0, abs=0.1)  # the lead is kept
    assert abs(shifted.size - plain.size - 7 * SR) < 0.2 * SR


@pytest.mark.parametrize("suffix", [".mka", ".webm"])
def test_a_late_matroska_track_is_not_truncated_and_a_cut_one_still_is(
    suffix: str, short_track: SpokenTrack, tmp_path: Path
) -> None:
    codec = ["-c:a", "libopus"] if suffix == ".webm" else ["-c:a", "flac"]
    late = tmp_path / f"track2{suffix}"  # ffmpeg -i film.mkv -map 0:a:1 -c copy track2.mka
    _ffmpeg("-itsoffset", "5", "-i", str(short_track.path), *codec, str(late))
    audio, said = _warnings(late)
    assert said == [] and abs(audio.size / SR - short_track.duration_s) < 0.2
    decode_audio(late, DecodeOptions(strict=True))  # raised "ends early"

    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(late.read_bytes()[: late.stat().st_size // 3])
    _, said = _warnings(cut)
    assert len(said) == 1 and "ends early" in said[0]


def test_a_span_of_a_dvd_stream_whose_audio_starts_late_is_cut(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """Its ingest probes further (above); a span's cut from the file's start (lazy words'
    30 s of context, a clip's context) failed the same way: "Could not write header"."""
    from clasp_ingest.retriever.audio import span_in_context
    from clasp_ingest.retriever.spans import Span

    late = mux_video(short_track.path, tmp_path / "late.mpg", audio_offset_s=7.0)
    whole = decode_audio(late)
    onset = _onset_s(whole)
    span = Span(media_id="late", source=str(late), title="late", start_s=onset, end_s=onset + 2.0, score=1.0)
    cut = span_in_context(span, window_s=30.0)  # from 0 s: the window reaches the file's start
    assert cut.first == round(onset * SR) and cut.span.size == 2 * SR
    start = round(onset * SR)
    expected = whole[start : start + cut.span.size]
    assert np.corrcoef(cut.span, expected)[0, 1] > 0.99
