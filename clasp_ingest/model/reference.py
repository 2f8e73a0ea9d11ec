"""Spectrogram branch, ``reference`` mode: the official notebooks' image features, for fidelity.

The official fusion heads were trained on features made by
``extract-pretrained-embeddings.ipynb`` (and used again in ``clasp-inference.ipynb``). This
module reproduces that recipe step by step, with our own code:

1. audio at 22 050 Hz — their ``librosa.load(path)`` default rate. Our input is the 16 kHz
   decoded stream, resampled with ``librosa.resample`` (soxr_hq, librosa's default), so the
   band above 8 kHz, present in their native-rate files, is empty here;
2. ``librosa.stft`` with its defaults (n_fft 2048, hop 512, Hann, centred, constant padding),
   magnitude → ``librosa.amplitude_to_db`` (ref 1.0, amin 1e-5, top_db 80);
3. ``librosa.display.specshow(db, x_axis="time", y_axis="log")`` (sr 22 050, hop 512, the
   colormap librosa picks for the data — ``coolwarm`` for mixed-sign dB, ``magma`` otherwise)
   on a matplotlib figure with *default* style: 6.4 × 4.8 in at 100 dpi (the Kaggle notebooks'
   own plots are ≈590 × 453 px, consistent with those defaults), axis labels set to ''
   (tick labels stay), ``tight_layout()``, saved as PNG with ``bbox_inches="tight",
   pad_inches=0``;
4. the PNG read the way ``cv2.imread(path)`` reads it: 8-bit, alpha dropped, channels in
   **BGR** order, cast to float **without** scaling (values 0–255), **no** resize and **no**
   ImageNet mean/std — exactly as their ``get_image_embedding`` fed it;
5. torchvision ``efficientnet_b7`` with ``IMAGENET1K_V1`` weights (their
   ``pretrained=True``) in eval mode; the feature is its 1000 **logits**.

Not reproduced: their per-file peak normalisation before HuBERT does not touch this branch;
font rendering may differ by a pixel between matplotlib/freetype versions; the images go
through memory instead of a ``spec.png`` on disk (same bytes). The render is slow on purpose
(matplotlib per clip); use the ``native`` mode for throughput.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.base import SAMPLE_RATE
from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = [
    "ReferenceOptions",
    "ReferenceSpectrogramEncoder",
    "build_reference_spectrogram",
    "render_spectrogram",
]


@dataclass(frozen=True)
class ReferenceOptions:
    """The notebook's constants (librosa defaults); change them only to study their effect."""

    sample_rate: int = 22_050
    n_fft: int = 2048
    hop_length: int = 512


def _require_reference_deps() -> tuple[Any, Any]:
    try:
        import librosa
        import librosa.display
        import matplotlib
    except ImportError:
        raise ImportError(
            "the reference spectrogram mode needs librosa and matplotlib: "
            "pip install 'clasp-ingest[reference]'"
        ) from None
    return librosa, matplotlib


def _render_png(db: np.ndarray, options: ReferenceOptions) -> bytes:
    librosa, matplotlib = _require_reference_deps()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        librosa.display.specshow(
            db, x_axis="time", y_axis="log", sr=options.sample_rate, hop_length=options.hop_length, ax=ax
        )
        ax.set_xlabel("")
        ax.set_ylabel("")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0)
    return buf.getvalue()


def _read_like_cv2(png: bytes) -> np.ndarray:
    """(H, W, 3) uint8 BGR, alpha dropped — what ``cv2.imread(path)`` returns for this PNG."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def render_spectrogram(wav: np.ndarray, options: ReferenceOptions | None = None) -> np.ndarray:
    """One 16 kHz clip → the notebook's spectrogram image, (H, W, 3) uint8 BGR."""
    librosa, _ = _require_reference_deps()
    options = options or ReferenceOptions()
    y = librosa.resample(
        np.asarray(wav, dtype=np.float32), orig_sr=SAMPLE_RATE, target_sr=options.sample_rate
    )
    spec = librosa.stft(y, n_fft=options.n_fft, hop_length=options.hop_length)
    db = librosa.amplitude_to_db(np.abs(spec))
    return _read_like_cv2(_render_png(db, options))


class ReferenceSpectrogramEncoder:
    """``SpectrogramEncoder``: rendered image (raw 0–255 BGR floats) → CNN logits, one clip at a time."""

    def __init__(self, cnn: torch.nn.Module, dim: int, runtime: Runtime, options: ReferenceOptions) -> None:
        self.device = torch.device(runtime.device)
        self.dtype = runtime.torch_dtype()
        self.cnn = cnn.to(self.device, self.dtype).eval()
        self.options = options
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    @torch.inference_mode()
    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(waveforms), self.dim), dtype=np.float32)
        for i, wav in enumerate(waveforms):
            image = render_spectrogram(wav, self.options)
            tensor = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).to(self.device, self.dtype)
            out[i] = self.cnn(tensor)[0].to(torch.float32).cpu().numpy()
        return out


def _weights_file(url: str, model_dir: Path | None) -> Path | None:
    name = url.rsplit("/", 1)[-1]
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / name]
    if model_dir is not None:
        candidates.insert(0, model_dir / name)
    return next((c for c in candidates if c.is_file()), None)


def _efficientnet_b7(weights: str | None, model_dir: Path | None) -> torch.nn.Module:
    from torchvision.models import EfficientNet_B7_Weights, efficientnet_b7

    if weights is None:
        return efficientnet_b7(weights=None)
    enum = EfficientNet_B7_Weights[weights]
    local = _weights_file(enum.url, model_dir)
    from clasp_ingest.model.hub import hub_offline

    if local is None and hub_offline():
        name = enum.url.rsplit("/", 1)[-1]
        raise ModelLoadError(
            f"EfficientNet-B7 {weights} weights ({name}) are not in --model-dir nor in "
            f"{torch.hub.get_dir()}/checkpoints and downloads are off; download {enum.url} into one of them"
        )
    cnn = efficientnet_b7(weights=None)
    try:
        state = (
            torch.load(local, map_location="cpu", weights_only=True)
            if local is not None
            else enum.get_state_dict(progress=False)
        )
    except (OSError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot get EfficientNet-B7 weights ({local or enum.url}): {exc}") from exc
    cnn.load_state_dict(state)
    return cnn


def build_reference_spectrogram(spec: ComponentSpec, runtime: Runtime) -> ReferenceSpectrogramEncoder:
    """Backend ``reference``: ``source`` must be ``efficientnet_b7``; ``options.weights`` is the
    torchvision weights name (``IMAGENET1K_V1``) or ``None`` for a random network (benchmarks)."""
    if spec.source != "efficientnet_b7":
        raise ModelLoadError(
            f"the reference spectrogram mode reproduces torchvision efficientnet_b7 only, got {spec.source!r}"
        )
    _require_reference_deps()
    weights = spec.options.get("weights", "IMAGENET1K_V1")
    cnn = _efficientnet_b7(None if weights is None else str(weights), runtime.model_dir)
    fields = {k: int(spec.options[k]) for k in ReferenceOptions.__dataclass_fields__ if k in spec.options}
    return ReferenceSpectrogramEncoder(cnn, spec.dim, runtime, ReferenceOptions(**fields))
