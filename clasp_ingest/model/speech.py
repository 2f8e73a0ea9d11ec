"""Speech SSL branch: a transformers backbone (HuBERT, Wav2Vec2, WavLM) mean-pooled over real frames.

Waveforms of a batch are zero-padded to the longest one; the attention mask keeps padding
out of the transformer, and pooling averages only the frames the backbone derives from real
samples, so a padded batch gives the same vectors as the items one by one. Backbones whose
convolutional feature encoder uses group norm over time (``feat_extract_norm="group"``, e.g.
HuBERT-base) see padding through that norm, so for them only equal-length items share a batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clasp_ingest.log import get_logger
from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = ["HFSpeechEncoder", "SpeechOptions", "build_hf_speech"]

logger = get_logger("model.speech")

#: Shorter clips are zero-padded to this many samples (the conv front end needs 400).
MIN_SAMPLES = 400


@dataclass(frozen=True)
class SpeechOptions:
    """How waveforms are prepared: per-utterance zero-mean/unit-variance as the HF feature extractor."""

    normalize: bool = True
    batch_size: int = 8


class HFSpeechEncoder:
    """``SpeechEncoder`` over a transformers audio backbone's ``last_hidden_state``."""

    def __init__(self, backbone: Any, runtime: Runtime, options: SpeechOptions | None = None) -> None:
        self.options = options or SpeechOptions(batch_size=runtime.batch_size)
        self.device = torch.device(runtime.device)
        self.dtype = runtime.torch_dtype()
        self.backbone = backbone.to(self.device, self.dtype).eval()
        config = backbone.config
        self._group_norm = getattr(config, "feat_extract_norm", "layer") == "group"

    @property
    def dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(waveforms), self.dim), dtype=np.float32)
        for indices in self._batches(waveforms):
            out[indices] = self._encode_batch(
                [_prepare(waveforms[i], self.options.normalize) for i in indices]
            )
        return out

    def _batches(self, waveforms: Sequence[np.ndarray]) -> Iterator[list[int]]:
        order = sorted(range(len(waveforms)), key=lambda i: len(waveforms[i]))
        size = self.options.batch_size
        if not self._group_norm:
            for start in range(0, len(order), size):
                yield order[start : start + size]
            return
        group: list[int] = []
        for i in order:
            if group and (len(group) == size or len(waveforms[group[0]]) != len(waveforms[i])):
                yield group
                group = []
            group.append(i)
        if group:
            yield group

    def encode_frames(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per clip, the backbone's frames derived from real samples, (frames, dim) float32."""
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(waveforms)
        for indices in self._batches(waveforms):
            hidden, real = self._hidden([_prepare(waveforms[i], self.options.normalize) for i in indices])
            for row, i in enumerate(indices):
                out[i] = hidden[row][real[row]].cpu().numpy()
        return out

    @torch.inference_mode()
    def _hidden(self, items: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 ``last_hidden_state`` of a padded batch and the mask of its real frames."""
        lengths = torch.tensor([len(x) for x in items])
        batch = torch.zeros(len(items), int(lengths.max()))
        for row, wav in enumerate(items):
            batch[row, : len(wav)] = torch.from_numpy(wav)
        mask = (torch.arange(batch.shape[1])[None, :] < lengths[:, None]).long()
        batch, mask = batch.to(self.device, self.dtype), mask.to(self.device)
        hidden = self.backbone(batch, attention_mask=mask).last_hidden_state
        frame_mask = self.backbone._get_feature_vector_attention_mask(hidden.shape[1], mask)
        return hidden.to(torch.float32), frame_mask.bool()

    def _encode_batch(self, items: list[np.ndarray]) -> np.ndarray:
        hidden, real = self._hidden(items)
        weights = real.to(torch.float32).unsqueeze(-1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return pooled.cpu().numpy()


def _prepare(wav: np.ndarray, normalize: bool) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    if normalize:
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    if len(x) < MIN_SAMPLES:
        x = np.pad(x, (0, MIN_SAMPLES - len(x)))
    return x.astype(np.float32, copy=False)


def build_hf_speech(spec: ComponentSpec, runtime: Runtime) -> HFSpeechEncoder:
    """Backend ``hf``: ``transformers.AutoModel`` from a local dir, the HF cache or the hub."""
    from clasp_ingest.model.hub import load_pretrained

    backbone = load_pretrained("AutoModel", spec.source, runtime.model_dir)
    options = SpeechOptions(
        normalize=bool(spec.options.get("normalize", True)),
        batch_size=int(spec.options.get("batch_size", runtime.batch_size)),
    )
    return HFSpeechEncoder(backbone, runtime, options)
