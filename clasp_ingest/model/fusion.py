"""Fusion heads of the CLASP paper: speech features + spectrogram features → text space.

Layer layout and attribute names follow the paper's notebook classes so the official state
dicts load unchanged:

* ``ConcatFusion`` ≙ ``HubertLabseConcat``: ``audio_seq`` and ``image_seq`` branch MLPs
  (in → 768 → 576 → 768 with BatchNorm/ReLU/Dropout 0.15, BatchNorm/LeakyReLU/Dropout 0.1),
  then ``mix_seq`` (1536 → 1024 → 800 → 768, BatchNorm/LeakyReLU, LeakyReLU).
* ``GatingFusion`` ≙ ``HubertLabseGating``: the speech branch is called ``text_seq`` there
  (sic), then per-branch input gates, forget gates and tanh cells (768 → 768), and a
  ``weight`` layer (1536 → 1536) whose softmax over all 1536 outputs weights the two
  updated branches.

Inputs are L2-normalised per row before the branch MLPs (``normalize_inputs=True``, the
default): the paper's data notebook ``F.normalize``-s the SSL and image features before
training, and ``clasp-inference.ipynb`` warns "Do not forget to normalize your spectogram
and SSL embeddings before pass to fusion encoder". Doing it inside ``forward`` keeps training
and inference consistent; the flag is not part of the state dict.

For another ``out_dim`` (clasp-mini: 384 or 512) every hidden width keeps the paper's ratio
to 768: branch bottleneck ``3/4·d`` (576), mix hidden ``4/3·d`` (1024) and ``25/24·d`` (800).

Not in the paper: ``PooledFusion`` puts an ``AttentionPool`` in front of either head, so the
head takes the speech encoder's frames instead of their mean (``FusionSpec.speech_pool``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AttentionPool",
    "ConcatFusion",
    "EnsembleFusion",
    "GatingFusion",
    "PooledFusion",
    "build_fusion",
    "hidden_sizes",
]


def hidden_sizes(out_dim: int) -> tuple[int, int, int]:
    """(branch bottleneck, mix hidden 1, mix hidden 2): (576, 1024, 800) for ``out_dim=768``."""
    return round(out_dim * 3 / 4), round(out_dim * 4 / 3), round(out_dim * 25 / 24)


def _branch(in_dim: int, out_dim: int) -> nn.Sequential:
    bottleneck = hidden_sizes(out_dim)[0]
    return nn.Sequential(
        nn.Linear(in_dim, out_dim),
        nn.BatchNorm1d(out_dim),
        nn.ReLU(),
        nn.Dropout(p=0.15),
        nn.Linear(out_dim, bottleneck),
        nn.BatchNorm1d(bottleneck),
        nn.LeakyReLU(),
        nn.Dropout(p=0.1),
        nn.Linear(bottleneck, out_dim),
    )


def _gate(dim: int, activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), activation)


def _prepare(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    return F.normalize(x, dim=-1) if normalize else x


class ConcatFusion(nn.Module):
    """Both branches to ``out_dim``, concatenated, mixed by an MLP (paper: concatenation fusion)."""

    def __init__(
        self,
        speech_dim: int = 1024,
        spec_dim: int = 1000,
        out_dim: int = 768,
        *,
        normalize_inputs: bool = True,
    ) -> None:
        super().__init__()
        self.normalize_inputs = normalize_inputs
        _, mix1, mix2 = hidden_sizes(out_dim)
        self.speech_dim, self.spec_dim, self.out_dim = speech_dim, spec_dim, out_dim
        self.image_seq = _branch(spec_dim, out_dim)
        self.audio_seq = _branch(speech_dim, out_dim)
        self.mix_seq = nn.Sequential(
            nn.Linear(2 * out_dim, mix1),
            nn.BatchNorm1d(mix1),
            nn.LeakyReLU(),
            nn.Linear(mix1, mix2),
            nn.LeakyReLU(),
            nn.Linear(mix2, out_dim),
        )

    def forward(self, speech_feats: torch.Tensor, spec_feats: torch.Tensor) -> torch.Tensor:
        speech = self.audio_seq(_prepare(speech_feats, self.normalize_inputs))
        joined = torch.cat((speech, self.image_seq(_prepare(spec_feats, self.normalize_inputs))), dim=1)
        return self.mix_seq(joined)


class GatingFusion(nn.Module):
    """LSTM-like gates per branch and a softmax-weighted sum (paper: gating fusion)."""

    def __init__(
        self,
        speech_dim: int = 1024,
        spec_dim: int = 1000,
        out_dim: int = 768,
        *,
        normalize_inputs: bool = True,
    ) -> None:
        super().__init__()
        self.normalize_inputs = normalize_inputs
        self.speech_dim, self.spec_dim, self.out_dim = speech_dim, spec_dim, out_dim
        self.image_seq = _branch(spec_dim, out_dim)
        self.text_seq = _branch(speech_dim, out_dim)
        self.input_gate_text = _gate(out_dim, nn.Sigmoid())
        self.input_gate_image = _gate(out_dim, nn.Sigmoid())
        self.forget_gate_text = _gate(out_dim, nn.Sigmoid())
        self.forget_gate_image = _gate(out_dim, nn.Sigmoid())
        self.tanh_text = _gate(out_dim, nn.Tanh())
        self.tanh_image = _gate(out_dim, nn.Tanh())
        self.weight = nn.Sequential(nn.Linear(2 * out_dim, 2 * out_dim))

    def forward(self, speech_feats: torch.Tensor, spec_feats: torch.Tensor) -> torch.Tensor:
        speech = self.text_seq(_prepare(speech_feats, self.normalize_inputs))
        spec = self.image_seq(_prepare(spec_feats, self.normalize_inputs))
        speech = (
            self.input_gate_text(speech) * self.tanh_text(speech) + self.forget_gate_text(speech) * speech
        )
        spec = self.input_gate_image(spec) * self.tanh_image(spec) + self.forget_gate_image(spec) * spec
        weights = torch.softmax(self.weight(torch.cat((speech, spec), dim=-1)), dim=-1)
        return weights[:, : self.out_dim] * speech + weights[:, self.out_dim :] * spec


class AttentionPool(nn.Module):
    """``queries`` learned queries, each a softmax-weighted mean of a clip's frames, concatenated.

    Input: ``(batch, frames, dim)`` zero-padded frame tensors; a frame whose first 8 values
    are all exactly zero is padding (encoder outputs after a layer norm never are; checking
    8 values instead of all keeps the mask cheap). A 2-D ``(batch, dim)`` input is
    one frame per clip. Output: ``(batch, queries * dim)``. The queries start at zero, where
    every query's weights are uniform: an untrained pool is exactly mean pooling.
    """

    def __init__(self, dim: int, queries: int = 4) -> None:
        super().__init__()
        self.dim, self.queries = dim, queries
        self.query = nn.Parameter(torch.zeros(queries, dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.ndim == 2:
            frames = frames[:, None, :]
        real = (frames[..., :8] != 0).any(dim=-1)  # (batch, frames); a real frame has no 8 exact zeros
        first = torch.arange(frames.shape[1], device=frames.device) == 0
        real = real | (first & ~real.any(dim=1, keepdim=True))  # an all-zero clip keeps one (zero) frame
        scores = frames @ self.query.T / self.dim**0.5  # (batch, frames, queries)
        scores = scores.masked_fill(~real[..., None], torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)
        return torch.einsum("btq,btd->bqd", weights, frames).flatten(1)


class PooledFusion(nn.Module):
    """``pool`` (frames → one vector) then ``fusion`` (that vector + spectrogram → text space)."""

    def __init__(self, pool: AttentionPool, fusion: ConcatFusion | GatingFusion) -> None:
        super().__init__()
        self.pool, self.fusion = pool, fusion

    def forward(self, speech_frames: torch.Tensor, spec_feats: torch.Tensor) -> torch.Tensor:
        return self.fusion(self.pool(speech_frames), spec_feats)


class EnsembleFusion(nn.Module):
    """Several heads of one shape; the output is the sum of their unit outputs.

    Heads trained separately (other learning rates, batch sizes) make different errors, and
    the mean of their normalised outputs (the caller normalises the sum) ranks better than
    either. Unlike averaging weights (``training.average``), it needs no shared start and
    works when the weight average does not (clasp-mini v0.9's attention-pooled heads).
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two heads, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, speech: torch.Tensor, spec_feats: torch.Tensor) -> torch.Tensor:
        outs = [nn.functional.normalize(member(speech, spec_feats), dim=-1) for member in self.members]
        return torch.stack(outs).sum(0)


def build_fusion(
    kind: Literal["concat", "gating"],
    speech_dim: int,
    spec_dim: int,
    out_dim: int,
    *,
    normalize_inputs: bool = True,
    speech_pool: Literal["mean", "attention"] = "mean",
    pool_queries: int = 4,
    ensemble: int = 1,
) -> nn.Module:
    """A fresh (randomly initialised) fusion head of the given kind.

    With ``speech_pool="attention"`` it is a :class:`PooledFusion`: an :class:`AttentionPool`
    of ``pool_queries`` queries over ``speech_dim``-wide frames in front of the head, whose
    speech input is then ``pool_queries * speech_dim`` wide. With ``ensemble`` > 1 it is an
    :class:`EnsembleFusion` of that many such heads.
    """
    if ensemble > 1:
        members = [
            build_fusion(
                kind,
                speech_dim,
                spec_dim,
                out_dim,
                normalize_inputs=normalize_inputs,
                speech_pool=speech_pool,
                pool_queries=pool_queries,
            )
            for _ in range(ensemble)
        ]
        return EnsembleFusion(members)
    if speech_pool == "attention":
        width = speech_dim * pool_queries
        inner = build_fusion(kind, width, spec_dim, out_dim, normalize_inputs=normalize_inputs)
        return PooledFusion(AttentionPool(speech_dim, pool_queries), inner)  # type: ignore[arg-type]
    if speech_pool != "mean":
        raise ValueError(f"speech pool {speech_pool!r} is unknown; use 'mean' or 'attention'")
    if kind == "concat":
        return ConcatFusion(speech_dim, spec_dim, out_dim, normalize_inputs=normalize_inputs)
    if kind == "gating":
        return GatingFusion(speech_dim, spec_dim, out_dim, normalize_inputs=normalize_inputs)
    raise ValueError(f"fusion kind {kind!r} is unknown; use 'concat' or 'gating'")
