from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from clasp_ingest.cli import app
from clasp_ingest.errors import ConfigError
from clasp_ingest.media import DecodeOptions, SegmenterOptions, SpeechSegment, segment_blocks, segment_media
from clasp_ingest.media.segment import _Segmenter
from tests.fixtures_audio import (
    SENTENCES,
    SR,
    SpokenTrack,
    build_track,
    mux_video,
    noise,
    read_wav,
    write_wav,
)


def _spans(segments: list[SpeechSegment]) -> list[tuple[float, float]]:
    return [(s.segment.start_s, s.segment.end_s) for s in segments]


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def _check_invariants(segments: list[SpeechSegment], duration_s: float, options: SegmenterOptions) -> None:
    assert [s.segment.index for s in segments] == list(range(len(segments)))
    previous_end = 0.0
    for item in segments:
        seg = item.segment
        assert previous_end <= seg.start_s < seg.end_s <= duration_s + 1e-3
        assert seg.start_s == round(seg.start_s, 3) and seg.end_s == round(seg.end_s, 3)
        assert item.samples.dtype == np.float32
        assert item.samples.size == round((seg.end_s - seg.start_s) * SR)
        assert seg.duration_s <= options.max_segment_s + 1e-6
        previous_end = seg.end_s


@pytest.fixture(scope="module")
def long_segments(long_track: SpokenTrack) -> list[SpeechSegment]:
    return list(segment_media(long_track.path, media_id="long"))


def test_options_validate() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        SegmenterOptions(threshold=1.5)
    with pytest.raises(ConfigError, match="max_segment_s"):
        SegmenterOptions(min_segment_s=5.0, max_segment_s=8.0)
    with pytest.raises(ConfigError, match="min_pause_s"):
        SegmenterOptions(min_pause_s=0)
    with pytest.raises(ConfigError, match=r"vad_gain_db must be in \[0, 60\], got -3"):
        SegmenterOptions(vad_gain_db=-3.0)
    assert SegmenterOptions(threshold=0.6).stop_threshold == pytest.approx(0.45)
    for name in ("max_segment_s", "min_pause_s", "threshold"):
        with pytest.raises(ConfigError, match=f"{name} must be a finite number, got inf"):
            SegmenterOptions(**{name: float("inf")})
    for name in ("max_segment_s", "min_pause_s", "max_merge_gap_s"):  # 1e308: OverflowError per item
        with pytest.raises(ConfigError, match=rf"{name} must be at most 86400 \(a day\), got 1e\+308"):
            SegmenterOptions(**{name: 1e308})


def test_a_bad_clasp_variable_is_one_error_line_naming_it(
    variants: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLASP_MAX_SEGMENT_S", "abc")
    bad = CliRunner().invoke(app, ["segment", str(variants["wav"])])
    assert bad.exit_code == 1, bad.output
    assert bad.stderr.strip() == (
        "error: CLASP_MAX_SEGMENT_S='abc': Input should be a valid number, unable to parse string as a "
        "number; fix the variable or unset it"
    )
    monkeypatch.setenv("CLASP_MAX_SEGMENT_S", "inf")
    inf = CliRunner().invoke(app, ["segment", str(variants["wav"])])
    assert inf.exit_code == 1 and "CLASP_MAX_SEGMENT_S='inf': Input should be a finite number" in inf.stderr
    monkeypatch.setenv("CLASP_MAX_SEGMENT_S", "1e308")  # finite, but every item failed: OverflowError
    huge = CliRunner().invoke(app, ["segment", str(variants["wav"])])
    assert huge.exit_code == 1 and huge.stderr.startswith(
        "error: CLASP_MAX_SEGMENT_S=1e+308: the longest segment (s) must be at most 86400 (a day)"
    ), huge.stderr
    monkeypatch.setenv("CLASP_DEVICE", "gpu")  # a check of ours: its words, not pydantic's "Value error, "
    device = CliRunner().invoke(app, ["segment", str(variants["wav"])])
    assert device.exit_code == 1, device.stderr
    assert device.stderr.startswith("error: CLASP_DEVICE='gpu': use 'auto'"), device.stderr


def _said(result: Result) -> str:
    """A usage error's text without typer's box and line breaks."""
    return " ".join(result.output.replace("│", " ").split())


def test_bad_segmenter_values_name_the_option_or_variable_not_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner, missing = CliRunner(), str(tmp_path / "talk.wav")  # refused before the file is read
    for args, message in [
        (["--min-s", "0"], "--min-s 0: the shortest segment (s) must be > 0; change --min-s"),
        (["--min-pause-s", "nan"], "--min-pause-s nan: the shortest pause that ends a segment (s) must be a"),
        (
            ["--max-s", "1"],
            "the longest segment (--max-s 1) must be at least 2 × the shortest (1 s by default) + 2 × the "
            "padding around speech (0.1 s by default) = 2.2 s, so long speech can be split; raise --max-s "
            "to 2.2 or more, or lower --min-s",
        ),
    ]:
        bad = runner.invoke(app, ["segment", missing, *args])
        assert bad.exit_code == 2 and message in _said(bad), bad.output
        assert "talk.wav" not in bad.output and "SegmenterOptions" not in bad.output
    monkeypatch.setenv("CLASP_MIN_PAUSE_S", "0")
    pause = runner.invoke(app, ["segment", missing])
    assert pause.exit_code == 1 and pause.stderr == (
        "error: CLASP_MIN_PAUSE_S='0': Input should be greater than 0; fix the variable or unset it\n"
    )
    monkeypatch.delenv("CLASP_MIN_PAUSE_S")
    monkeypatch.setenv("CLASP_MAX_SEGMENT_S", "1")
    short = runner.invoke(app, ["segment", missing])
    assert short.exit_code == 1 and short.stderr == (
        "error: the longest segment (CLASP_MAX_SEGMENT_S=1) must be at least 2 × the shortest (1 s by "
        "default) + 2 × the padding around speech (0.1 s by default) = 2.2 s, so long speech can be split; "
        "raise CLASP_MAX_SEGMENT_S to 2.2 or more, or lower --min-s\n"
    )
    mixed = runner.invoke(app, ["segment", missing, "--min-s", "0.6"])  # still too long for max 1 s
    assert mixed.exit_code == 2 and "(--min-s 0.6)" in _said(mixed)


def test_sentences_are_found(long_track: SpokenTrack, long_segments: list[SpeechSegment]) -> None:
    spans = _spans(long_segments)
    good = 0
    for sentence in long_track.spans:
        touching = [s for s in spans if min(s[1], sentence[1]) > max(s[0], sentence[0])]
        good += len(touching) == 1 and _iou(touching[0], sentence) >= 0.8
    assert good / len(long_track.spans) >= 0.95, (spans, long_track.spans)


def test_segments_are_consistent(long_track: SpokenTrack, long_segments: list[SpeechSegment]) -> None:
    _check_invariants(long_segments, long_track.duration_s, SegmenterOptions())
    assert {s.segment.media_id for s in long_segments} == {"long"}
    audio = read_wav(long_track.path)
    first = long_segments[0]
    start = round(first.segment.start_s * SR)
    np.testing.assert_allclose(first.samples, audio[start : start + first.samples.size], atol=1e-4)


def test_same_boundaries_in_every_container(variants: dict[str, Path]) -> None:
    reference = _spans(list(segment_media(variants["wav"])))
    assert len(reference) == 4
    for kind, path in variants.items():
        spans = _spans(list(segment_media(path)))
        assert len(spans) == len(reference), kind
        worst = max(
            abs(a - b)
            for ref, got in zip(reference, spans, strict=True)
            for a, b in zip(ref, got, strict=True)
        )
        # The bar is 50 ms; VP9/Opus-in-WebM shifts a VAD onset by up to two 32 ms frames.
        limit = 0.07 if kind == "webm" else 0.05
        assert worst <= limit, (kind, worst, spans, reference)


def test_late_audio_in_a_video_keeps_media_time(short_track: SpokenTrack, tmp_path: Path) -> None:
    late = mux_video(short_track.path, tmp_path / "late.mp4", audio_offset_s=3.0)
    reference = _spans(list(segment_media(short_track.path)))
    shifted = _spans(list(segment_media(late)))
    assert len(shifted) == len(reference)
    for (a, b), (c, d) in zip(reference, shifted, strict=True):
        assert c - a == pytest.approx(3.0, abs=0.05) and d - b == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("name", ["silence_wav", "noise_wav"])
def test_no_speech_gives_no_segments(name: str, request: pytest.FixtureRequest) -> None:
    assert list(segment_media(request.getfixturevalue(name))) == []


def test_block_size_does_not_change_segments(
    long_track: SpokenTrack, long_segments: list[SpeechSegment]
) -> None:
    audio = read_wav(long_track.path)
    for size in (512, 7777, 64_000):
        blocks = (audio[i : i + size] for i in range(0, audio.size, size))
        again = list(segment_blocks(blocks, media_id="long"))
        assert _spans(again) == _spans(long_segments)
        for a, b in zip(again, long_segments, strict=True):
            np.testing.assert_allclose(a.samples, b.samples, atol=1e-4)


def _at_peak(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """``audio`` scaled to a peak of ``dbfs``, over a room-noise floor 20 dB under it."""
    quiet = audio * np.float32(10 ** (dbfs / 20) / np.abs(audio).max())
    return quiet + noise(audio.size / SR, amplitude=10 ** ((dbfs - 20) / 20), seed=3)[: audio.size]


@pytest.mark.parametrize("dbfs", [-45.0, -60.0])
def test_quiet_recordings_keep_their_sentences(short_track: SpokenTrack, dbfs: float) -> None:
    quiet = _at_peak(read_wav(short_track.path), dbfs)
    heard = list(segment_blocks([quiet]))
    assert len(heard) == len(short_track.spans) == 4
    for (a, b), (c, d) in zip(short_track.spans, _spans(heard), strict=True):
        assert c <= a + 0.15 and d >= b - 0.05 and _iou((a, b), (c, d)) >= 0.8, _spans(heard)
    start = round(heard[0].segment.start_s * SR)  # the segments carry the audio as it is
    np.testing.assert_array_equal(heard[0].samples, quiet[start : start + heard[0].samples.size])
    deaf = _spans(list(segment_blocks([quiet], options=SegmenterOptions(vad_gain_db=0))))
    found = sum(b - a for a, b in _spans(heard))
    assert sum(b - a for a, b in deaf) < found - 0.5, deaf  # what the gain is for


def test_a_loud_bang_in_a_quiet_recording_does_not_deafen_the_vad(short_track: SpokenTrack) -> None:
    """A door slam at −3 dBFS in a lecture at −50 dBFS, between its first two sentences: a gain
    that fell to 1 at the slam left Silero deaf to the quiet speech after it (~15 s lost)."""
    quiet = _at_peak(read_wav(short_track.path), -50.0)
    at = round((short_track.spans[0][1] + 0.3) * SR)
    burst = noise(0.25, amplitude=1.0, seed=5) * np.exp(-np.arange(SR // 4) / 800).astype(np.float32)
    quiet[at : at + burst.size] += np.float32(0.7) * burst / np.abs(burst).max()
    heard = _spans(list(segment_blocks([quiet])))
    for a, b in short_track.spans:
        touching = [(c, d) for c, d in heard if min(b, d) > max(a, c)]
        assert len(touching) == 1 and _iou((a, b), touching[0]) >= 0.8, heard


def test_the_gain_leaves_audio_at_a_normal_level_alone(
    long_track: SpokenTrack, long_segments: list[SpeechSegment]
) -> None:
    """Only the model's input changes, and only until the first loud sound: the first onset may
    move by a frame or two (a sound that starts quietly), nothing else."""
    off = _spans(list(segment_media(long_track.path, options=SegmenterOptions(vad_gain_db=0))))
    on = _spans(long_segments)
    assert off[1:] == on[1:] and off[0][1] == on[0][1]
    assert abs(off[0][0] - on[0][0]) <= 0.065


def test_block_size_does_not_change_the_gain(short_track: SpokenTrack) -> None:
    quiet = _at_peak(read_wav(short_track.path), -50.0)
    whole = _spans(list(segment_blocks([quiet])))
    for size in (512, 3001, 40_000):
        blocks = (quiet[i : i + size] for i in range(0, quiet.size, size))
        assert _spans(list(segment_blocks(blocks))) == whole


def test_offset_shifts_times(long_track: SpokenTrack, long_segments: list[SpeechSegment]) -> None:
    audio = read_wav(long_track.path)[: 20 * SR]
    shifted = _spans(list(segment_blocks([audio], offset_s=100.0)))
    plain = _spans(list(segment_blocks([audio])))
    assert shifted and len(shifted) == len(plain)
    flat = [t for span in plain for t in span]
    assert [t for span in shifted for t in span] == pytest.approx([t + 100.0 for t in flat], abs=1e-6)


@pytest.fixture(scope="module")
def run_on(media_dir: Path) -> SpokenTrack:
    """About 37 s of sentences joined by 0.22 s gaps (under min_pause_s): one VAD region."""
    return build_track(SENTENCES[4:14], media_dir / "run_on.wav", pauses=[0.22], lead_s=0.5)


def test_long_speech_is_split_at_quiet_points(run_on: SpokenTrack) -> None:
    options = SegmenterOptions(max_segment_s=12.0)
    segments = list(segment_media(run_on.path, options=options))
    _check_invariants(segments, run_on.duration_s, options)
    assert len(segments) >= 4
    gaps = [(a[1], b[0]) for a, b in itertools.pairwise(run_on.spans)]
    cuts = [a.segment.end_s for a, b in itertools.pairwise(segments) if b.segment.start_s == a.segment.end_s]
    assert cuts, "a run-on region must be cut into touching segments"
    for cut in cuts:
        assert any(lo - 0.1 <= cut <= hi + 0.1 for lo, hi in gaps), (cut, gaps)
    assert all(s.segment.duration_s >= options.min_segment_s for s in segments)


def test_short_fragment_merges_with_the_nearer_neighbour(short_word: Path, short_track: SpokenTrack) -> None:
    word = read_wav(short_word)
    speech = read_wav(short_track.path)[: round(short_track.spans[0][1] * SR) + SR // 2]
    pause = np.zeros(round(0.45 * SR), dtype=np.float32)
    far = np.zeros(3 * SR, dtype=np.float32)
    audio = np.concatenate([far, speech, pause, word, far, word, far])
    spans = _spans(list(segment_blocks([audio])))
    word_s = word.size / SR
    assert len(spans) == 2, spans
    # "Yes." 0.45 s after the sentence joins it; the lone "Yes." stays alone (nothing to merge with).
    assert spans[0][1] > (far.size + speech.size + pause.size) / SR
    assert spans[1][1] - spans[1][0] < word_s + 0.3


def test_memory_is_bounded(long_track: SpokenTrack) -> None:
    audio = read_wav(long_track.path)
    segmenter = _Segmenter(SegmenterOptions(), "", 0.0)
    most = 0
    for _ in range(3):  # ~4 min of speech
        for i in range(0, audio.size, SR):
            list(segmenter.feed(audio[i : i + SR]))
            kept = sum(block.size for _, block in segmenter._samples._blocks)
            most = max(most, kept, len(segmenter._energy) * 512)
    assert most <= 70 * SR


def test_segments_stream_before_the_end(long_track: SpokenTrack) -> None:
    audio = read_wav(long_track.path)
    fed = 0

    def blocks():  # type: ignore[no-untyped-def]
        nonlocal fed
        for i in range(0, audio.size, SR):
            fed = i + SR
            yield audio[i : i + SR]

    first = next(segment_blocks(blocks()))
    assert fed < audio.size / 3 and first.segment.end_s <= fed / SR


def test_decode_options_must_keep_16k(short_track: SpokenTrack) -> None:
    with pytest.raises(ConfigError, match="16000"):
        list(segment_media(short_track.path, decode=DecodeOptions(sample_rate=8000)))


def test_cli_json_matches_library(variants: dict[str, Path]) -> None:
    path = variants["mp3"]
    result = CliRunner().invoke(app, ["segment", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    expected = [{"start_s": a, "end_s": b} for a, b in _spans(list(segment_media(path)))]
    assert json.loads(result.stdout) == expected


def test_cli_damage_is_one_warning_line(variants: dict[str, Path], tmp_path: Path) -> None:
    """A cut download: its segments, and the damage said once, as a ``warning:`` line (it came
    as a log record, and twice)."""
    from tests.fixtures_audio import truncate

    cut = truncate(variants["mp3"], tmp_path / "cut.mp3", 0.6)
    said = CliRunner().invoke(app, ["segment", "--json", str(cut)])
    assert said.exit_code == 0 and json.loads(said.stdout), said.output
    lines = said.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: decoding {cut}: ends early"), lines


def test_cli_table_and_options(variants: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["segment", str(variants["wav"]), "--min-s", "0.5", "--max-s", "10"])
    assert result.exit_code == 0 and "4 segments" in result.stdout
    bad = CliRunner().invoke(app, ["segment", str(variants["wav"]), "--min-s", "6", "--max-s", "10"])
    assert bad.exit_code == 2 and "(--max-s 10) must be at least" in _said(bad), bad.output


def test_silence_file_is_valid_input(tmp_path: Path) -> None:
    quiet = write_wav(tmp_path / "quiet.wav", np.zeros(SR // 2, dtype=np.float32))
    assert list(segment_media(quiet)) == []
    said = CliRunner().invoke(app, ["segment", "--json", str(quiet)])  # says so, as ingest does
    assert said.exit_code == 0 and json.loads(said.stdout) == []
    assert (
        said.stderr
        == f"warning: {quiet}: no speech found in its 0.5 s of audio; nothing of it can be searched\n"
    )


def test_samples_that_are_not_numbers_become_silence(short_track: SpokenTrack, tmp_path: Path) -> None:
    """A float file with a few NaN/inf samples inside its second sentence: they decode as 0 with
    a warning (strict: an error naming them); before, the VAD found nothing after the first NaN."""
    import soundfile as sf

    from clasp_ingest.errors import MediaDecodeError
    from clasp_ingest.media import stream_audio

    audio = read_wav(short_track.path)
    at = round(short_track.spans[1][0] * SR) + 2000
    bad = audio.copy()
    bad[at : at + 5] = np.nan
    bad[at + 100] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, bad, SR, subtype="FLOAT")
    warnings: list[str] = []
    decoded = np.concatenate(
        list(stream_audio(path, DecodeOptions(strict=False), on_warning=warnings.append))
    )
    assert np.isfinite(decoded).all() and decoded[at : at + 5].tolist() == [0.0] * 5
    assert warnings == [
        "6 decoded sample(s) (0.4 ms) are not numbers (NaN or infinite: damaged float data); "
        "decoded them as silence"
    ]
    spans = _spans(list(segment_media(path, decode=DecodeOptions(strict=False))))
    assert len(spans) == 4 and spans == _spans(list(segment_media(short_track.path))), spans
    with pytest.raises(
        MediaDecodeError, match=r"6 decoded sample\(s\) \(0\.4 ms\) are not .*use strict=False"
    ):
        list(stream_audio(path))
