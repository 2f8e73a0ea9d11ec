"""Float audio far above full scale (integer samples written as float): scaled down as it
streams, with a warning, instead of decoding to useless vectors or to "no speech"."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import MediaDecodeError
from clasp_ingest.media import DecodeOptions, decode_audio
from clasp_ingest.media.decode import _Rescale
from tests.fixtures_audio import SR, SpokenTrack, read_wav


def _float_wav(path: Path, samples: np.ndarray) -> Path:
    import soundfile as sf

    sf.write(path, samples.astype(np.float32), SR, subtype="FLOAT")
    return path


def test_int16_values_written_as_float_decode_at_their_level_with_a_warning(
    short_track: SpokenTrack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """float(int16) data (±32767) decoded as it was: scores fell from 0.24 to 0.002, unwarned."""
    speech = read_wav(short_track.path)
    path = _float_wav(tmp_path / "int16scale.wav", speech * 32768)
    warnings: list[str] = []
    with caplog.at_level(logging.WARNING, logger="clasp_ingest"):
        audio = decode_audio(path, on_warning=warnings.append)
    np.testing.assert_allclose(audio, speech, atol=1e-4)  # the level it was recorded at
    assert len(warnings) == 1 and warnings[0].startswith("samples reach +"), warnings
    assert "scaled down by 32768 from 00:00:00.0 on; export it again at full scale" in warnings[0]
    assert str(path) in caplog.text


def test_samples_past_every_integer_scale_come_down_to_full_scale(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """×1e30 overflowed the VAD's features: the item was stored empty as "no speech found"."""
    from clasp_ingest.media.segment import segment_media

    speech = read_wav(short_track.path)
    huge = _float_wav(tmp_path / "huge.wav", speech * 1e30)
    warnings: list[str] = []
    audio = decode_audio(huge, on_warning=warnings.append)
    assert np.isfinite(audio).all() and 0.5 < np.abs(audio).max() <= 2.0 and len(warnings) == 1  # ~full scale
    found = [s.segment.start_s for s in segment_media(huge)]
    right = [s.segment.start_s for s in segment_media(short_track.path)]
    assert len(found) == len(right) > 0 and np.allclose(found, right, atol=0.1)


def test_a_hot_but_real_float_file_is_left_as_it_is(short_track: SpokenTrack, tmp_path: Path) -> None:
    """+6 dBFS (a float mix left unclipped) is audio at the right scale: no scaling, no warning."""
    speech = read_wav(short_track.path)
    hot = speech * (2.0 / np.abs(speech).max())
    warnings: list[str] = []
    audio = decode_audio(_float_wav(tmp_path / "hot.wav", hot), on_warning=warnings.append)
    np.testing.assert_allclose(audio, hot, atol=1e-5)
    assert warnings == []


def test_the_scale_only_grows_and_only_past_the_threshold() -> None:
    """Blocks stream: the scale comes from the peaks seen so far and never pumps back up."""
    rescale = _Rescale()
    ones = np.ones(4, dtype=np.float32)
    assert rescale(3 * ones, 0.0).max() == 3  # +9.5 dBFS: left alone
    assert rescale(5000 * ones, 2.0).max() == pytest.approx(5000 / 32768)  # integer data
    assert rescale(10 * ones, 4.0).max() == pytest.approx(10 / 32768)  # a quiet block stays quiet
    assert rescale(40_000 * ones, 6.0).max() == pytest.approx(1.0)  # not int16 after all: its peak
    assert rescale(5000 * ones, 8.0).max() == pytest.approx(5000 / 40_000)
    assert rescale.from_s == 2.0 and rescale.scale == 40_000


def test_a_float_mix_ten_times_too_hot_is_heard_as_it_was(short_track: SpokenTrack, tmp_path: Path) -> None:
    """Peak 5: dividing it by the int16 scale (2^15) left the speech 76 dB down, and a tester's
    3 sentences became 1. Few of its samples pass +12 dBFS: it is audio, at a hot level."""
    from clasp_ingest.media.segment import segment_media

    speech = read_wav(short_track.path)
    hot = _float_wav(tmp_path / "x10.wav", speech * (5.0 / np.abs(speech).max()))
    warnings: list[str] = []
    audio = decode_audio(hot, on_warning=warnings.append)
    assert np.abs(audio).max() == pytest.approx(5.0, rel=1e-3) and warnings == []
    found = [s.segment.start_s for s in segment_media(hot)]
    right = [s.segment.start_s for s in segment_media(short_track.path)]
    assert len(found) == len(right) > 0 and np.allclose(found, right, atol=0.1)


def test_one_damaged_sample_is_silenced_not_the_rest_of_the_file(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """A sample of 1e20 (a flipped exponent bit) divided every later block by 1e20: 7 of 9
    sentences of a reviewer's file were lost. Only that sample is lost now, with a warning."""
    from clasp_ingest.media.segment import segment_media

    speech = read_wav(short_track.path)
    spoiled = speech.copy()
    spoiled[3 * SR] = 1e20
    path = _float_wav(tmp_path / "spike.wav", spoiled)
    warnings: list[str] = []
    audio = decode_audio(path, DecodeOptions(strict=False), on_warning=warnings.append)
    assert audio[3 * SR] == 0 and np.abs(audio).max() <= 1.0
    np.testing.assert_allclose(np.delete(audio, 3 * SR), np.delete(speech, 3 * SR), atol=1e-6)
    assert len(warnings) == 1 and "far past full scale" in warnings[0], warnings
    found = [s.segment.start_s for s in segment_media(path, decode=DecodeOptions(strict=False))]
    right = [s.segment.start_s for s in segment_media(short_track.path)]
    assert len(found) == len(right) > 0
    with pytest.raises(MediaDecodeError, match="far past full scale"):
        decode_audio(path)  # strict


def test_integer_data_whose_sound_starts_at_a_blocks_end_is_not_damage(
    short_track: SpokenTrack, tmp_path: Path
) -> None:
    """Too few loud samples in the onset's block to be sustained: they passed unscaled, those
    past 1000x full scale were silenced as "damaged", and strict decoding refused the file."""
    block = round(DecodeOptions().block_s * SR)
    speech = read_wav(short_track.path)
    late = np.concatenate([np.zeros(block - SR // 50, dtype=np.float32), speech])  # sound 20 ms before
    path = _float_wav(tmp_path / "late.wav", late * 32768)
    warnings: list[str] = []
    audio = decode_audio(path, on_warning=warnings.append)  # strict: nothing refused
    assert len(warnings) == 1 and "scaled down by 32768" in warnings[0], warnings
    np.testing.assert_allclose(audio[block:], late[block:], atol=1e-4)  # from the next block on
