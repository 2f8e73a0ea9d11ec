"""Presets: named :class:`ModelConfig` values (data only; building happens in ``load_model``).

Built-in presets are defined here. More presets plug in as JSON files (a ``ModelConfig``
dict) placed in ``clasp_ingest/model/preset_files/`` — e.g. ``clasp-mini.json`` — found at
lookup time, so adding one touches no Python code. A JSON preset is named by its file name;
its ``model_id`` may add a version (``clasp-mini`` → ``clasp-mini-v1``), and since a
collection records the model id of its vectors, a collection made with an older head is
refused rather than mixed with the new head's vectors.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from clasp_ingest.errors import ConfigError
from clasp_ingest.model.config import ComponentSpec, FusionSpec, ModelConfig

__all__ = ["PRESETS", "get_preset", "list_presets"]

OFFICIAL_REPO = "llm-lab/CLASP"
HUBERT_LARGE = "facebook/hubert-large-ls960-ft"
LABSE = "sentence-transformers/LaBSE"

_OFFICIAL_FILES = {
    "clasp-official": ("concat", "CLASP_Concat_Final_Fusion_Encoder.pt"),
    "clasp-official-gating": ("gating", "CLASP_Gating.pt"),
    "lasp-official": ("concat", "LASP_Concat.pt"),
    "lasp-official-gating": ("gating", "LASP_Gating.pt"),
}


def _official(name: str) -> ModelConfig:
    kind, filename = _OFFICIAL_FILES[name]
    return ModelConfig(
        model_id=name,
        speech=ComponentSpec("hf", HUBERT_LARGE, 1024, {"normalize": True}),
        spectrogram=ComponentSpec("reference", "efficientnet_b7", 1000, {"weights": "IMAGENET1K_V1"}),
        fusion=FusionSpec(kind, 1024, 1000, 768),  # type: ignore[arg-type]
        text=ComponentSpec("sentence-transformers", LABSE, 768),
        weights=f"hf://{OFFICIAL_REPO}/{filename}",
        description=f"paper release {filename}: HuBERT-large + reference EfficientNet-B7 → LaBSE, {kind}",
    )


def _tiny_random() -> ModelConfig:
    return ModelConfig(
        model_id="tiny-random",
        speech=ComponentSpec("tiny-hubert", "tiny-random", 32, {"seed": 0}),
        spectrogram=ComponentSpec(
            "native", "test_efficientnet", 256, {"seed": 0, "n_mels": 32, "image_size": [64, 64]}
        ),
        fusion=FusionSpec("concat", 32, 256, 32),
        text=ComponentSpec("tiny-bert", "tiny-random", 32, {"seed": 0}),
        weights=None,
        seed=0,
        description="tiny random backbones and head, built in memory; tests only",
    )


#: Built-in presets by name.
PRESETS: dict[str, ModelConfig] = {name: _official(name) for name in _OFFICIAL_FILES}
PRESETS["tiny-random"] = _tiny_random()


def _json_presets() -> dict[str, ModelConfig]:
    folder = Path(str(resources.files("clasp_ingest.model").joinpath("preset_files")))
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob("*.json")):
        found[path.stem] = ModelConfig.from_file(path)
    return found


def list_presets() -> dict[str, ModelConfig]:
    """Every preset: built-ins and JSON presets shipped in the package."""
    return {**PRESETS, **_json_presets()}


def get_preset(name: str) -> ModelConfig:
    presets = list_presets()
    if name not in presets:
        raise ConfigError(
            f"model {name!r} is neither a preset ({', '.join(sorted(presets))}) nor a model directory; "
            "name a preset (clasp-ingest models list) or the folder of a trained model"
        )
    return presets[name]
