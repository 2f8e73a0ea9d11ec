"""The VAD hears speech under a DC offset or a low rumble (the detector's high-pass, media.vad).

Before it, speech at −40 dBFS plus a DC offset of 0.05, or speech under a 30 Hz hum at
−2 dBFS, was stored as "no speech found": the offset or hum read as loud (so the quiet-audio
gain stayed off) and hid the speech from Silero, though Whisper heard every word.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from clasp_ingest.media import SpeechSegment, segment_blocks
from tests.fixtures_audio import SR, SpokenTrack, read_wav, tone


def _spans(segments: list[SpeechSegment]) -> list[tuple[float, float]]:
    return [(s.segment.start_s, s.segment.end_s) for s in segments]


def _at_peak(audio: np.ndarray, peak: float) -> np.ndarray:
    return audio * np.float32(peak / np.abs(audio).max())


def _under_dc(track: SpokenTrack) -> np.ndarray:
    """The track at a peak of −40 dBFS plus a DC offset of 0.05 (a cheap interface's)."""
    return _at_peak(read_wav(track.path), 0.01) + np.float32(0.05)


def _under_hum(track: SpokenTrack) -> np.ndarray:
    """The track at a peak of −14 dBFS under a 30 Hz hum at 0.79 (no sample clips)."""
    speech = _at_peak(read_wav(track.path), 0.2)
    return speech + tone(30.0, speech.size / SR, amplitude=0.79)[: speech.size]


def _assert_every_sentence_found(track: SpokenTrack, heard: list[tuple[float, float]]) -> None:
    """Each sentence lies in one segment that covers it (within 0.15 s at either end)."""
    for a, b in track.spans:
        touching = [(c, d) for c, d in heard if min(b, d) > max(a, c)]
        assert len(touching) == 1, (a, b, heard)
        c, d = touching[0]
        assert c <= a + 0.15 and d >= b - 0.15, (a, b, heard)


@pytest.mark.parametrize("make", [_under_dc, _under_hum], ids=["dc_0.05", "hum_30hz"])
def test_speech_under_dc_or_rumble_is_found(
    short_track: SpokenTrack, make: Callable[[SpokenTrack], np.ndarray]
) -> None:
    audio = make(short_track)
    heard = list(segment_blocks([audio], media_id="low"))
    _assert_every_sentence_found(short_track, _spans(heard))
    for segment in heard:  # the model gets the samples as they are: only the detector's are filtered
        start = round(segment.segment.start_s * SR)
        np.testing.assert_array_equal(segment.samples, audio[start : start + segment.samples.size])


def test_block_size_does_not_change_what_is_heard_under_a_hum(short_track: SpokenTrack) -> None:
    """The filter's state carries across blocks: no click at a boundary, the same segments."""
    audio = _under_hum(short_track)
    whole = _spans(list(segment_blocks([audio])))
    for size in (512, 3001, 40_000):
        blocks = (audio[i : i + size] for i in range(0, audio.size, size))
        assert _spans(list(segment_blocks(blocks))) == whole


def test_the_high_pass_streams_and_starts_without_a_click() -> None:
    """Blocks filter as the whole does; a DC offset present from the first sample is removed
    at once (no step at the start), and a 30 Hz hum is heard some 17 dB down."""
    from clasp_ingest.media.vad import _HighPass  # private: the one piece the detector adds

    offset = np.full(SR, 0.05, dtype=np.float32)
    assert np.abs(_HighPass()(offset)).max() < 1e-6
    hum = tone(30.0, 2.0, amplitude=0.79)
    whole = _HighPass()(hum)
    stream = _HighPass()
    blocks = np.concatenate([stream(hum[i : i + 777]) for i in range(0, hum.size, 777)])
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-6)  # single precision
    assert np.abs(whole[SR:]).max() < 0.79 * 10 ** (-15 / 20)


def test_the_high_pass_is_scipys_butterworth_without_importing_scipy_signal() -> None:
    """The filter is ``butter(2, 80 Hz, 'highpass')`` run by ``sosfilt``, done in numpy:
    importing scipy.signal cost every ingest 0.4-0.7 s."""
    import subprocess
    import sys

    from scipy.signal import butter, sosfilt, sosfilt_zi

    from clasp_ingest.media.vad import VAD_HIGHPASS_HZ, VAD_SAMPLE_RATE, _HighPass

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(7 * SR + 123) * 0.1 + 0.05).astype(np.float32)
    sos = butter(2, VAD_HIGHPASS_HZ, btype="highpass", fs=VAD_SAMPLE_RATE, output="sos")
    expected, _ = sosfilt(sos, audio.astype(np.float64), zi=sosfilt_zi(sos) * float(audio[0]))
    np.testing.assert_allclose(_HighPass()(audio), expected, rtol=0, atol=1e-6)
    imported = (
        "import sys; from clasp_ingest.media.vad import _HighPass; _HighPass()(__import__('numpy').ones(9)); "
    )
    check = imported + "print('scipy.signal' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
        == "False\n"
    )


def test_one_nan_given_to_the_detector_loses_only_its_own_sample() -> None:
    """segment_blocks is public: a block with one NaN (decoding zeroes them, a library caller may
    not) put NaN in the filter's state, and every sample after it was NaN: no speech found."""
    from clasp_ingest.media.vad import _HighPass

    hum = tone(30.0, 1.0, amplitude=0.5)
    spoiled = hum.copy()
    spoiled[100] = np.nan
    heard = _HighPass()(spoiled)
    assert np.isfinite(heard).all()
    np.testing.assert_allclose(heard[SR // 2 :], _HighPass()(hum)[SR // 2 :], atol=1e-4)
