"""The native spectrogram branch's log-mel image, in numpy (no torch).

Per clip: STFT (periodic Hann window, centred with reflect padding, as ``torch.stft``) → mel
filterbank (Slaney-style triangles on the HTK mel scale) → power in dB, clipped to ``top_db``
below the clip's peak and scaled to [0, 1] → flipped (low frequencies at the bottom) →
resized bilinearly (``align_corners=False``, as ``torch.nn.functional.interpolate``) to the
CNN's input size → three identical channels normalised with the CNN's mean/std.

:class:`~clasp_ingest.model.spectrogram.NativeSpectrogramEncoder` computes the same image
with torch (batched, GPU-capable); this one serves the ONNX Runtime engine. Tests check
that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clasp_ingest.model.base import SAMPLE_RATE

__all__ = ["LogMelOptions", "frames_power", "log_mel_image", "mel_filterbank", "resize_matrix"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LogMelOptions:
    """Log-mel image parameters (defaults: 25 ms window, 10 ms hop, 128 mels, 224 px)."""

    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = SAMPLE_RATE / 2
    top_db: float = 80.0
    image_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = _IMAGENET_MEAN
    std: tuple[float, float, float] = _IMAGENET_STD
    batch_size: int = 16


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0))


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.asarray(700.0 * (10.0 ** (mel / 2595.0) - 1.0))


def mel_filterbank(n_fft: int, n_mels: int, f_min: float, f_max: float, sample_rate: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 triangular filters, area-normalised (Slaney)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=np.float64)
    mel_points = np.linspace(float(_hz_to_mel(f_min)), float(_hz_to_mel(f_max)), n_mels + 2)
    hz = _mel_to_hz(mel_points)
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (freqs[None, :] - lower) / (center - lower)
    falling = (upper - freqs[None, :]) / (upper - center)
    weights = np.maximum(np.minimum(rising, falling), 0.0)
    weights *= 2.0 / (upper - lower)
    return weights.astype(np.float32)


def resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of 1-D linear resizing with half-pixel centres (torch's
    ``align_corners=False``, no antialiasing); bilinear resizing is this on both axes."""
    scale = np.float32(size_in / size_out)  # float32 arithmetic, as torch's kernel
    src = np.maximum(scale * (np.arange(size_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), 0)
    low = np.floor(src).astype(np.int64)
    frac = (src - low).astype(np.float32)
    high = np.minimum(low + 1, size_in - 1)
    low = np.minimum(low, size_in - 1)
    out = np.zeros((size_out, size_in), np.float32)
    rows = np.arange(size_out)
    np.add.at(out, (rows, low), 1.0 - frac)
    np.add.at(out, (rows, high), frac)
    return out


def _power_spectrogram(wav: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(n_fft // 2 + 1, frames) power of a centred, reflect-padded STFT with a periodic Hann window."""
    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    x = np.pad(x, n_fft // 2, mode="reflect")
    count = 1 + (x.size - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(x, (count, n_fft), (x.strides[0] * hop, x.strides[0]))
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    return frames_power(frames, window).T


def frames_power(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(frames, n_fft // 2 + 1) float32 power spectrum of ``frames`` (rows) times ``window``.

    scipy's float32 pocketfft: about 8x numpy's for 400-point frames (imported here, 0.3 s,
    so text-only loads such as a search never pay for it).
    """
    import scipy.fft

    spectrum = scipy.fft.rfft(frames * window, axis=-1)
    return (spectrum.real**2 + spectrum.imag**2).astype(np.float32)


def log_mel_image(wav: np.ndarray, options: LogMelOptions, filterbank: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 normalised log-mel image of one 16 kHz clip.

    ``filterbank``: :func:`mel_filterbank` of ``options`` (computed once by the caller).
    """
    o = options
    power = filterbank @ _power_spectrogram(wav, o.n_fft, o.hop_length)
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    peak = db.max()
    scaled = (np.maximum(db, peak - o.top_db) - peak + o.top_db) / o.top_db
    height, width = o.image_size
    image = resize_matrix(scaled.shape[0], height) @ scaled[::-1] @ resize_matrix(scaled.shape[1], width).T
    mean = np.asarray(o.mean, np.float32)[:, None, None]
    std = np.asarray(o.std, np.float32)[:, None, None]
    return ((image[None] - mean) / std).astype(np.float32)
