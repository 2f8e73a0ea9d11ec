"""Span clips: pydub over imageio-ffmpeg's lone ffmpeg (no ffprobe), with context and fades."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClipOptions, Span, save_span_audio, span_clip

from clasp_ingest.errors import ConfigError, MediaDecodeError
from clasp_ingest.media.decode import decode_audio
from clasp_ingest.types import SpanHit
from tests.fixtures_audio import SR, convert, tone, write_wav


def _stepped_tone(path: Path, sr: int = SR) -> Path:
    """Four seconds: 1 s of 220 Hz, 1 s of 440 Hz, 1 s of 880 Hz, 1 s of 1760 Hz."""
    return write_wav(path, np.concatenate([tone(f, 1.0, sr=sr) for f in (220, 440, 880, 1760)]), sr=sr)


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / SR)[spectrum.argmax()])


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.fixture
def only_imageio_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ffmpeg or ffprobe on PATH: everything runs on imageio-ffmpeg's lone ffmpeg binary."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("ffmpeg") is None and shutil.which("ffprobe") is None


@pytest.fixture
def stereo_steps(tmp_path: Path, only_imageio_ffmpeg: None) -> Path:
    """The stepped tone as a 44.1 kHz stereo wav."""
    mono = _stepped_tone(tmp_path / "steps-mono.wav", sr=44_100)
    return convert(mono, tmp_path / "steps.wav", "-ac", "2")


def _hit(source: Path, start_s: float, end_s: float) -> SpanHit:
    """A stored span of ``source`` with the version the local connector records."""
    from clasp_ingest.connectors.local import local_fingerprint

    meta = {"version": local_fingerprint(source)}
    return SpanHit("m", source.as_uri(), "steps", start_s, end_s, 1.0, "u", payload={"metadata": meta})


@pytest.mark.parametrize(
    ("source_suffix", "clip_suffix"), [(".wav", ".wav"), (".mp3", ".mp3"), (".wav", ".ogg")]
)
def test_span_clip_has_context_and_fades(
    stereo_steps: Path, tmp_path: Path, source_suffix: str, clip_suffix: str
) -> None:
    source = stereo_steps if source_suffix == ".wav" else convert(stereo_steps, tmp_path / "steps.mp3")
    span = _hit(source, 1.1, 1.9)  # inside the 440 Hz second
    out = save_span_audio(span, tmp_path / f"clip{clip_suffix}", ClipOptions(context_s=0.2, fade_s=0.2))
    clip = decode_audio(out)
    assert abs(len(clip) / SR - 1.2) < 0.06  # 0.9 .. 2.1 s
    assert abs(_dominant_hz(clip[round(0.3 * SR) : round(0.9 * SR)]) - 440) < 10
    middle = _rms(clip[round(0.4 * SR) : round(0.8 * SR)])
    assert _rms(clip[: round(0.03 * SR)]) < 0.3 * middle  # faded in over the leading context
    assert _rms(clip[round(1.15 * SR) : round(1.18 * SR)]) < 0.3 * middle  # ... and out
    assert not list(tmp_path.glob(".*.part"))


def test_clips_keep_the_source_rate_unless_asked(stereo_steps: Path, tmp_path: Path) -> None:
    span = _hit(stereo_steps, 1.1, 1.9)
    kept = span_clip(span)
    assert (kept.frame_rate, kept.channels, kept.sample_width) == (44_100, 2, 2)
    assert abs(len(kept) - 800) <= 2  # milliseconds
    small = span_clip(span, ClipOptions(sample_rate=16_000, mono=True))
    assert (small.frame_rate, small.channels) == (16_000, 1)
    with wave.open(str(save_span_audio(span, tmp_path / "clip.wav"))) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (44_100, 2)
    from_span = span_clip(Span("m", stereo_steps.as_uri(), "steps", 2.0, 2.5, 1.0), ClipOptions(mono=True))
    assert abs(len(from_span) - 500) <= 2 and from_span.channels == 1  # what retrieve_spans returns
    at_start = span_clip(_hit(stereo_steps, 0.1, 0.5), ClipOptions(context_s=1.0))
    assert abs(len(at_start) - 1500) <= 2  # the context stops at the start of the media
    hard = np.array(span_clip(span, ClipOptions(fade_s=0.0)).get_array_of_samples())
    soft = np.array(span_clip(span).get_array_of_samples())  # the default 10 ms de-click fade
    first_2ms = 2 * round(0.002 * 44_100)  # interleaved stereo samples
    assert _rms(soft[:first_2ms]) < 0.3 * _rms(hard[:first_2ms])


def test_clip_errors_name_the_source_and_leave_no_file(stereo_steps: Path, tmp_path: Path) -> None:
    from langchain_core.documents import Document

    gone = Document("x", metadata={"source": str(tmp_path / "gone.wav"), "start_s": 0.0, "end_s": 1.0})
    with pytest.raises(MediaDecodeError, match=r"gone\.wav"):
        save_span_audio(gone, tmp_path / "out.wav")
    with pytest.raises(MediaDecodeError, match="beyond the end"):
        save_span_audio(_hit(stereo_steps, 10.0, 12.0), tmp_path / "out.wav")
    with pytest.raises(ValueError, match="lacks"):
        save_span_audio(Document("x", metadata={}), tmp_path / "out.wav")
    with pytest.raises(ConfigError, match=r"steps\.wav.*'nosuchformat'"):
        save_span_audio(_hit(stereo_steps, 1.0, 2.0), tmp_path / "out.nosuchformat")
    with pytest.raises(ConfigError, match="context_s"):
        ClipOptions(context_s=-1.0)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out"))) == []


def test_a_clip_of_a_file_whose_name_is_not_utf8(stereo_steps: Path, tmp_path: Path) -> None:
    import os

    latin1 = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.wav"))
    shutil.copy(stereo_steps, latin1)
    assert "%E9" in latin1.as_uri()  # the URI stored with its points
    clip = span_clip(_hit(latin1, 1.1, 1.9), ClipOptions(context_s=0.0, mono=True))
    assert abs(len(clip) / 1000 - 0.8) < 0.05  # pydub lengths are in ms


def test_a_span_of_a_file_changed_since_ingest_is_refused(stereo_steps: Path) -> None:
    from clasp_ingest.connectors.local import local_fingerprint
    from clasp_ingest.retriever.audio import span_samples
    from langchain_core.documents import Document

    version = local_fingerprint(stereo_steps)  # what the local connector stored as "version"
    meta = {"source": stereo_steps.as_uri(), "start_s": 1.0, "end_s": 2.0, "version": version}
    hit = SpanHit("m", stereo_steps.as_uri(), "steps", 1.0, 2.0, 1.0, "u", payload={"metadata": meta})
    as_doc = Document(page_content="steps", metadata=meta)
    as_span = Span("m", stereo_steps.as_uri(), "steps", 1.0, 2.0, 1.0, extra=meta)
    assert span_samples(hit).size and len(span_clip(as_doc)) and len(span_clip(as_span))

    _stepped_tone(stereo_steps)  # rewritten: other audio (44.1 kHz stereo -> 16 kHz mono) at these times
    for span in (hit, as_doc, as_span):
        with pytest.raises(
            MediaDecodeError, match=r"steps\.wav.*changed since it was ingested.*ingest it again"
        ):
            span_clip(span)
    with pytest.raises(MediaDecodeError, match="changed since it was ingested"):
        span_samples(hit)
    # a stored span without the file's own version (a point of a shared collection may name any
    # file of the searching machine; this one was cut and its words stored) is refused; a Span
    # the caller made is taken as given
    for version in ("v1", None):
        other = {**meta, "version": version}
        with pytest.raises(MediaDecodeError, match=r"records no version of this file.*ingest it again"):
            span_clip(Document(page_content="steps", metadata=other))
        with pytest.raises(MediaDecodeError, match=r"records no version of this file"):
            span_samples(
                SpanHit("m", stereo_steps.as_uri(), "steps", 1.0, 2.0, 1.0, "u", payload={"metadata": other})
            )
    assert len(span_clip(Span("m", stereo_steps.as_uri(), "steps", 1.0, 2.0, 1.0)))
    for source in ("gopher://127.0.0.1:9/1x", "s3://bucket/talk.wav", "ftp://127.0.0.1/talk.wav"):
        with pytest.raises(MediaDecodeError, match=r"sources are not cut \(only local files and http\(s\)"):
            span_clip(Span("m", source, "x", 1.0, 2.0, 1.0))


def test_a_span_of_a_file_moved_away_names_the_remedy(stereo_steps: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved.wav"
    moved.write_bytes(stereo_steps.read_bytes())
    meta = {"source": moved.as_uri(), "start_s": 1.0, "end_s": 2.0, "version": "v1"}
    moved.unlink()
    with pytest.raises(MediaDecodeError, match=r"no longer there.*ingest it from where it is now"):
        span_clip(Span("m", moved.as_uri(), "moved", 1.0, 2.0, 1.0, extra=meta))


def test_a_cut_shorter_than_its_span_is_refused(stereo_steps: Path, tmp_path: Path) -> None:
    from clasp_ingest.retriever.audio import span_samples

    from tests.fixtures_audio import truncate

    cut = truncate(stereo_steps, tmp_path / "cut.wav", fraction=0.5)  # the header still says 4 s; 2 s remain
    assert len(span_clip(_hit(cut, 1.0, 1.8))) == 800  # inside what remains
    for make in (lambda hit: span_clip(hit), span_samples):  # the span straddles the end of the data
        short = r"cut\.wav.*ffmpeg gave 0\.[45]\d s of the 1\.50 s asked for"
        with pytest.raises(MediaDecodeError, match=short):
            make(_hit(cut, 1.5, 3.0))
    with pytest.raises(MediaDecodeError, match=r"no audio there.*beyond the end"):
        span_samples(_hit(cut, 2.5, 3.5))
    context = span_clip(_hit(cut, 1.0, 1.8), ClipOptions(context_s=0.5))  # the context may run short
    assert len(context) == 1500
