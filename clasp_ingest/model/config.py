"""Model configuration as data: which backends, which sources, which dimensions.

A :class:`ModelConfig` is what a preset is and what ``config.json`` of a saved model holds.
It is plain data (JSON round trip, no torch import) so ``clasp-ingest models list`` and the
CLI ``--help`` stay fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clasp_ingest.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "FUSION_FILE",
    "ComponentSpec",
    "FusionKind",
    "FusionSpec",
    "ModelConfig",
    "Runtime",
    "SpeechPool",
    "saved_model_files",
]

#: File names inside a directory written by ``save_model``.
CONFIG_FILE = "config.json"
FUSION_FILE = "fusion.safetensors"
#: Fine-tuned top Whisper encoder layers saved beside a head (``speech.options.top_layers``).
TOP_LAYERS_FILE = "whisper_top.safetensors"


def saved_model_files(folder: Path) -> list[str]:
    """The files of a saved model already in ``folder`` (what ``models import`` and ``train``
    refuse to write over)."""
    return [name for name in (CONFIG_FILE, FUSION_FILE, TOP_LAYERS_FILE) if (folder / name).exists()]


FusionKind = Literal["concat", "gating"]
_FUSION_KINDS = ("concat", "gating")
SpeechPool = Literal["mean", "attention"]
_SPEECH_POOLS = ("mean", "attention")
_DTYPES = ("auto", "fp32", "fp16", "bf16")
#: Generous bounds on sizes a config.json (which may come from anyone) sets: vector widths
#: and frame widths (today's encoders give 384-2560), heads run side by side, pool queries.
MAX_DIM = 16_384
MAX_ENSEMBLE = 64
MAX_POOL_QUERIES = 256


def _check_range(field: str, value: int, high: int) -> None:
    if not 1 <= value <= high:
        raise ConfigError(f"{field} must be between 1 and {high}, got {value}")


def _whole(data: Mapping[str, Any], key: str, where: str = "", default: int | None = None) -> int:
    """An integer field of a config (``default`` when it may be left out): ``Infinity``, which
    Python's json reads, or NaN is a ``ConfigError`` naming the field, not an ``OverflowError``."""
    value = data[key] if default is None else data.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}{key} must be a whole number, got {value!r}") from None


def _finite(value: Any, where: str) -> Any:
    """``value`` (a component's options, read from a config), every number in it checked:
    ``NaN`` or ``Infinity`` (which Python's json reads, as it reads ``1e999``) is a
    ``ConfigError`` naming the option. A NaN ``std`` of a spectrogram image passed every check,
    then the ONNX export was said to "differ from torch" and every item failed on NaN vectors."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _finite(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _finite(item, f"{where}[{i}]")
    return value


def _flag(data: Mapping[str, Any], key: str, default: bool, where: str = "") -> bool:
    """A true/false field of a config: a string such as ``"false"`` is refused, not read as true."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}{key} must be true or false, got {value!r}")
    return value


@dataclass(frozen=True)
class ComponentSpec:
    """One branch or the text encoder: a backend name, the model it loads, its output size.

    ``backend`` is a registered short name (see ``clasp_ingest.model.backends``) or an import
    path ``"package.module:function"`` of a factory ``(spec, runtime) -> encoder``.
    ``source`` is what the backend loads (a hub id, a local path, a timm model name...).
    """

    backend: str
    source: str
    dim: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.backend:
            raise ConfigError("ComponentSpec.backend must not be empty")
        if self.dim <= 0:
            raise ConfigError(f"component {self.backend}:{self.source} needs dim > 0, got {self.dim}")
        _check_range(f"component {self.backend}:{self.source} dim", self.dim, MAX_DIM)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "source": self.source,
            "dim": self.dim,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "") -> ComponentSpec:
        """From ``to_dict``'s form; ``where`` (e.g. ``"speech."``) prefixes the fields errors name."""
        return cls(
            str(data["backend"]),
            str(data.get("source", "")),
            _whole(data, "dim", where),
            _finite(dict(data.get("options", {})), f"{where}options"),
        )


@dataclass(frozen=True)
class FusionSpec:
    """The fusion head: kind, its three dimensions (hidden sizes follow from ``out_dim``),
    whether branch features are L2-normalised first (as the paper's data was), and how the
    speech encoder's frames become one vector.

    ``speech_pool``: ``"mean"`` (the paper; the speech encoder pools) or ``"attention"``: the
    head takes the encoder's frames and pools them itself with ``pool_queries`` learned
    queries (:class:`~clasp_ingest.model.fusion.AttentionPool`), trained with the head.
    ``speech_dim`` is the encoder's frame width either way.

    ``ensemble``: how many such heads the model runs side by side, their unit outputs summed
    (:class:`~clasp_ingest.model.fusion.EnsembleFusion`; made from trained heads by
    ``python -m clasp_ingest.training.average --ensemble``).
    """

    kind: FusionKind
    speech_dim: int
    spec_dim: int
    out_dim: int
    normalize_inputs: bool = True
    speech_pool: SpeechPool = "mean"
    pool_queries: int = 4
    ensemble: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _FUSION_KINDS:
            raise ConfigError(f"fusion kind {self.kind!r} is unknown; use one of {_FUSION_KINDS}")
        if min(self.speech_dim, self.spec_dim, self.out_dim) <= 0:
            raise ConfigError(f"fusion dimensions must be > 0, got {self}")
        for name in ("speech_dim", "spec_dim", "out_dim"):
            _check_range(f"fusion.{name}", getattr(self, name), MAX_DIM)
        if self.speech_pool not in _SPEECH_POOLS:
            raise ConfigError(f"speech pool {self.speech_pool!r} is unknown; use one of {_SPEECH_POOLS}")
        if self.pool_queries < 1:
            raise ConfigError(f"pool_queries must be >= 1, got {self.pool_queries}")
        if self.ensemble < 1:
            raise ConfigError(f"ensemble must be >= 1, got {self.ensemble}")
        _check_range("fusion.pool_queries", self.pool_queries, MAX_POOL_QUERIES)
        _check_range("fusion.ensemble", self.ensemble, MAX_ENSEMBLE)

    @property
    def frames(self) -> bool:
        """Whether the head takes speech frames (and pools them) instead of pooled vectors."""
        return self.speech_pool != "mean"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "speech_dim": self.speech_dim,
            "spec_dim": self.spec_dim,
            "out_dim": self.out_dim,
            "normalize_inputs": self.normalize_inputs,
        }
        if self.frames:  # mean-pooled configs stay as they were written before the option
            data.update(speech_pool=self.speech_pool, pool_queries=self.pool_queries)
        if self.ensemble > 1:
            data["ensemble"] = self.ensemble
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionSpec:
        return cls(
            data["kind"],
            _whole(data, "speech_dim", "fusion."),
            _whole(data, "spec_dim", "fusion."),
            _whole(data, "out_dim", "fusion."),
            _flag(data, "normalize_inputs", True, "fusion."),
            data.get("speech_pool", "mean"),
            _whole(data, "pool_queries", "fusion.", 4),
            _whole(data, "ensemble", "fusion.", 1),
        )


@dataclass(frozen=True)
class ModelConfig:
    """A whole CLASP model: two audio branches, a fusion head, the frozen text encoder.

    ``weights`` says where the fusion head's trained weights come from: a file source
    (``hf://repo/file``, a local path, ``pkg://package/relative/path``), or ``None`` for a
    seeded random head (``seed``), which only ``tiny-random`` and fresh training runs use.

    ``query_bank``: the weights carry a query bank (hubness correction,
    :class:`~clasp_ingest.model.clasp.QueryBank`), which adds one coordinate to the vectors:
    ``vector_dim`` is then ``dim + 1``.

    ``searches``: ids of older models whose collections this model's queries search exactly
    (the same text side: encoder, centring, language basis and bank scale; e.g. clasp-mini
    v1.1, which changed only the clips' bank penalty, searches v1's). Adding to such a
    collection stays refused: its audio vectors differ.
    """

    model_id: str
    speech: ComponentSpec
    spectrogram: ComponentSpec
    fusion: FusionSpec
    text: ComponentSpec
    weights: str | None = None
    seed: int = 0
    description: str = ""
    query_bank: bool = False
    searches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.model_id:
            raise ConfigError("ModelConfig.model_id must not be empty")
        if self.model_id.startswith(".") or any(c in "/\\" or ord(c) < 32 for c in self.model_id):
            raise ConfigError(
                f"model id {self.model_id!r} is not one plain name (it names cache folders): no '/', "
                "'\\' or control characters, not starting with '.'; fix the model's config.json"
            )
        pairs = (
            ("speech", self.speech.dim, self.fusion.speech_dim),
            ("spectrogram", self.spectrogram.dim, self.fusion.spec_dim),
            ("text", self.text.dim, self.fusion.out_dim),
        )
        for what, have, fused in pairs:
            if have != fused:
                raise ConfigError(
                    f"model {self.model_id!r}: the {what} encoder gives {have}-d vectors but the fusion "
                    f"head expects {fused}-d; make the dimensions agree"
                )

    @property
    def dim(self) -> int:
        """The text encoder's width, which the head maps into."""
        return self.fusion.out_dim

    @property
    def vector_dim(self) -> int:
        """The width of the model's vectors (what a collection stores)."""
        return self.dim + int(self.query_bank)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model_id": self.model_id,
            "speech": self.speech.to_dict(),
            "spectrogram": self.spectrogram.to_dict(),
            "fusion": self.fusion.to_dict(),
            "text": self.text.to_dict(),
            "weights": self.weights,
            "seed": self.seed,
            "description": self.description,
        }
        if self.query_bank:  # configs without one stay as they were written before the option
            data["query_bank"] = True
        if self.searches:
            data["searches"] = list(self.searches)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        try:
            return cls(
                model_id=str(data["model_id"]),
                speech=ComponentSpec.from_dict(data["speech"], "speech."),
                spectrogram=ComponentSpec.from_dict(data["spectrogram"], "spectrogram."),
                fusion=FusionSpec.from_dict(data["fusion"]),
                text=ComponentSpec.from_dict(data["text"], "text."),
                weights=data.get("weights"),
                seed=_whole(data, "seed", default=0),
                description=str(data.get("description", "")),
                query_bank=_flag(data, "query_bank", False),
                searches=tuple(str(model_id) for model_id in data.get("searches", ())),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"invalid model config: missing or malformed field {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> ModelConfig:
        """The config in ``path`` (a model folder's ``config.json``, or a preset file); the
        folder's weights, if something is there, must be regular files."""
        from clasp_ingest.model.hub import check_regular_file

        for file in (path, path.parent / FUSION_FILE, path.parent / TOP_LAYERS_FILE):
            check_regular_file(file, "copy the model folder again")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read model config {str(path)!r}: {exc}") from exc
        try:
            config = cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"model config {str(path)!r}: {exc}") from None
        from clasp_ingest.model.backends import check_backend

        for part, spec in (
            ("speech", config.speech),
            ("spectrogram", config.spectrogram),
            ("text", config.text),
        ):
            try:
                factory = check_backend(part, spec.backend, model_dir=path.parent)  # type: ignore[arg-type]
                _check_options(factory, spec)
            except ConfigError as exc:
                raise ConfigError(f"model config {str(path)!r}: {exc}") from None
        return config


def _check_options(factory: str, spec: ComponentSpec) -> None:
    """Check the options of a backend that says which it takes, when the config is read: a bad
    one then stops a run once, naming the file, not each item when the model is built."""
    if factory == "clasp_ingest.model.whisper_ct2:build_speech":
        from clasp_ingest.model.whisper_ct2 import check_speech_options

        check_speech_options(spec.options)


@dataclass(frozen=True)
class Runtime:
    """Where and how backbones run: resolved device and dtype, local model directory, batch size."""

    device: str = "cpu"
    dtype: str = "fp32"
    model_dir: Path | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES[1:]:
            raise ConfigError(f"dtype {self.dtype!r} is unknown; use one of {_DTYPES}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")

    @classmethod
    def resolve(
        cls, device: str = "auto", dtype: str = "auto", model_dir: Path | None = None, batch_size: int = 8
    ) -> Runtime:
        """Turn ``auto`` into a concrete device (CUDA when present) and dtype (fp32 CPU, bf16 GPU)."""
        if dtype not in _DTYPES:
            raise ConfigError(f"dtype {dtype!r} is unknown; use one of {_DTYPES}")
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "fp32" if device == "cpu" else "bf16"
        if device == "cpu" and dtype != "fp32":
            raise ConfigError(f"dtype {dtype!r} on the CPU is not supported; use dtype='fp32' or 'auto'")
        return cls(device=device, dtype=dtype, model_dir=model_dir, batch_size=batch_size)

    def torch_dtype(self) -> Any:
        import torch

        return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]
