"""Losses that pull a fusion head's output towards the frozen text encoder's embedding.

``contrastive`` (CLASP): symmetric InfoNCE over a batch of (audio, text) pairs. Both sides
are L2-normalised, ``logits = cos_sim / T`` and the loss is the mean of the audio→text and
text→audio cross-entropies with the matching pair as the target. ``T`` is learnable, kept
as ``log T`` and initialised at ``T = 0.07`` (CLIP's recipe); it is clamped to ``T >= 0.01``
(logit scale ≤ 100) so it cannot collapse.

Deviation from the paper's code: the official notebook computes
``sim * exp(log 0.07)``, i.e. it *multiplies* the cosine similarities by 0.07 with a fixed
(not learnable) temperature, which squeezes all logits into ``[-0.07, 0.07]`` and makes the
softmax almost uniform. We divide by the temperature and learn it, as InfoNCE/CLIP define it.

``huber`` (LASP): a regression loss, the Huber (smooth-L1) distance between the
L2-normalised head output and the L2-normalised text embedding, averaged over elements.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["INIT_TEMPERATURE", "LOSSES", "HuberEmbeddingLoss", "InfoNCELoss", "build_loss"]

#: Loss names accepted by :func:`build_loss`.
LOSSES = ("contrastive", "huber")

#: Starting temperature of a fresh contrastive head (CLIP's 0.07).
INIT_TEMPERATURE = 0.07
_MIN_TEMPERATURE = 0.01


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE with a learnable temperature (``logits = sim / T``)."""

    def __init__(self, init_temperature: float = INIT_TEMPERATURE, learnable: bool = True) -> None:
        super().__init__()
        if init_temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {init_temperature}")
        log_t = torch.tensor(math.log(init_temperature), dtype=torch.float32)
        self.log_temperature = nn.Parameter(log_t, requires_grad=learnable)

    @property
    def temperature(self) -> float:
        """The current temperature ``T`` (after clamping)."""
        return float(self._clamped_log_t().detach().exp())

    def _clamped_log_t(self) -> torch.Tensor:
        return self.log_temperature.clamp(min=math.log(_MIN_TEMPERATURE))

    def logits(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(n, n) audio→text logits: cosine similarities divided by ``T``."""
        sim = F.normalize(audio, dim=-1) @ F.normalize(text, dim=-1).T
        return sim / self._clamped_log_t().exp()

    def forward(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        logits = self.logits(audio, text)
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class HuberEmbeddingLoss(nn.Module):
    """Huber distance between L2-normalised audio and text embeddings (LASP)."""

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        if delta <= 0:
            raise ValueError(f"Huber delta must be > 0, got {delta}")
        self.delta = delta

    def forward(self, audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(F.normalize(audio, dim=-1), F.normalize(text, dim=-1), delta=self.delta)


def build_loss(name: str, *, huber_delta: float = 1.0, temperature: float = INIT_TEMPERATURE) -> nn.Module:
    """The loss module called ``name`` (one of :data:`LOSSES`); ``temperature``: the contrastive
    loss's starting temperature."""
    if name == "contrastive":
        return InfoNCELoss(temperature)
    if name == "huber":
        return HuberEmbeddingLoss(huber_delta)
    raise ValueError(f"unknown loss {name!r}; use one of {LOSSES}")
