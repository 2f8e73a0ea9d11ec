"""Backend registry: short names → factories ``(spec: ComponentSpec, runtime: Runtime) -> encoder``.

Factories are named by import path and imported only when a model is built, so listing
presets never imports torch. A preset may also name a factory directly as
``"package.module:function"`` in a component's ``backend`` field; that is how new backbones
plug in without touching this table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Literal

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = ["BACKENDS", "Part", "build_component", "resolve_factory"]

Part = Literal["speech", "spectrogram", "text"]

#: (part, short name) → "module:function".
BACKENDS: dict[tuple[str, str], str] = {
    ("speech", "hf"): "clasp_ingest.model.speech:build_hf_speech",
    ("speech", "tiny-hubert"): "clasp_ingest.model.tiny:build_tiny_hubert",
    ("speech", "ct2-whisper"): "clasp_ingest.model.whisper_ct2:build_speech",
    ("spectrogram", "native"): "clasp_ingest.model.spectrogram:build_native_spectrogram",
    ("spectrogram", "reference"): "clasp_ingest.model.reference:build_reference_spectrogram",
    ("text", "sentence-transformers"): "clasp_ingest.model.text:build_sentence_transformer",
    ("text", "tiny-bert"): "clasp_ingest.model.tiny:build_tiny_text",
}


def resolve_factory(part: Part, backend: str) -> Callable[[ComponentSpec, Runtime], Any]:
    """Import the factory of a backend (short name or ``module:function``)."""
    target = BACKENDS.get((part, backend), backend)
    module_name, sep, attr = target.partition(":")
    if not sep:
        known = sorted(name for p, name in BACKENDS if p == part)
        raise ConfigError(f"{part} backend {backend!r} is unknown; use one of {known} or 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"{part} backend {backend!r} needs module {module_name!r}, which cannot be imported: {exc}"
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"{part} backend {backend!r}: {module_name} has no function {attr!r}")
    return factory


def build_component(part: Part, spec: ComponentSpec, runtime: Runtime) -> Any:
    """Build one branch or the text encoder and check its output size against the spec."""
    encoder = resolve_factory(part, spec.backend)(spec, runtime)
    if int(encoder.dim) != spec.dim:
        raise ModelLoadError(
            f"{part} backend {spec.backend!r} ({spec.source}) gives {encoder.dim}-d vectors, the config "
            f"says {spec.dim}; fix the config"
        )
    return encoder
