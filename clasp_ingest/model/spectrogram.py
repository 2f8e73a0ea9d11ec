"""Spectrogram branch, ``native`` mode: a torch log-mel image fed to a timm CNN, pooled features.

Per clip: STFT (Hann window) → mel filterbank (Slaney-style triangles on the HTK mel scale)
→ power in dB, clipped to ``top_db`` below the clip's peak and scaled to [0, 1] → resized
(bilinear) to the CNN's input size → three identical channels normalised with the CNN's
mean/std. Each clip is processed on its own up to the image, so padding never leaks between
clips; the CNN then runs on the stacked batch (GPU when the runtime has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.base import SAMPLE_RATE
from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = ["LogMelOptions", "NativeSpectrogramEncoder", "build_native_spectrogram", "mel_filterbank"]

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


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, f_min: float, f_max: float, sample_rate: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, area-normalised (Slaney)."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(
        float(_hz_to_mel(torch.tensor(f_min))), float(_hz_to_mel(torch.tensor(f_max))), n_mels + 2
    )
    hz = _mel_to_hz(mel_points.to(torch.float64))
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (freqs[None, :] - lower) / (center - lower)
    falling = (upper - freqs[None, :]) / (upper - center)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights *= 2.0 / (upper - lower)
    return weights.to(torch.float32)


class NativeSpectrogramEncoder:
    """``SpectrogramEncoder``: log-mel images through a timm CNN without its classifier."""

    def __init__(self, cnn: torch.nn.Module, dim: int, runtime: Runtime, options: LogMelOptions) -> None:
        self.options = options
        self.device = torch.device(runtime.device)
        self.dtype = runtime.torch_dtype()
        self.cnn = cnn.to(self.device, self.dtype).eval()
        self._dim = dim
        fb = mel_filterbank(options.n_fft, options.n_mels, options.f_min, options.f_max, SAMPLE_RATE)
        self._fb = fb.to(self.device)
        self._window = torch.hann_window(options.n_fft, device=self.device)
        self._mean = torch.tensor(options.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(options.std, device=self.device).view(1, 3, 1, 1)

    @property
    def dim(self) -> int:
        return self._dim

    def image(self, wav: np.ndarray) -> torch.Tensor:
        """(3, H, W) float32 normalised log-mel image of one clip."""
        o = self.options
        x = torch.as_tensor(np.asarray(wav, dtype=np.float32).reshape(-1), device=self.device)
        if x.numel() < o.n_fft:
            x = F.pad(x, (0, o.n_fft - x.numel()))
        spec = torch.stft(x, o.n_fft, o.hop_length, window=self._window, center=True, return_complex=True)
        power = self._fb @ spec.abs().pow(2)
        db = 10.0 * torch.log10(power.clamp(min=1e-10))
        db = db.clamp(min=db.max() - o.top_db)
        scaled = (db - db.max() + o.top_db) / o.top_db
        img = F.interpolate(
            scaled.flip(0)[None, None], size=o.image_size, mode="bilinear", align_corners=False
        )
        return ((img.expand(1, 3, *o.image_size) - self._mean) / self._std)[0]

    @torch.inference_mode()
    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(waveforms), self.dim), dtype=np.float32)
        size = self.options.batch_size
        for start in range(0, len(waveforms), size):
            images = torch.stack([self.image(w) for w in waveforms[start : start + size]])
            feats = self.cnn(images.to(self.dtype))
            out[start : start + len(images)] = feats.to(torch.float32).cpu().numpy()
        return out


def _load_weights(cnn: torch.nn.Module, source: str, runtime: Runtime) -> None:
    from clasp_ingest.model.hub import resolve_file

    path = resolve_file(source, runtime.model_dir)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    missing, _unexpected = cnn.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("classifier", "head", "fc"))]
    if missing:
        raise ModelLoadError(
            f"weights {source!r} do not fit the CNN: missing {missing[:5]}...; check the timm model name"
        )


def create_timm_cnn(source: str, options: dict[str, Any], runtime: Runtime) -> torch.nn.Module:
    """A timm model without classifier (``num_classes=0`` → pooled features)."""
    import timm

    kwargs = dict(options.get("timm_kwargs", {}))
    pretrained = bool(options.get("pretrained", False)) and "weights" not in options
    try:
        cnn = timm.create_model(source, pretrained=pretrained, num_classes=0, **kwargs)
    except RuntimeError as exc:
        raise ModelLoadError(f"timm cannot create {source!r}: {exc}") from exc
    if "weights" in options:
        _load_weights(cnn, str(options["weights"]), runtime)
    return cnn


def build_native_spectrogram(spec: ComponentSpec, runtime: Runtime) -> NativeSpectrogramEncoder:
    """Backend ``native``: ``spec.source`` is a timm model name; options tune the log-mel image."""
    opts = dict(spec.options)
    seed = opts.get("seed")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        cnn = create_timm_cnn(spec.source, opts, runtime)
    fields = {k: opts[k] for k in LogMelOptions.__dataclass_fields__ if k in opts}
    for key in ("image_size", "mean", "std"):
        if key in fields:
            fields[key] = tuple(fields[key])
    if "image_size" not in fields:
        input_size = getattr(cnn, "pretrained_cfg", {}).get("input_size", (3, 224, 224))
        fields["image_size"] = (int(input_size[1]), int(input_size[2]))
    num_features = int(getattr(cnn, "num_features", spec.dim))
    if num_features != spec.dim:
        raise ModelLoadError(
            f"timm model {spec.source!r} gives {num_features}-d features but the config says {spec.dim}; "
            "fix the preset's spectrogram dim"
        )
    return NativeSpectrogramEncoder(cnn, spec.dim, runtime, LogMelOptions(**fields))
