"""Span cuts keep the ingest's timeline in media whose audio stream starts late (a video's).

The ingest (:mod:`clasp_ingest.media.decode`) pads a late audio stream's start with silence,
so a span's times are seconds of the media. A cut that seeks before the audio's first sample
used to begin at that sample instead: a clip held less lead than ``context_s`` (its span
``context_s - lead`` early, a ``fade_s=context_s`` fade over the first words) and a span that
starts before the audio was transcribed as if its words came that much earlier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clasp_ingest.retriever import ClipOptions, save_span_audio, span_clip
from clasp_ingest.retriever.audio import span_samples

from clasp_ingest.media.decode import decode_audio
from clasp_ingest.types import SpanHit
from tests.fixtures_audio import SR, mux_video, write_wav

#: Where the audio stream starts in the videos made here (seconds of the media).
LATE_S = 2.0
MONO_16K = {"sample_rate": SR, "mono": True}


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def _samples(clip: object) -> np.ndarray:
    """A 16-bit pydub AudioSegment's samples as float32."""
    return np.array(clip.get_array_of_samples(), dtype=np.float32) / 32768  # type: ignore[attr-defined]


def _hit(source: Path, start_s: float, end_s: float) -> SpanHit:
    """A stored span of ``source`` with the version the local connector records."""
    from clasp_ingest.connectors.local import local_fingerprint

    meta = {"version": local_fingerprint(source)}
    return SpanHit("m", source.as_uri(), "late", start_s, end_s, 1.0, "u", payload={"metadata": meta})


@pytest.fixture(scope="module", params=["mkv", "mp4", "ts"])  # ts: an MPEG stream, whose start ffmpeg moves
def late_video(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6.5 s video whose 4 s audio track (a chirp: no stretch of it looks like another)
    starts at :data:`LATE_S`."""
    folder = tmp_path_factory.mktemp(f"late-{request.param}")
    t = np.arange(4 * SR) / SR
    chirp = (0.3 * np.sin(2 * np.pi * (200 * t + 350 * t * t))).astype(np.float32)  # 200 -> 3000 Hz
    video = mux_video(write_wav(folder / "chirp.wav", chirp), folder / f"late.{request.param}", LATE_S)
    audio = decode_audio(video)  # the ingest's timeline: silence, then the track at LATE_S
    onset = np.nonzero(np.abs(audio) > 0.05)[0][0] / SR
    assert onset == pytest.approx(LATE_S, abs=0.01)
    return video


def test_a_clip_keeps_its_lead_where_the_audio_starts_late(late_video: Path) -> None:
    span = _hit(late_video, 2.5, 3.5)  # its lead 1.5-2.5 s: half before the audio's first sample
    clip = _samples(span_clip(span, ClipOptions(context_s=1.0, fade_s=0.0, **MONO_16K)))
    assert len(clip) / SR == pytest.approx(3.0, abs=0.002)  # 1.5 .. 4.5 s, the lead padded
    assert _rms(clip[: SR // 2]) < 1e-3  # 1.5-2.0 s: no audio there, silence as the ingest has it
    assert _rms(clip[SR // 2 : SR]) > 0.15  # 2.0-2.5 s: the media's own lead
    words = span_samples(span)  # what Whisper transcribes (and the ingest embedded) at 2.5-3.5 s
    assert words.size == SR
    np.testing.assert_allclose(clip[SR : 2 * SR], words, atol=1e-3)  # the span at context_s in

    faded = _samples(span_clip(span, ClipOptions(context_s=1.0, fade_s=1.0, **MONO_16K)))
    first_words = slice(SR, SR + SR // 10)
    assert _rms(faded[first_words]) == pytest.approx(_rms(words[: SR // 10]), rel=0.05)  # at full level


def test_a_saved_clip_keeps_its_lead_where_the_audio_starts_late(late_video: Path, tmp_path: Path) -> None:
    span = _hit(late_video, 2.5, 3.5)
    out = save_span_audio(span, tmp_path / "clip.wav", ClipOptions(context_s=1.0, fade_s=0.0, **MONO_16K))
    clip = decode_audio(out)
    np.testing.assert_allclose(clip[SR : 2 * SR], span_samples(span), atol=1e-3)


def test_a_span_starting_before_the_audio_is_cut_at_its_times(late_video: Path) -> None:
    span = _hit(late_video, 1.9, 2.6)  # a VAD span's padding may reach before the track's start
    words = span_samples(span)
    assert words.size == round(0.7 * SR)
    assert _rms(words[: round(0.1 * SR)]) < 1e-3  # 1.9-2.0 s: silence, as the ingest decoded it
    media = decode_audio(late_video)
    np.testing.assert_allclose(words, media[round(1.9 * SR) : round(2.6 * SR)], atol=1e-3)


def test_the_context_after_a_span_stops_where_the_audio_ends(late_video: Path) -> None:
    """The track ends at 6.0 s (plus the codec's padding), the video at 6.5 s: the context after
    the span runs short there (as at any end of the media), the span stays at context_s in."""
    span = _hit(late_video, 5.2, 5.8)
    clip = _samples(span_clip(span, ClipOptions(context_s=1.0, fade_s=0.0, **MONO_16K)))
    assert 1.78 <= len(clip) / SR <= 1.85  # 4.2 .. ~6.0 s, not padded to 6.8 s
    np.testing.assert_allclose(clip[SR : SR + round(0.6 * SR)], span_samples(span), atol=1e-3)
