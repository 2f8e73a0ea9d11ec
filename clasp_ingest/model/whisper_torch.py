"""Whisper's encoder in PyTorch, loaded from a CTranslate2 model folder (for fine-tuning its top layers).

clasp-mini runs Whisper-base's encoder through CTranslate2, whose API exposes no weights. Here
:mod:`clasp_ingest.model.ct2_format` reads ``model.bin`` and the ``encoder/`` variables go into
transformers' ``WhisperEncoder``: CTranslate2 keeps a self-attention's q/k/v projections as one fused
``linear_0`` (rows q, k, v; Whisper's k projection has no bias, so that third is zeros and dropped),
the output projection as ``linear_1``, layer norms as ``gamma``/``beta``. Float16, bfloat16 and
int8/int16 weights (with their scales) are all turned into ``dtype``.

:class:`WhisperTorchEncoder` runs the same layers on any even number of mel frames up to 3000, so
it takes both window modes of :class:`~clasp_ingest.model.whisper_ct2.WhisperCT2SpeechEncoder`;
:func:`encode_frames_torch` feeds it that encoder's windows and returns its per-clip frames as
tensors (with gradients when enabled).

Fine-tuning the top layers without running the whole encoder every step:
:class:`WhisperTorchFrames` is a frame speech encoder that stops *below* the top layers (its
frames, computed once and cached like any features, are what those layers read);
:class:`TopLayersFusion` puts the top layers and the final norm in front of a head, so training
updates both; :func:`top_layers_ct2` turns the trained layers back into CTranslate2 variables,
which :func:`~clasp_ingest.model.ct2_format.patch_ct2_model` writes into a copy of the model
that ingestion then runs as before (``ct2-whisper`` with ``options.top_layers``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.ct2_format import CT2Model, read_ct2_model
from clasp_ingest.model.whisper_ct2 import WhisperCT2Options, clip_parts, window_states

if TYPE_CHECKING:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

__all__ = [
    "TopLayersFusion",
    "WhisperTorchEncoder",
    "WhisperTorchFrames",
    "encode_frames_torch",
    "encoder_state_dict",
    "load_torch_whisper_encoder",
    "top_layers_ct2",
    "whisper_config",
]

_LAYER = re.compile(r"encoder/layer_(\d+)/")
_LINEAR, _NORM = r"linear_[01]/(weight|weight_scale|bias)", r"layer_norm/(gamma|beta)"
_KNOWN = re.compile(
    rf"encoder/(num_heads|position_encodings/encodings|{_NORM}|conv[12]/(weight|weight_scale|bias)"
    rf"|layer_\d+/(self_attention|ffn)/({_LINEAR}|{_NORM}))"
)


class WhisperTorchEncoder(nn.Module):
    """A transformers ``WhisperEncoder`` that accepts fewer than 3000 mel frames (positions cut to fit).

    ``forward(features)``: (batch, n_mels, frames) -> (batch, frames // 2, dim), as CTranslate2's
    ``Whisper.encode``. For 3000 frames it equals ``WhisperEncoder.forward``.
    """

    def __init__(self, encoder: WhisperEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def n_mels(self) -> int:
        return int(self.encoder.conv1.in_channels)

    @property
    def dim(self) -> int:
        return int(self.encoder.conv1.out_channels)

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layers

    def forward(self, features: torch.Tensor, stop: int | None = None) -> torch.Tensor:
        """Encoder states; with ``stop`` the hidden states entering layer ``stop`` (no final norm)."""
        enc = self.encoder
        x = nn.functional.gelu(enc.conv1(features))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        if x.shape[1] > enc.embed_positions.num_embeddings:
            raise ValueError(f"{features.shape[-1]} mel frames exceed Whisper's 30 s window")
        x = x + enc.embed_positions.weight[: x.shape[1]]
        for layer in enc.layers[:stop]:
            x = layer(x, None)
        return x if stop is not None else enc.layer_norm(x)


def _check_whisper(model: CT2Model) -> None:
    if model.spec != "WhisperSpec" or "encoder/conv1/weight" not in model.variables:
        raise ModelLoadError(
            f"{model.path} holds a CTranslate2 {model.spec}, not a Whisper encoder; use "
            "clasp_ingest.model.assets.whisper_base_ct2_dir() or convert a Whisper model with "
            "ct2-transformers-converter"
        )
    unknown = sorted(n for n in model.variables if n.startswith("encoder/") and not _KNOWN.fullmatch(n))
    if unknown:
        raise ModelLoadError(
            f"{model.path}: encoder variables {unknown[:3]} have no place in Whisper's encoder; "
            "this loader takes Whisper models as ct2-transformers-converter writes them"
        )


def _n_layers(model: CT2Model) -> int:
    return len({m.group(1) for name in model.variables if (m := _LAYER.match(name))})


def whisper_config(model: CT2Model) -> WhisperConfig:
    """A transformers ``WhisperConfig`` whose encoder has the shapes of ``model``'s variables (no dropout)."""
    from transformers import WhisperConfig

    _check_whisper(model)
    dim, n_mels, _ = model.float32("encoder/conv1/weight").shape
    return WhisperConfig(
        num_mel_bins=int(n_mels),
        d_model=int(dim),
        encoder_layers=_n_layers(model),
        encoder_attention_heads=int(model.float32("encoder/num_heads")),
        encoder_ffn_dim=int(model.float32("encoder/layer_0/ffn/linear_0/bias").shape[0]),
        max_source_positions=int(model.float32("encoder/position_encodings/encodings").shape[0]),
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
    )


def _linear(model: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": model.float32(f"{src}/weight"), f"{dst}.bias": model.float32(f"{src}/bias")}


def _norm(model: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": model.float32(f"{src}/gamma"), f"{dst}.bias": model.float32(f"{src}/beta")}


def _attention(model: CT2Model, src: str, dst: str) -> dict[str, np.ndarray]:
    """Split CTranslate2's fused q/k/v projection; the k bias (zeros in Whisper) is dropped.

    A k bias adds the same ``q · b_k`` to a query's scores for every key, so softmax ignores it.
    """
    q, k, v = np.split(model.float32(f"{src}/linear_0/weight"), 3)
    bq, _, bv = np.split(model.float32(f"{src}/linear_0/bias"), 3)
    state = {f"{dst}.q_proj.weight": q, f"{dst}.k_proj.weight": k, f"{dst}.v_proj.weight": v}
    state |= {f"{dst}.q_proj.bias": bq, f"{dst}.v_proj.bias": bv}
    return state


#: An encoder layer's CTranslate2 linears and norms (under ``encoder/layer_i/``) and their names in
#: transformers' ``WhisperEncoderLayer`` (the fused q/k/v projection is handled on its own).
_LAYER_LINEARS = {
    "self_attention/linear_1": "self_attn.out_proj",
    "ffn/linear_0": "fc1",
    "ffn/linear_1": "fc2",
}
_LAYER_NORMS = {"self_attention/layer_norm": "self_attn_layer_norm", "ffn/layer_norm": "final_layer_norm"}


def _layer_state(model: CT2Model, i: int) -> dict[str, np.ndarray]:
    src, dst = f"encoder/layer_{i}", f"layers.{i}"
    state = _attention(model, f"{src}/self_attention", f"{dst}.self_attn")
    for ct2, hf in _LAYER_LINEARS.items():
        state |= _linear(model, f"{src}/{ct2}", f"{dst}.{hf}")
    for ct2, hf in _LAYER_NORMS.items():
        state |= _norm(model, f"{src}/{ct2}", f"{dst}.{hf}")
    return state


def encoder_state_dict(model: CT2Model) -> dict[str, np.ndarray]:
    """``model``'s encoder as a float32 state dict with transformers' ``WhisperEncoder`` keys."""
    state = _linear(model, "encoder/conv1", "conv1") | _linear(model, "encoder/conv2", "conv2")
    state["embed_positions.weight"] = model.float32("encoder/position_encodings/encodings")
    state |= _norm(model, "encoder/layer_norm", "layer_norm")
    for i in range(_n_layers(model)):
        state |= _layer_state(model, i)
    return state


def _freeze_below(module: WhisperTorchEncoder, trainable_top_layers: int) -> None:
    n_layers = len(module.layers)
    if not 0 <= trainable_top_layers <= n_layers:
        raise ConfigError(f"trainable_top_layers={trainable_top_layers} must be in 0..{n_layers}")
    module.requires_grad_(False)
    if trainable_top_layers:
        module.layers[n_layers - trainable_top_layers :].requires_grad_(True)
        module.encoder.layer_norm.requires_grad_(True)


def load_torch_whisper_encoder(
    model_dir: Path | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trainable_top_layers: int = 0,
) -> WhisperTorchEncoder:
    """The encoder of the CTranslate2 Whisper in ``model_dir`` (default: whisper-base from the packages).

    All parameters are frozen except, when ``trainable_top_layers`` > 0, the top that many
    transformer layers and the final layer norm. The module is returned in eval mode.
    """
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    if model_dir is None:
        from clasp_ingest.model.assets import whisper_base_ct2_dir

        model_dir = whisper_base_ct2_dir()
    model = read_ct2_model(Path(model_dir), keep=lambda name: name.startswith("encoder/"))
    encoder = WhisperEncoder(whisper_config(model))
    state = {k: torch.from_numpy(v) for k, v in encoder_state_dict(model).items()}
    encoder.load_state_dict(state, strict=True)
    module = WhisperTorchEncoder(encoder).to(device=device, dtype=dtype).eval()
    _freeze_below(module, trainable_top_layers)
    return module


def encode_frames_torch(
    encoder: WhisperTorchEncoder,
    waveforms: Sequence[np.ndarray],
    options: WhisperCT2Options | None = None,
) -> list[torch.Tensor]:
    """Per clip, the encoder states over real audio in time order, (frames, dim) tensors.

    The windows, features and real-frame cut of ``WhisperCT2SpeechEncoder.encode_frames`` with the
    same ``options`` (``window``, ``batch_size``); gradients flow when autograd is enabled.
    """
    options = options or WhisperCT2Options()
    param = next(encoder.parameters())

    def run(features: np.ndarray) -> torch.Tensor:
        return encoder(torch.from_numpy(features).to(device=param.device, dtype=param.dtype))

    states = window_states(waveforms, encoder.n_mels, options, run)
    return [torch.cat(p) for p in clip_parts(len(waveforms), states)]


class WhisperTorchFrames:
    """A frame speech encoder (``encode`` / ``encode_frames``) giving the hidden states that enter
    encoder layer ``stop`` (float32, the windows of ``options``): the input of the top
    ``len(layers) - stop`` layers that :class:`TopLayersFusion` trains."""

    def __init__(self, encoder: WhisperTorchEncoder, stop: int, options: WhisperCT2Options) -> None:
        if not 0 < stop < len(encoder.layers):
            raise ConfigError(f"stop={stop} must be in 1..{len(encoder.layers) - 1}")
        self.encoder, self.stop, self.options = encoder, stop, options

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode_frames(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        param = next(self.encoder.parameters())

        def run(features: np.ndarray) -> np.ndarray:
            batch = torch.from_numpy(features).to(device=param.device, dtype=param.dtype)
            return self.encoder(batch, stop=self.stop).float().cpu().numpy()

        with torch.inference_mode():
            states = window_states(waveforms, self.encoder.n_mels, self.options, run)
            parts = clip_parts(len(waveforms), states)
        return [np.concatenate(p).astype(np.float32, copy=False) for p in parts]

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([f.mean(axis=0) for f in self.encode_frames(waveforms)])


class TopLayersFusion(nn.Module):
    """Whisper's top encoder layers + final norm in front of a frame-pooling head.

    Input: zero-padded ``(batch, frames, dim)`` hidden states from :class:`WhisperTorchFrames`
    (a padded frame is all zeros, as :class:`~clasp_ingest.model.fusion.AttentionPool` assumes);
    padded frames are masked out of the attention and zeroed again after the norm, so each clip's
    real frames come out as the whole encoder would give them, then ``head`` pools and fuses.
    """

    def __init__(self, layers: nn.ModuleList, norm: nn.LayerNorm, head: nn.Module) -> None:
        super().__init__()
        self.layers, self.norm, self.head = layers, norm, head

    def forward(self, frames: torch.Tensor, spec_feats: torch.Tensor) -> torch.Tensor:
        real = (frames[..., :8] != 0).any(dim=-1)  # (batch, frames)
        blocked = torch.zeros(real.shape, dtype=frames.dtype, device=frames.device)
        blocked = blocked.masked_fill(~real, torch.finfo(frames.dtype).min)[:, None, None, :]
        x = frames
        for layer in self.layers:
            x = layer(x, blocked)
        x = self.norm(x) * real[..., None]
        return self.head(x, spec_feats)


def top_layers_fusion(encoder: WhisperTorchEncoder, n_top: int, head: nn.Module) -> TopLayersFusion:
    """``head`` behind the top ``n_top`` layers and the final norm of ``encoder`` (trainable copies)."""
    import copy

    n_layers = len(encoder.layers)
    if not 0 < n_top < n_layers:
        raise ConfigError(f"top layers {n_top} must be in 1..{n_layers - 1}")
    layers = copy.deepcopy(encoder.layers[n_layers - n_top :]).float().requires_grad_(True)
    norm = copy.deepcopy(encoder.encoder.layer_norm).float().requires_grad_(True)
    return TopLayersFusion(layers, norm, head)


def top_layers_ct2(fusion: TopLayersFusion, n_layers: int) -> dict[str, np.ndarray]:
    """The trained top layers and final norm as CTranslate2 ``encoder/`` variables (float32),
    for an encoder of ``n_layers`` layers (the inverse of :func:`encoder_state_dict`)."""

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    norm = fusion.norm.state_dict()
    out = {"encoder/layer_norm/gamma": arr(norm["weight"]), "encoder/layer_norm/beta": arr(norm["bias"])}
    for i, layer in enumerate(fusion.layers, start=n_layers - len(fusion.layers)):
        src, w = f"encoder/layer_{i}", layer.state_dict()
        qkv = [w[f"self_attn.{p}_proj.weight"] for p in "qkv"]
        out[f"{src}/self_attention/linear_0/weight"] = arr(torch.cat(qkv))
        q_bias, v_bias = w["self_attn.q_proj.bias"], w["self_attn.v_proj.bias"]
        fused_bias = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])  # Whisper's k has no bias
        out[f"{src}/self_attention/linear_0/bias"] = arr(fused_bias)
        for ct2, hf in _LAYER_LINEARS.items():
            out[f"{src}/{ct2}/weight"], out[f"{src}/{ct2}/bias"] = (
                arr(w[f"{hf}.weight"]),
                arr(w[f"{hf}.bias"]),
            )
        for ct2, hf in _LAYER_NORMS.items():
            out[f"{src}/{ct2}/gamma"], out[f"{src}/{ct2}/beta"] = arr(w[f"{hf}.weight"]), arr(w[f"{hf}.bias"])
    return out
