"""``ClaspModel``: two audio branches + fusion head → the frozen text encoder's space.

``load_model`` builds one from a preset name or from a directory written by ``save_model``
(``config.json`` + ``fusion.safetensors``; backbones are referenced by name in the config).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.backends import build_component
from clasp_ingest.model.base import (
    FrameSpeechEncoder,
    SpectrogramEncoder,
    SpeechEncoder,
    TextEncoder,
    check_waveforms,
    default_threads,
    pad_frames,
)
from clasp_ingest.model.calibration import (
    CENTERING_PREFIX,
    Centering,
    QueryBank,
    centering_from,
    check_query_bank,
    language_basis,
    non_finite_message,
    project_out,
)
from clasp_ingest.model.config import (
    CONFIG_FILE,
    FUSION_FILE,
    TOP_LAYERS_FILE,
    FusionSpec,
    ModelConfig,
    Runtime,
)
from clasp_ingest.model.fusion import build_fusion
from clasp_ingest.model.query import QueryModel, local_top_layers, model_source, resolve_model_config

if TYPE_CHECKING:
    from clasp_ingest.config import Settings

__all__ = [
    "Centering",
    "ClaspModel",
    "QueryBank",
    "language_basis",
    "load_fusion_weights",
    "load_model",
    "load_model_from_settings",
    "load_saved_head",
    "pad_frames",
    "project_out",
    "save_fusion",
    "save_model",
    "seeded_head",
    "set_torch_threads",
]

logger = get_logger("model")


def _as_tensor(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    return t.to(device=device, dtype=torch.float32)


#: Clips per forward pass when a head that pools frames embeds a whole FrameBank.
FRAME_BATCH = 256


class ClaspModel:
    """An ``AudioTextEncoder``: ``encode_audio``/``encode_text`` give L2-normalised float32 rows."""

    #: The preset name or model folder it was loaded from (:func:`load_model` sets it).
    source: str | None = None

    def __init__(
        self,
        config: ModelConfig,
        speech: SpeechEncoder,
        spectrogram: SpectrogramEncoder,
        fusion: torch.nn.Module,
        text: TextEncoder,
        runtime: Runtime,
        centering: Centering | None = None,
    ) -> None:
        self.config = config
        self.centering = centering
        self.speech = speech
        self.spectrogram = spectrogram
        self.text = text
        self.runtime = runtime
        self.device = torch.device(runtime.device)
        self.fusion = fusion.to(self.device, torch.float32).eval()

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @property
    def dim(self) -> int:
        """Width of the vectors: the text encoder's, plus one with a query bank."""
        return self.config.dim + (self.centering.extra_dims if self.centering is not None else 0)

    def query_sample(self) -> np.ndarray | None:
        """The query bank as query vectors (:meth:`Centering.query_sample`), or None."""
        return None if self.centering is None else self.centering.query_sample()

    @property
    def speech_frames(self) -> bool:
        """Whether the head pools the speech encoder's frames itself (``FusionSpec.speech_pool``)."""
        return self.config.fusion.frames

    def embed_features(self, speech_feats: Any, spec_feats: np.ndarray | torch.Tensor) -> np.ndarray:
        """Fusion (in eval mode) + L2 norm of precomputed branch features: (n, dim) float32.

        ``speech_feats``: ``(n, dim)`` pooled vectors, or for a head that pools frames a
        zero-padded ``(n, frames, dim)`` array or a :class:`~clasp_ingest.training.features.FrameBank`
        (embedded in batches of ``FRAME_BATCH`` clips).
        """
        if len(speech_feats) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.fusion.training
        self.fusion.eval()
        try:
            with torch.inference_mode():
                if hasattr(speech_feats, "padded"):  # a FrameBank
                    starts = range(0, len(speech_feats), FRAME_BATCH)
                    fused = torch.cat(
                        [
                            self._fuse(
                                speech_feats.padded(np.arange(i, min(i + FRAME_BATCH, len(speech_feats)))),
                                spec_feats[i : i + FRAME_BATCH],
                            )
                            for i in starts
                        ]
                    )
                else:
                    fused = self._fuse(speech_feats, spec_feats)
        finally:
            self.fusion.train(was_training)
        audio = fused.cpu().numpy().astype(np.float32, copy=False)
        return self.centering.apply(audio, "audio") if self.centering is not None else audio

    def _fuse(self, speech: np.ndarray | torch.Tensor, spec: np.ndarray | torch.Tensor) -> torch.Tensor:
        fused = self.fusion(_as_tensor(speech, self.device), _as_tensor(spec, self.device))
        return torch.nn.functional.normalize(fused.to(torch.float32), dim=-1)

    @property
    def query(self) -> QueryModel:
        """The text side (text encoder + calibration), which makes the model's query vectors
        (one object, so its cache of recent queries serves every ``encode_text`` call; a new
        one, with an empty cache, once ``text`` or ``centering`` is replaced, as fitting a
        query bank does)."""
        current: QueryModel | None = self.__dict__.get("_query_model")
        if current is None or current.text is not self.text or current.centering is not self.centering:
            current = QueryModel(self.config, self.text, self.centering)
            self.__dict__["_query_model"] = current
        return current

    def embed_text_features(self, vectors: np.ndarray) -> np.ndarray:
        """Text-encoder outputs → the model's query vectors: L2 norm (and centring), float32."""
        return self.query.embed_text_features(vectors)

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """16 kHz mono float32 waveforms → (n, dim) unit vectors."""
        items = check_waveforms(waveforms)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.speech_frames:
            frames = self.speech.encode_frames(items)  # type: ignore[attr-defined]
            return self.embed_features(pad_frames(frames), self.spectrogram.encode(items))
        return self.embed_features(self.speech.encode(items), self.spectrogram.encode(items))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → (n, dim) unit vectors of the frozen text encoder (calibrated)."""
        return self.query.encode_text(texts)

    def __repr__(self) -> str:
        return f"ClaspModel({self.model_id!r}, dim={self.dim}, device={self.runtime.device!r})"


def seeded_head(spec: FusionSpec, seed: int) -> torch.nn.Module:
    """A fresh head of ``spec`` (kind, dimensions, speech pooling, ensemble), initialised from ``seed``
    without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_fusion(
            spec.kind,
            spec.speech_dim,
            spec.spec_dim,
            spec.out_dim,
            normalize_inputs=spec.normalize_inputs,
            speech_pool=spec.speech_pool,
            pool_queries=spec.pool_queries,
            ensemble=spec.ensemble,
        )


def _fresh_fusion(config: ModelConfig, *, zero_bias: bool = False) -> torch.nn.Module:
    fusion = seeded_head(config.fusion, config.seed)
    if zero_bias:
        # An untrained head with torch's default biases maps every input to nearly the same
        # direction; zero biases keep random inputs apart (cosine ≈ 0.93-0.98, not 0.999).
        with torch.no_grad():
            for name, param in fusion.named_parameters():
                if name.endswith("bias"):
                    param.zero_()
    return fusion


def load_fusion_weights(config: ModelConfig, path: Path) -> torch.nn.Module:
    """A fusion head of ``config`` with weights from safetensors or an official pickle."""
    return _load_head(config, path)[0]


def load_saved_head(model_dir: Path | str) -> tuple[ModelConfig, torch.nn.Module, Centering | None]:
    """The config, fusion head and centring of a folder written by ``save_model``, no backbones."""
    config, saved_dir = resolve_model_config(str(model_dir))
    if saved_dir is None:
        raise ModelLoadError(f"{str(model_dir)!r} is not a model directory (written by save_model)")
    weights = saved_dir / FUSION_FILE
    if not weights.is_file():
        raise ModelLoadError(f"model directory {str(saved_dir)!r} has no {FUSION_FILE}")
    head, centering = _load_head(config, weights)
    return config, head, centering


def _load_head(config: ModelConfig, path: Path) -> tuple[torch.nn.Module, Centering | None]:
    """The head of ``path`` and, for our safetensors files that hold one, its centring."""
    state: Mapping[str, torch.Tensor]
    centering = None
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        from clasp_ingest.model.hub import readable_weights

        with readable_weights(path):
            state = load_file(str(path))
        extra = {k[len(CENTERING_PREFIX) :]: v for k, v in state.items() if k.startswith(CENTERING_PREFIX)}
        state = {k: v for k, v in state.items() if not k.startswith(CENTERING_PREFIX)}
        if extra:
            centering = centering_from({k: v.float().numpy() for k, v in extra.items()}, config.dim, path)
        check_query_bank(config, centering, path)
    else:
        from clasp_ingest.model.checkpoint import read_official_state_dict

        state = read_official_state_dict(path).state_dict
    _check_finite(state, path)
    fusion = _fresh_fusion(config)
    try:
        fusion.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"fusion weights {str(path)!r} do not fit a {config.fusion.kind} head "
            f"{config.fusion.speech_dim}+{config.fusion.spec_dim}→{config.fusion.out_dim}: {exc}"
        ) from exc
    return fusion, centering


def _check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse a head whose weights hold NaN or infinity (bit rot, a diverged training run): a
    ``ModelLoadError`` naming the file and the tensor, not "the model produced non-finite
    vectors" on every item of every run. A tensor's sum is NaN or infinite when one of its
    values is (or, rarely, when it overflows: then each value is looked at): 2 ms for
    clasp-mini's 27 MB, where ``isfinite`` of every value took 30."""
    for name, value in state.items():
        if not torch.is_floating_point(value) or bool(torch.isfinite(value.sum())):
            continue
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise ModelLoadError(non_finite_message(path, name, bad))


def _fusion_for(
    config: ModelConfig, saved_dir: Path | None, runtime: Runtime
) -> tuple[torch.nn.Module, Centering | None]:
    if saved_dir is not None:
        weights = saved_dir / FUSION_FILE
        if not weights.is_file():
            raise ModelLoadError(f"model directory {str(saved_dir)!r} has no {FUSION_FILE}")
        return _load_head(config, weights)
    if config.weights is None:
        return _fresh_fusion(config, zero_bias=True), None
    from clasp_ingest.model.hub import resolve_file

    return _load_head(config, resolve_file(config.weights, runtime.model_dir))


def load_model(
    name_or_path: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    model_dir: Path | None = None,
    batch_size: int = 8,
) -> ClaspModel:
    """A preset name (``clasp-official``, ``tiny-random``...) or a ``save_model`` directory."""
    config, saved_dir = resolve_model_config(name_or_path)
    runtime = Runtime.resolve(device, dtype, model_dir, batch_size)
    logger.info("loading model %s on %s (%s)", config.model_id, runtime.device, runtime.dtype)
    fusion, centering = _fusion_for(config, saved_dir, runtime)
    speech = build_component("speech", config.speech, runtime)
    if config.fusion.frames and not isinstance(speech, FrameSpeechEncoder):
        raise ModelLoadError(
            f"model {config.model_id!r}: its head pools speech frames (speech_pool "
            f"{config.fusion.speech_pool!r}) but the {config.speech.backend} speech encoder gives none; "
            "use a speech backend with encode_frames (ct2-whisper, hf) or speech_pool 'mean'"
        )
    spectrogram = build_component("spectrogram", config.spectrogram, runtime)
    text = build_component("text", config.text, runtime)
    model = ClaspModel(config, speech, spectrogram, fusion, text, runtime, centering)
    model.source = model_source(name_or_path, saved_dir)
    return model


def set_torch_threads(threads: int | None = None) -> int:
    """Set torch's CPU intra-op threads (process-wide) and return the number.

    ``None`` means one less than the usable cores, at least 1: ingestion decodes and segments
    on a thread beside the embedding, and with one OpenMP worker per core the spinning workers
    starve that thread (on 2 cores a small torch model embedded 3-4x slower). Called where a
    process loads its model (``load_model_from_settings``, the flows' model cache, the demo),
    not inside ``load_model``, so library users keep their own setting.
    """
    if threads is None:
        threads = default_threads()
    if threads < 1:
        raise ValueError(f"torch threads must be >= 1, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def load_model_from_settings(settings: Settings) -> ClaspModel:
    """``load_model`` with the model, device, dtype, model dir and batch size of ``Settings``.

    Also sets torch's CPU threads to ``settings.torch_threads`` (see :func:`set_torch_threads`).
    """
    set_torch_threads(settings.torch_threads)
    return load_model(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        model_dir=settings.model_dir,
        batch_size=settings.embed_batch_size,
    )


def _with_local_top_layers(config: ModelConfig, out_dir: Path) -> ModelConfig:
    """``config`` with its fine-tuned top Whisper layers (a local ``speech.options.top_layers``
    file) copied into ``out_dir`` and named relative to it, so the saved folder is whole and can
    move; package (``pkg://``) and hub sources stay references like the backbones."""
    import shutil
    from dataclasses import replace

    top = local_top_layers(config)
    if top is None:
        return config
    source, target = Path(top).expanduser(), out_dir / TOP_LAYERS_FILE
    if not source.is_file():
        raise ModelLoadError(f"fine-tuned Whisper layers {top!r} do not exist; cannot save the model")
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    options = dict(config.speech.options) | {"top_layers": TOP_LAYERS_FILE}
    return replace(config, speech=replace(config.speech, options=options))


def save_fusion(
    config: ModelConfig, fusion: torch.nn.Module, out_dir: Path, centering: Centering | None = None
) -> Path:
    """Write ``config.json`` (weights → ``fusion.safetensors``) and the head's tensors (+ centring)."""
    from dataclasses import replace

    from safetensors.torch import save_file

    from clasp_ingest.model.assets import new_file_mode

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = replace(
        _with_local_top_layers(config, out_dir),
        weights=FUSION_FILE,
        query_bank=centering is not None and centering.bank is not None,
    )
    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in fusion.state_dict().items()
    }
    if centering is not None:
        state.update(centering.tensors())
    save_file(state, str(out_dir / FUSION_FILE), metadata={"format": "pt", "model_id": config.model_id})
    (out_dir / FUSION_FILE).chmod(new_file_mode())  # safetensors writes 0600; config.json is 0644
    (out_dir / CONFIG_FILE).write_text(config.to_json() + "\n", encoding="utf-8")
    return out_dir


def save_model(model: ClaspModel, out_dir: Path, *, model_id: str | None = None) -> Path:
    """Write ``config.json`` + ``fusion.safetensors`` to ``out_dir`` and return it.

    Backbones are referenced by name in the config, not copied. ``model_id`` renames the
    saved model (a retrained head is a new model: give it a new id).
    """
    from dataclasses import replace

    config = replace(model.config, model_id=model_id or model.config.model_id)
    return save_fusion(config, model.fusion, out_dir, model.centering)
