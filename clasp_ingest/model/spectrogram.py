"""Spectrogram branch, ``native`` mode: a torch log-mel image fed to a timm CNN, pooled features.

The image is :mod:`clasp_ingest.model.logmel`'s (STFT → mel filterbank → dB clipped to
``top_db`` and scaled to [0, 1] → resized bilinearly → three channels normalised with the
CNN's mean/std), computed here with torch. Each clip is processed on its own up to the
image, so padding never leaks between clips; the CNN then runs on the stacked batch (GPU
when the runtime has one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.base import SAMPLE_RATE
from clasp_ingest.model.config import ComponentSpec, Runtime
from clasp_ingest.model.logmel import LogMelOptions, mel_filterbank

__all__ = [
    "LogMelOptions",
    "NativeSpectrogramEncoder",
    "NoSpectrogram",
    "build_native_spectrogram",
    "build_no_spectrogram",
    "mel_filterbank",
    "native_encoder",
]


class NativeSpectrogramEncoder:
    """``SpectrogramEncoder``: log-mel images through a timm CNN without its classifier."""

    def __init__(self, cnn: torch.nn.Module, dim: int, runtime: Runtime, options: LogMelOptions) -> None:
        self.options = options
        self.device = torch.device(runtime.device)
        self.dtype = runtime.torch_dtype()
        self.cnn = cnn.to(self.device, self.dtype).eval()
        self._dim = dim
        fb = mel_filterbank(options.n_fft, options.n_mels, options.f_min, options.f_max, SAMPLE_RATE)
        self._fb = torch.from_numpy(fb).to(self.device)
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

        from clasp_ingest.model.hub import readable_weights

        with readable_weights(path):
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


def native_encoder(
    cnn: torch.nn.Module, spec: ComponentSpec, runtime: Runtime, *, image_size: tuple[int, int]
) -> NativeSpectrogramEncoder:
    """The native branch around ``cnn`` (pooled features); ``spec.options`` tune the log-mel image
    (``image_size`` unless they name one)."""
    opts = dict(spec.options)
    fields = {k: opts[k] for k in LogMelOptions.__dataclass_fields__ if k in opts}
    for key in ("image_size", "mean", "std"):
        if key in fields:
            fields[key] = tuple(fields[key])
    fields.setdefault("image_size", image_size)
    num_features = int(getattr(cnn, "num_features", spec.dim))
    if num_features != spec.dim:
        raise ModelLoadError(
            f"CNN {spec.source!r} gives {num_features}-d features but the config says {spec.dim}; "
            "fix the preset's spectrogram dim"
        )
    return NativeSpectrogramEncoder(cnn, spec.dim, runtime, LogMelOptions(**fields))


def build_native_spectrogram(spec: ComponentSpec, runtime: Runtime) -> NativeSpectrogramEncoder:
    """Backend ``native``: ``spec.source`` is a timm model name; options tune the log-mel image."""
    opts = dict(spec.options)
    seed = opts.get("seed")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        cnn = create_timm_cnn(spec.source, opts, runtime)
    input_size = getattr(cnn, "pretrained_cfg", {}).get("input_size", (3, 224, 224))
    return native_encoder(cnn, spec, runtime, image_size=(int(input_size[1]), int(input_size[2])))


class NoSpectrogram:
    """``SpectrogramEncoder`` of a speech-only model (backend ``none``): no image is rendered and
    no CNN runs; every clip's spectrogram feature is zero, so a head trained with it learns its
    image branch as a constant and ranks by the speech branch alone (the spectrogram ablation)."""

    dtype = torch.float32

    def __init__(self, dim: int) -> None:
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return np.zeros((len(waveforms), self._dim), dtype=np.float32)


def build_no_spectrogram(spec: ComponentSpec, runtime: Runtime) -> NoSpectrogram:
    """Backend ``none``: ``spec.dim`` zeros per clip (``spec.source`` is only a label)."""
    return NoSpectrogram(spec.dim)
