from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.connectors.base import is_media_name
from typer.testing import CliRunner

from clasp_ingest.cli import app
from clasp_ingest.errors import ConfigError, MediaDecodeError
from clasp_ingest.media import DecodeOptions, decode_audio, find_ffmpeg, stream_audio
from clasp_ingest.media.decode import describe_damage
from tests.fixtures_audio import (
    SR,
    SpokenTrack,
    convert,
    corrupt_middle,
    piped_wav,
    read_wav,
    referencing_texts,
    surround_96k,
    tone,
    truncate,
    write_wav,
)

BAD = ["empty", "text", "random", "truncated", "no_audio", "missing"]
#: What each bad input's error says the trouble is, and the fix.
BAD_REASONS = {
    "empty": "empty (0 bytes); download or export it again",
    "text": "not a readable media file",
    "random": "check that it plays, or download it again",
    "truncated": "cannot decode",
    "no_audio": "no audio stream (video only?); give a file with an audio track",
    "missing": "no such file; check the path",
}


def _children() -> set[int]:
    """Live child processes of this test process (from /proc)."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def test_find_ffmpeg() -> None:
    path = find_ffmpeg()
    assert Path(path).is_file() and os.access(path, os.X_OK)
    assert find_ffmpeg(path) == path
    with pytest.raises(ConfigError, match="no-such-ffmpeg"):
        find_ffmpeg("no-such-ffmpeg")


def test_decode_options_validate() -> None:
    with pytest.raises(ConfigError, match="block_s"):
        DecodeOptions(block_s=0)
    with pytest.raises(ConfigError, match="read_timeout_s"):
        DecodeOptions(read_timeout_s=-1)


def test_stereo_44k_flac_becomes_16k_mono(tmp_path: Path) -> None:
    src = write_wav(tmp_path / "tone.wav", tone(440.0, 3.0, amplitude=0.5))
    flac = convert(src, tmp_path / "tone.flac", "-ac", "2", "-ar", "44100")
    audio = decode_audio(flac)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 3 * SR) <= 2
    rms = float(np.sqrt(np.mean(audio[SR // 10 : -SR // 10] ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) * SR / audio.size == pytest.approx(440.0, abs=1.0)


def test_blocks_are_streamed_and_match_whole_decode(short_track: SpokenTrack) -> None:
    blocks = list(stream_audio(short_track.path, DecodeOptions(block_s=0.5)))
    assert all(block.size == SR // 2 for block in blocks[:-1]) and 0 < blocks[-1].size <= SR // 2
    whole = decode_audio(short_track.path)
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_allclose(whole, read_wav(short_track.path), atol=1e-4)


@pytest.mark.parametrize("kind", ["wav", "flac", "mp3", "opus", "m4a", "mp4", "webm"])
def test_formats_decode_to_the_same_length(
    variants: dict[str, Path], short_track: SpokenTrack, kind: str
) -> None:
    warnings: list[str] = []
    audio = decode_audio(variants[kind], on_warning=warnings.append)
    assert abs(audio.size / SR - short_track.duration_s) < 0.15
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert warnings == []  # a whole file is not "damaged" (a video's extra 0.5 s of pictures included)


def test_eight_channel_96k_is_downmixed_to_16k_mono(short_track: SpokenTrack, tmp_path: Path) -> None:
    surround = surround_96k(short_track.path, tmp_path / "surround.wav")
    warnings: list[str] = []
    audio = decode_audio(surround, on_warning=warnings.append)
    assert abs(audio.size / SR - short_track.duration_s) < 0.05 and warnings == []
    reference = read_wav(short_track.path)[: audio.size]
    assert np.corrcoef(audio[: reference.size], reference)[0, 1] > 0.9  # the same speech, downmixed


@pytest.mark.parametrize(("channels", "spoken"), [(6, 3), (8, 3), (9, 0), (20, 7), (32, 31)])
def test_channels_without_a_layout_are_all_heard(
    short_track: SpokenTrack, tmp_path: Path, channels: int, spoken: int
) -> None:
    """A multitrack recorder's WAV (no channel mask), speech on one channel: ffmpeg guessed 5.1
    or 7.1 for 6 or 8 channels and dropped the 4th as LFE (no speech found), and could not
    downmix 9-23 or over 24 at all. Every channel now counts alike."""
    import soundfile as sf

    speech = read_wav(short_track.path)
    many = np.zeros((speech.size, channels), dtype=np.float32)
    many[:, spoken] = speech
    path = tmp_path / f"poly{channels}.wav"
    sf.write(path, many, SR, subtype="PCM_16")
    warnings: list[str] = []
    audio = decode_audio(path, on_warning=warnings.append)
    assert audio.size == speech.size and warnings == []
    np.testing.assert_allclose(audio, speech / channels, atol=2e-4)


def test_a_labelled_surround_track_keeps_ffmpegs_downmix(short_track: SpokenTrack, tmp_path: Path) -> None:
    """A film's 5.1 (a layout of its own): dialogue in the centre comes out ahead of an even mix."""
    import soundfile as sf

    centre = convert(short_track.path, tmp_path / "film.flac", "-af", "pan=5.1|FC=c0", "-c:a", "flac")
    audio = decode_audio(centre)
    speech = read_wav(short_track.path)
    assert np.abs(audio).max() > 2 * np.abs(speech).max() / 6
    # ffmpeg 7 guesses a layout for every stream: an unlabelled second track changes nothing
    sf.write(tmp_path / "poly.wav", np.zeros((SR, 6), dtype=np.float32), SR, subtype="PCM_16")
    two = tmp_path / "two.mka"
    convert(centre, two, "-i", str(tmp_path / "poly.wav"), "-map", "0:a", "-map", "1:a", "-c", "copy")
    np.testing.assert_array_equal(decode_audio(two, DecodeOptions(strict=False)), audio)


def test_truncated_mp3_decodes_as_far_as_it_goes_with_a_warning(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    mp3 = convert(short_track.path, tmp_path / "whole.mp3", "-b:a", "32k")
    cut = truncate(mp3, tmp_path / "cut.mp3", 0.4)
    warnings: list[str] = []
    audio = decode_audio(cut, DecodeOptions(strict=False), on_warning=warnings.append)
    assert 0.3 < audio.size / SR / short_track.duration_s < 0.5  # what was there, decoded
    assert len(warnings) == 1 and warnings[0].startswith(
        "ends early: the stream is truncated or corrupt after"
    )
    times = re.search(r"after 00:00:(\d\d\.\d) of the 00:00:(\d\d\.\d) it declares", warnings[0])
    assert times is not None and warnings[0].endswith("; decoded what was readable")
    assert float(times[1]) == pytest.approx(audio.size / SR, abs=0.06)
    assert float(times[2]) == pytest.approx(short_track.duration_s, abs=0.2)
    with pytest.raises(MediaDecodeError, match="ends early") as info:
        decode_audio(cut)  # strict (the library's default)
    assert cut.name in str(info.value)


@pytest.mark.parametrize("codec", ["libopus", "libvorbis", "flac"])
def test_an_ogg_capture_that_starts_mid_stream_is_not_cut(
    short_track: SpokenTrack, tmp_path: Path, codec: str
) -> None:
    """A recording of a live Ogg stream (Icecast) starts at the stream's clock: ffmpeg's
    "Duration" is its last page's time, 01:00:05, and the whole file "ended early" (strict:
    the library refused it) though nothing is missing."""
    ogg = convert(short_track.path, tmp_path / "capture.ogg", "-c:a", codec, "-output_ts_offset", "3600")
    whole = decode_audio(ogg)  # strict
    assert whole.size / SR == pytest.approx(short_track.duration_s, abs=0.1)
    warnings: list[str] = []
    decode_audio(ogg, DecodeOptions(strict=False), on_warning=warnings.append)
    assert warnings == []


def test_mid_file_corruption_is_kept_with_a_warning(short_track: SpokenTrack, tmp_path: Path) -> None:
    mp3 = convert(short_track.path, tmp_path / "whole.mp3", "-b:a", "32k")
    damaged = corrupt_middle(mp3, tmp_path / "damaged.mp3")
    warnings: list[str] = []
    audio = decode_audio(damaged, DecodeOptions(strict=False), on_warning=warnings.append)
    assert audio.size / SR > short_track.duration_s - 3.0
    assert len(warnings) == 1 and "ffmpeg: " in warnings[0] and "problem(s), first: " in warnings[0]


def test_describe_damage() -> None:
    assert describe_damage(9.14, 9.14, 0) is None
    assert describe_damage(9.0, 9.6, 0) is None  # within the tolerance (1 s or 1 %)
    assert describe_damage(3.6, 9.14, 0) == (
        "ends early: the stream is truncated or corrupt after 00:00:03.6 of the 00:00:09.1 it declares"
    )
    assert describe_damage(3725.0, None, 2, ["Header missing"]) == (
        "corrupt data: the audio may have gaps (01:02:05.0 decoded) "
        "(ffmpeg: 2 problem(s), first: 'Header missing')"
    )


def test_audio_offset_in_a_video_is_kept(short_track: SpokenTrack, tmp_path: Path) -> None:
    from tests.fixtures_audio import mux_video

    late = mux_video(short_track.path, tmp_path / "late.mkv", audio_offset_s=2.0)
    plain, shifted = decode_audio(short_track.path), decode_audio(late)

    def onset(x: np.ndarray) -> float:
        return float(np.nonzero(np.abs(x) > 0.05)[0][0]) / SR

    assert onset(shifted) - onset(plain) == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_raises_naming_the_file(bad_inputs: dict[str, Path], kind: str) -> None:
    path = bad_inputs[kind]
    started = time.monotonic()
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(path)
    assert path.name in str(info.value) and BAD_REASONS[kind] in str(info.value)
    assert info.value.source == str(path) and "\n" not in str(info.value)
    assert time.monotonic() - started < 10


def test_ffmpeg_stderr_is_quoted(bad_inputs: dict[str, Path]) -> None:
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(bad_inputs["no_audio"])
    assert "no audio stream" in str(info.value) and "matches no streams" in info.value.stderr_tail


@pytest.mark.parametrize("kind", BAD)
def test_cli_bad_input_exits_non_zero(bad_inputs: dict[str, Path], kind: str) -> None:
    path = bad_inputs[kind]
    result = CliRunner().invoke(app, ["segment", str(path), "--json"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]


def test_stalled_read_times_out_and_reaps(tmp_path: Path) -> None:
    fifo = tmp_path / "stalled.wav"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # keeps the pipe open, never writes
    try:
        before = _children()
        started = time.monotonic()
        with pytest.raises(MediaDecodeError, match="stalled") as info:
            decode_audio(fifo, DecodeOptions(read_timeout_s=1.0))
        assert fifo.name in str(info.value)
        assert time.monotonic() - started < 8
        assert _children() <= before
    finally:
        os.close(writer)


def test_closing_the_stream_early_reaps_ffmpeg(long_track: SpokenTrack) -> None:
    before = _children()
    stream = stream_audio(long_track.path, DecodeOptions(block_s=0.1))
    next(stream)
    assert len(_children() - before) == 1
    stream.close()
    assert _children() <= before


def test_strict_mode_rejects_decoder_errors_and_lenient_mode_accepts(
    tmp_path: Path, short_track: SpokenTrack
) -> None:
    mp3 = convert(short_track.path, tmp_path / "cut.mp3", "-b:a", "32k").read_bytes()
    damaged = tmp_path / "damaged.mp3"
    middle = len(mp3) // 2
    damaged.write_bytes(mp3[:middle] + bytes(range(256)) * 8 + mp3[middle:])
    with pytest.raises(MediaDecodeError, match="corrupt data"):
        decode_audio(damaged)
    audio = decode_audio(damaged, DecodeOptions(strict=False))
    assert audio.size / SR > short_track.duration_s - 1.0


def _ffmpegs() -> list[str]:
    """The system ffmpeg (when on PATH) and the imageio-ffmpeg one: both must behave alike."""
    import shutil

    import imageio_ffmpeg

    found = [shutil.which("ffmpeg"), imageio_ffmpeg.get_ffmpeg_exe()]
    return list(dict.fromkeys(path for path in found if path))


@pytest.mark.parametrize("container", ["mp4", "ts", "mpg"])  # MPEG-TS/PS: ffmpeg moved their start
@pytest.mark.parametrize("ffmpeg", _ffmpegs())
def test_every_ffmpeg_keeps_the_audio_offset(
    ffmpeg: str, container: str, short_track: SpokenTrack, tmp_path: Path
) -> None:
    from tests.fixtures_audio import mux_video

    late = mux_video(short_track.path, tmp_path / f"late.{container}", audio_offset_s=1.5)
    options = DecodeOptions(ffmpeg=ffmpeg)
    plain, shifted = decode_audio(short_track.path, options), decode_audio(late, options)
    onsets = [float(np.nonzero(np.abs(x) > 0.05)[0][0]) / SR for x in (plain, shifted)]
    assert onsets[1] - onsets[0] == pytest.approx(1.5, abs=0.05)


#: Containers listed as media (connectors.base.MEDIA_EXTENSIONS) beyond the fixture's: ffmpeg args.
MORE_CONTAINERS = {
    "flv": ("-c:a", "libmp3lame", "-ar", "44100"),  # Flash video's audio-only form
    "mts": ("-f", "mpegts", "-c:a", "mp2"),  # camcorders (AVCHD)
    "caf": (
        "-c:a",
        "pcm_s16be",
    ),  # Apple Core Audio
    "vob": ("-f", "vob", "-c:a", "mp2"),  # DVD
    "3g2": ("-c:a", "aac"),  # phones
    "asf": ("-c:a", "wmav2"),  # Windows Media
    "wv": ("-c:a", "wavpack"),
    "bwf": ("-f", "wav", "-write_bext", "1"),  # Broadcast WAV: archives' masters
    "rf64": ("-f", "wav", "-rf64", "always"),
    "w64": ("-f", "w64"),
    "aifc": ("-f", "aiff", "-c:a", "pcm_s16be"),
    "eac3": ("-f", "eac3", "-c:a", "eac3", "-ar", "48000"),
}


@pytest.mark.parametrize("kind", sorted(MORE_CONTAINERS))
def test_every_listed_container_is_media_and_decodes(
    short_track: SpokenTrack, tmp_path: Path, kind: str
) -> None:

    from tests.fixtures_audio import convert

    path = convert(short_track.path, tmp_path / f"talk.{kind}", *MORE_CONTAINERS[kind])
    assert is_media_name(path.name)
    audio = decode_audio(path)
    assert abs(audio.size / SR - short_track.duration_s) < 0.15
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def _ffmpeg(*args: str) -> None:
    import subprocess

    subprocess.run([find_ffmpeg(), "-nostdin", "-v", "error", "-y", *args], check=True)


def test_whole_files_are_not_called_damaged(short_track: SpokenTrack, tmp_path: Path) -> None:
    """ffmpeg guesses the duration of raw AAC and VBR mp3 without a header from the bitrate
    (silence first makes the guess far too long), and a WAV written to a pipe declares no
    length (its last packet, short, is "corrupt" to ffmpeg): all whole, none damaged."""
    silence_then_speech = [
        "-f",
        "lavfi",
        "-t",
        "12",
        "-i",
        "anullsrc=r=48000:cl=mono",
        "-i",
        str(short_track.path),
    ]
    joined = ["-filter_complex", "[0][1]concat=n=2:v=0:a=1"]
    _ffmpeg(*silence_then_speech, *joined, "-c:a", "aac", str(tmp_path / "raw.aac"))
    _ffmpeg(*silence_then_speech, *joined, "-c:a", "libmp3lame", "-q:a", "2", "-write_xing", "0",
            str(tmp_path / "vbr.mp3"))  # fmt: skip
    piped_wav(short_track.path, tmp_path / "piped.wav")
    for name in ("raw.aac", "vbr.mp3", "piped.wav"):
        audio = decode_audio(tmp_path / name, DecodeOptions(strict=True))  # raised "ends early" / "corrupt"
        assert audio.size / SR > short_track.duration_s - 0.5, name


def test_audio_too_short_to_resample_is_no_audio_not_an_error(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    blip = tmp_path / "blip48k.wav"
    _ffmpeg("-i", str(short_track.path), "-ar", "48000", "-t", "0.001", str(blip))
    assert decode_audio(blip).size < 16  # was: "no audio samples decoded; is the file empty?"


def test_a_second_longer_audio_track_is_not_damage(short_track: SpokenTrack, tmp_path: Path) -> None:
    """The container's duration is its longest track's; the first track, decoded, ends before."""
    film = tmp_path / "two_tracks.mkv"
    longer = ["-f", "lavfi", "-t", str(short_track.duration_s + 20), "-i", "sine=f=300:r=16000"]
    _ffmpeg("-i", str(short_track.path), *longer, "-map", "0:a", "-map", "1:a", "-c:a", "flac", str(film))
    audio = decode_audio(film, DecodeOptions(strict=True))  # raised "ends early"
    assert audio.size / SR == pytest.approx(short_track.duration_s, abs=0.1)  # the first track
    np.testing.assert_allclose(audio, decode_audio(short_track.path), atol=2e-3)
    cut = truncate(
        convert(short_track.path, tmp_path / "whole.mp3", "-b:a", "32k"), tmp_path / "cut.mp3", 0.4
    )
    with pytest.raises(MediaDecodeError, match="ends early"):
        decode_audio(cut)  # one track: a shortfall still counts


def test_clasp_ffmpeg_names_the_ffmpeg_everywhere_and_a_bad_one_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_track: SpokenTrack
) -> None:
    from pydantic import ValidationError

    from clasp_ingest.config import Settings

    log = tmp_path / "calls.log"
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {find_ffmpeg()} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CLASP_FFMPEG", str(wrapper))
    assert find_ffmpeg() == str(wrapper)  # what cuts and clips use when given no ffmpeg
    assert decode_audio(short_track.path).size > 0
    calls = log.read_text().splitlines()  # its demuxers listed once (the whitelist), then the decode
    assert calls[0] == "-hide_banner -demuxers" and len(calls) == 2 and "pcm_f32le" in calls[1]
    assert Settings().ffmpeg == str(wrapper)
    monkeypatch.setenv("CLASP_FFMPEG", str(tmp_path / "nowhere" / "ffmpeg"))
    with pytest.raises(ConfigError, match=r"ffmpeg'? \(CLASP_FFMPEG\) not found"):
        find_ffmpeg()
    with pytest.raises(ValidationError, match="no ffmpeg program there"):
        Settings()
    other = tmp_path / "sox"  # a program, but not ffmpeg: every file seemed broken ("check that it plays")
    other.write_text('#!/bin/sh\necho "sox: SoX v14.4.2"\n')
    other.chmod(0o755)
    monkeypatch.setenv("CLASP_FFMPEG", str(other))
    with pytest.raises(ValidationError, match=r"sox' is not ffmpeg \(its -version does not say"):
        Settings()
    chatty = tmp_path / "chatty"  # its line was read as samples: noise, and the item stored as empty
    monkeypatch.delenv("CLASP_FFMPEG")
    chatty.write_text(f'#!/bin/sh\necho "wrapper starting"\nexec {find_ffmpeg()} "$@"\n')
    chatty.chmod(0o755)
    monkeypatch.setenv("CLASP_FFMPEG", str(chatty))
    with pytest.raises(ValidationError, match="prints something before ffmpeg's own output"):
        Settings()
    monkeypatch.chdir(tmp_path)  # a wrapper named relative to the current folder, as a shell would
    monkeypatch.setenv("CLASP_FFMPEG", "./ffmpeg-wrapper")  # was looked up on PATH as 'ffmpeg-wrapper'
    assert Settings().ffmpeg == "./ffmpeg-wrapper" and find_ffmpeg() == "./ffmpeg-wrapper"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds ffmpeg through /proc")
def test_ffmpeg_runs_in_a_process_group_of_its_own(short_track: SpokenTrack) -> None:
    """A terminal's Ctrl-C and Prefect's cancellation signal the whole process group: an ffmpeg
    in ours died with the run's signal, and its item read as a file that cannot be decoded."""
    blocks = stream_audio(short_track.path, DecodeOptions(block_s=0.1))
    next(blocks)  # ffmpeg is running
    try:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if "ffmpeg" in text[text.index("(") : text.rindex(")")] and int(fields[1]) == os.getpid():
                children.append(int(stat.parent.name))
        assert len(children) == 1
        assert os.getpgid(children[0]) == children[0] != os.getpgrp()
    finally:
        blocks.close()


#: The name each referencing file gets: a manifest may carry any media name.
_REFERENCE_NAMES = {"hls": "talk.m3u8", "dash": "talk.mp4", "ffconcat": "talk.mp3", "sdp": "talk.sdp"}


@pytest.mark.parametrize("kind", ["hls", "dash", "ffconcat", "sdp"])
def test_a_playlist_or_manifest_is_refused_and_what_it_names_is_not_read(
    kind: str, short_track: SpokenTrack, tmp_path: Path
) -> None:
    # each of these decoded the file it names (or opened RTP ports) before: a downloaded or
    # dropped-in file could have put any media file of this machine into the store
    ts = convert(short_track.path, tmp_path / "elsewhere.ts", "-c:a", "aac")
    m4a = convert(short_track.path, tmp_path / "elsewhere.m4a", "-c:a", "aac")
    path = tmp_path / _REFERENCE_NAMES[kind]
    path.write_text(referencing_texts(ts, m4a)[kind])
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(path)
    message = str(info.value)
    assert path.name in message and "a playlist or stream description" in message
    assert "give the media file itself" in message and len(message) < 600  # not ffmpeg's whole list


@pytest.mark.parametrize("name", ["talk.mkv", "talk.mp4", "talk.wav"])
def test_an_hls_playlist_under_a_media_name_is_called_a_playlist(
    name: str, short_track: SpokenTrack, tmp_path: Path
) -> None:
    """Refused all the same, but as 'exit code 183' or 'not a readable media file'."""
    ts = convert(short_track.path, tmp_path / "elsewhere.ts", "-c:a", "aac")
    m4a = convert(short_track.path, tmp_path / "elsewhere.m4a", "-c:a", "aac")
    path = tmp_path / name
    path.write_text(referencing_texts(ts, m4a)["hls"])
    with pytest.raises(MediaDecodeError, match=r"a playlist or stream description .* give the media file"):
        decode_audio(path)


def test_the_demuxer_whitelist_leaves_out_exactly_the_referencing_ones() -> None:
    from clasp_ingest.media.decode import REFERENCING_DEMUXERS, demuxer_whitelist

    allowed = demuxer_whitelist(find_ffmpeg()) or ""
    names = set(allowed.replace(",", " ").split())
    assert {"mov", "mp4", "matroska", "ogg", "mp3", "wav", "flac", "aac", "mpegts", "asf"} <= names
    assert not names & REFERENCING_DEMUXERS
    assert demuxer_whitelist("/no/such/ffmpeg") is None  # then decoding fails on its own, naming it


def test_an_ffmpeg_that_lists_no_demuxers_decodes_nothing(short_track: SpokenTrack, tmp_path: Path) -> None:
    """The playlist guard failed open: without the list, a local .m3u8 naming another file on
    this machine was ingested (that file's speech, exit 0)."""
    mute = tmp_path / "ffmpeg-mute"  # answers everything but -demuxers, as ffmpeg does
    mute.write_text(f'#!/bin/sh\ncase "$*" in *-demuxers*) exit 0;; esac\nexec {find_ffmpeg()} "$@"\n')
    mute.chmod(0o755)
    ts = convert(short_track.path, tmp_path / "elsewhere.ts", "-c:a", "aac")
    playlist = tmp_path / "talk.m3u8"
    playlist.write_text(referencing_texts(ts, ts)["hls"])
    for source in (playlist, short_track.path):
        with pytest.raises(ConfigError, match=r"did not list its demuxers .* nothing is decoded"):
            decode_audio(source, DecodeOptions(ffmpeg=str(mute)))


@pytest.mark.parametrize(
    ("tail", "said"),
    [
        ("Error opening input: Server returned 404 Not Found | Error opening input files: Server returned "
         "404 Not Found", "the server answered 404 Not Found; check the URL"),
        ("HTTP error 403 Forbidden", "the server answered 403 Forbidden; check the URL"),
    ],
)  # fmt: skip
def test_an_http_error_of_ffmpeg_says_what_the_server_answered(tail: str, said: str) -> None:
    # 'segment URL' of a missing file said "ffmpeg failed with exit code 8; check that the file plays"
    from clasp_ingest.media.decode import _reason

    assert _reason(tail, 8).startswith(said)


def test_a_chained_ogg_that_changes_channels_says_the_rest_is_not_read(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """Two Ogg files joined with cat, the second stereo: ffmpeg stops at the join, and the
    warning said "corrupt data: the audio may have gaps", not that half the file was gone."""
    mono = convert(short_track.path, tmp_path / "a.ogg", "-c:a", "libvorbis")
    stereo = convert(short_track.path, tmp_path / "b.ogg", "-c:a", "libvorbis", "-ac", "2")
    chained = tmp_path / "chained.ogg"
    chained.write_bytes(mono.read_bytes() + stereo.read_bytes())
    warnings: list[str] = []
    audio = decode_audio(chained, DecodeOptions(strict=False), on_warning=warnings.append)
    assert audio.size / SR == pytest.approx(short_track.duration_s, abs=0.1)  # the first part
    assert len(warnings) == 1 and warnings[0].startswith("stops at 00:00:"), warnings
    assert "changes its channels or sample rate there" in warnings[0]
    with pytest.raises(MediaDecodeError, match="use strict=False to keep the first part"):
        decode_audio(chained)


@pytest.mark.parametrize(
    ("codec", "offset"), [("libopus", "0"), ("libvorbis", "0"), ("libopus", "3600"), ("libvorbis", "3600")]
)
def test_an_ogg_missing_pages_inside_still_ends_early(
    short_track: SpokenTrack, tmp_path: Path, codec: str, offset: str
) -> None:
    """Its last page's time declares more than the pages left hold (the check stays for Ogg; the
    live capture above only has its start taken off)."""
    import soundfile as sf

    thrice = tmp_path / "thrice.wav"  # 48 s: some 50 pages (over a short file's few, ffmpeg pads a hole)
    sf.write(thrice, np.tile(read_wav(short_track.path), 3), SR)
    whole = convert(thrice, tmp_path / "whole.ogg", "-c:a", codec, "-output_ts_offset", offset).read_bytes()
    pages = [i for i in range(len(whole)) if whole.startswith(b"OggS", i)]
    third = len(pages) // 3
    holed = tmp_path / "holed.ogg"
    holed.write_bytes(whole[: pages[third]] + whole[pages[2 * third] :])  # whole pages gone
    with pytest.raises(MediaDecodeError, match="ends early"):
        decode_audio(holed)


@pytest.mark.parametrize(
    ("tag", "stored"), [("en-US", "en"), ("EN", "en"), ("pt_BR", "pt"), ("zh-Hant", "zh")]
)
def test_a_tracks_ietf_language_tag_is_its_language(
    short_track: SpokenTrack, tmp_path: Path, tag: str, stored: str
) -> None:
    """Ogg comments and Matroska's IETF field give ``en-US``, ``pt_BR``: only ``[a-z]{2,3}`` tags
    were read, so such items had no language, and language filters never found them."""
    from clasp_ingest.pipeline import _with_language
    from clasp_ingest.types import MediaRef

    ogg = convert(
        short_track.path, tmp_path / "tagged.ogg", "-c:a", "libopus", "-metadata:s:a:0", f"language={tag}"
    )
    heard: list[str] = []
    for _ in stream_audio(ogg, on_language=heard.append):
        pass
    assert heard == [tag]
    assert _with_language(MediaRef("file:///x.ogg", "m", "v"), heard).metadata["language"] == stored


def test_a_file_that_cannot_be_read_is_named_so() -> None:
    """A ``chmod 000`` file said "check that the file plays, or convert it": converting needs
    read access too. (ffmpeg's own words here: the tests run as root, whom modes do not stop.)"""
    from clasp_ingest.media.decode import _reason

    tail = "Error opening input: Permission denied | Error opening input file file:/x/cat.wav."
    assert _reason(tail, 243) == "the file cannot be read (permission denied); check its permissions"
