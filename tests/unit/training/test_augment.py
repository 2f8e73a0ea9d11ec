"""Silence-padded training copies: real decoding (ffmpeg), real FLAC writing, the joint manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from clasp_ingest.errors import ConfigError
from clasp_ingest.training.augment import NOISE_RMS, augment_manifest, main, pad_clip
from clasp_ingest.training.features import load_waveform
from clasp_ingest.training.manifest import read_manifest, select_split

from .conftest import SAMPLE_RATE


def test_pad_clip_keeps_the_audio_between_faint_pauses() -> None:
    audio = np.linspace(-0.5, 0.5, 800, dtype=np.float32)
    out = pad_clip(audio, 0.25, 0.1, np.random.default_rng(0))
    lead, trail = int(0.25 * SAMPLE_RATE), int(0.1 * SAMPLE_RATE)
    assert len(out) == lead + len(audio) + trail
    np.testing.assert_array_equal(out[lead : lead + len(audio)], audio)
    pauses = np.concatenate([out[:lead], out[lead + len(audio) :]])
    assert 0.5 * NOISE_RMS < float(np.sqrt(np.mean(pauses**2))) < 2 * NOISE_RMS
    with pytest.raises(ConfigError, match=">= 0"):
        pad_clip(audio, -0.1, 0.0, np.random.default_rng(0))


def test_augment_writes_padded_copies_after_every_original_row(tone_manifest: Path, tmp_path: Path) -> None:
    report = augment_manifest(
        tone_manifest, tmp_path / "aug", count=4, lead=(0.1, 0.3), trail=(0.0, 0.2), seed=3
    )
    rows = read_manifest(report.manifest)
    originals = read_manifest(tone_manifest)
    assert report.rows == len(originals) == 12 and report.copies == 4 and report.skipped == 0
    assert [(r.audio, r.text, r.split) for r in rows[:12]] == [(r.audio, r.text, r.split) for r in originals]
    by_text = {r.text: r for r in select_split(originals, "train")}
    added = 0.0
    for copy in rows[12:]:
        assert copy.split == "train" and copy.language == "en" and copy.audio.suffix == ".flac"
        source = load_waveform(by_text[copy.text].audio)
        padded = load_waveform(copy.audio)
        extra = (len(padded) - len(source)) / SAMPLE_RATE
        assert 0.1 - 1e-3 <= extra <= 0.5 + 1e-3
        added += extra
        # the tone itself is intact (16-bit rounding aside) somewhere inside the padded clip
        start = int(np.argmax(np.abs(padded) > 0.05))
        assert 0.1 * SAMPLE_RATE - 200 <= start <= 0.3 * SAMPLE_RATE + 200
    assert added == pytest.approx(report.seconds_added, abs=0.01)
    assert len({r.text for r in rows[12:]}) == 4  # drawn without replacement


def test_augment_skips_an_undecodable_clip_and_keeps_going(tone_manifest: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tone_manifest.parent, root)
    (root / "clips" / "0.wav").write_bytes(b"RIFF not really a wave file")
    report = augment_manifest(root / "manifest.jsonl", tmp_path / "aug", count=6, seed=0)
    assert report.copies == 5 and report.skipped == 1
    assert len(read_manifest(report.manifest)) == 12 + 5


def test_augment_refuses_bad_arguments(tone_manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="between 1 and the 6 train rows"):
        augment_manifest(tone_manifest, tmp_path, count=7)
    with pytest.raises(ConfigError, match="--lead"):
        augment_manifest(tone_manifest, tmp_path, count=1, lead=(0.4, 0.1))


def test_cli_prints_a_summary_and_exits_1_on_bad_input(
    tone_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tone_manifest), "--out", str(tmp_path / "a"), "--count", "2", "--seed", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["copies"] == 2 and Path(summary["manifest"]).is_file()
    assert main([str(tone_manifest), "--out", str(tmp_path / "b"), "--count", "99"]) == 1
    assert "train rows" in capsys.readouterr().err


def _band_energy(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


@pytest.mark.parametrize("codec", ["mulaw", "alaw", "g726", "amr", "opus"])
def test_telephone_channel_keeps_the_voice_band_and_drops_the_rest(codec: str) -> None:
    """Real ffmpeg codecs: a 1 kHz tone survives, a 6 kHz tone (above the phone band) is gone."""
    from clasp_ingest.training.augment import missing_codecs, telephone

    if missing_codecs([codec]):  # Debian 12's ffmpeg has no AMR encoder (libopencore_amrnb)
        pytest.skip(f"this ffmpeg cannot encode {codec}")
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    out = telephone(audio, codec)
    assert out.dtype == np.float32 and abs(len(out) - len(audio)) < 0.1 * SAMPLE_RATE
    middle = out[2000:-2000]
    assert _band_energy(middle, 900, 1100) > 0.5
    assert _band_energy(middle, 5000, 7000) < 0.01


def test_noise_is_mixed_at_the_asked_snr_in_seeded_colours() -> None:
    from clasp_ingest.training.augment import add_noise, coloured_noise

    rng = np.random.default_rng(0)
    speech = (0.1 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    for colour in ("white", "pink", "brown"):
        noise = coloured_noise(SAMPLE_RATE, colour, rng)
        assert abs(float(np.sqrt(np.mean(noise**2))) - 1.0) < 1e-3
        mixed = add_noise(speech, noise, 10.0)
        added = mixed - speech
        snr = 10 * np.log10(np.mean(speech**2) / np.mean(added**2))
        assert abs(snr - 10.0) < 0.1, (colour, snr)
    low = _band_energy(coloured_noise(SAMPLE_RATE, "brown", rng), 0, 500)
    assert low > _band_energy(coloured_noise(SAMPLE_RATE, "white", rng), 0, 500) * 5
    np.testing.assert_array_equal(
        coloured_noise(100, "pink", np.random.default_rng(4)),
        coloured_noise(100, "pink", np.random.default_rng(4)),
    )


def test_augment_with_channels_records_them_and_is_reproducible(tone_manifest: Path, tmp_path: Path) -> None:
    kwargs = {"count": 4, "seed": 3, "telephone_share": 1.0, "codecs": ("opus",), "noise_share": 0.5}
    a = augment_manifest(tone_manifest, tmp_path / "a", **kwargs)  # type: ignore[arg-type]
    assert a.telephone == 4 and 0 <= a.noisy <= 4
    log = [json.loads(x) for x in (tmp_path / "a" / "augment.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(entry["codec"] == "opus" for entry in log)
    assert sum("snr_db" in entry for entry in log) == a.noisy
    augment_manifest(tone_manifest, tmp_path / "b", **kwargs)  # type: ignore[arg-type]
    for name in sorted(p.name for p in (tmp_path / "a" / "clips").iterdir()):
        assert (tmp_path / "a" / "clips" / name).read_bytes() == (
            tmp_path / "b" / "clips" / name
        ).read_bytes()
    # the padding draws are the ones a run without channels makes
    plain = augment_manifest(tone_manifest, tmp_path / "c", count=4, seed=3)
    plain_log = [json.loads(x) for x in (tmp_path / "c" / "augment.jsonl").read_text().splitlines()]
    assert plain.telephone == plain.noisy == 0
    assert [e["lead_s"] for e in plain_log] == [e["lead_s"] for e in log]
    with pytest.raises(ConfigError, match="codecs"):
        augment_manifest(tone_manifest, tmp_path / "d", count=1, codecs=("gsm",))
    with pytest.raises(ConfigError, match="share"):
        augment_manifest(tone_manifest, tmp_path / "d", count=1, telephone_share=2.0)


def test_codecs_this_ffmpeg_cannot_encode_are_refused_or_left_out(
    tone_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ffmpeg without an encoder (made one here: ``-encoders`` of a build without libopus)."""
    from clasp_ingest.training import augment

    real = augment._encoders

    def without_opus(ffmpeg: str) -> frozenset[str]:
        return real(ffmpeg) - {"libopus"}

    monkeypatch.setattr(augment, "_encoders", without_opus)
    assert augment.missing_codecs(["opus", "mulaw"]) == ["opus"]
    with pytest.raises(ConfigError, match=r"codecs \['opus'\]: this ffmpeg has no libopus encoder"):
        augment.telephone(np.zeros(SAMPLE_RATE, np.float32), "opus")
    with pytest.raises(ConfigError, match="libopus"):
        augment_manifest(tone_manifest, tmp_path / "a", count=1, telephone_share=1.0, codecs=("opus",))
    assert "opus" not in augment.available_codecs()
    augment_manifest(tone_manifest, tmp_path / "b", count=4, seed=3, telephone_share=1.0)
    log = [json.loads(x) for x in (tmp_path / "b" / "augment.jsonl").read_text().splitlines()]
    assert len(log) == 4 and {e["codec"] for e in log} <= set(augment.available_codecs())
