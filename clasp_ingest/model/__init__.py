"""CLASP models: speech + spectrogram branches fused into a frozen text encoder's space.

Importing this package is light (no torch): ``load_model``, ``ClaspModel``, ``save_model``
and the fusion classes are imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clasp_ingest.model.base import (
    SAMPLE_RATE,
    AudioTextEncoder,
    QueryEncoder,
    SpectrogramEncoder,
    SpeechEncoder,
    TextEncoder,
)
from clasp_ingest.model.config import ComponentSpec, FusionSpec, ModelConfig, Runtime
from clasp_ingest.model.presets import PRESETS, get_preset, list_presets

if TYPE_CHECKING:
    from clasp_ingest.model.checkpoint import import_official
    from clasp_ingest.model.clasp import (
        ClaspModel,
        load_model,
        load_model_from_settings,
        save_model,
        set_torch_threads,
    )
    from clasp_ingest.model.fusion import ConcatFusion, GatingFusion, build_fusion
    from clasp_ingest.model.query import QueryModel, load_query_model

__all__ = [
    "PRESETS",
    "SAMPLE_RATE",
    "AudioTextEncoder",
    "ClaspModel",
    "ComponentSpec",
    "ConcatFusion",
    "FusionSpec",
    "GatingFusion",
    "ModelConfig",
    "QueryEncoder",
    "QueryModel",
    "Runtime",
    "SpectrogramEncoder",
    "SpeechEncoder",
    "TextEncoder",
    "build_fusion",
    "get_preset",
    "import_official",
    "list_presets",
    "load_model",
    "load_model_from_settings",
    "load_query_model",
    "save_model",
    "set_torch_threads",
]

_LAZY = {
    "ClaspModel": "clasp_ingest.model.clasp",
    "load_model": "clasp_ingest.model.clasp",
    "load_model_from_settings": "clasp_ingest.model.clasp",
    "set_torch_threads": "clasp_ingest.model.clasp",
    "save_model": "clasp_ingest.model.clasp",
    "ConcatFusion": "clasp_ingest.model.fusion",
    "GatingFusion": "clasp_ingest.model.fusion",
    "build_fusion": "clasp_ingest.model.fusion",
    "import_official": "clasp_ingest.model.checkpoint",
    "QueryModel": "clasp_ingest.model.query",
    "load_query_model": "clasp_ingest.model.query",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
