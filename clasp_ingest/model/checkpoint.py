"""Safe import of the paper's pickled checkpoints.

The release files (``CLASP_Concat_Final_Fusion_Encoder.pt``, ``CLASP_Gating.pt``,
``LASP_Concat.pt``, ``LASP_Gating.pt`` on ``llm-lab/CLASP``) are whole ``nn.Module`` objects
written by ``torch.save(model)`` in a notebook, so the pickle names the classes
``__main__.HubertLabseConcat`` / ``__main__.HubertLabseGating``.

They are read with torch's restricted ``weights_only`` unpickler, which admits only tensor
and storage rebuilds and a few containers, plus exactly the globals allowed here: the
``torch.nn`` layer classes those modules are made of, and the two paper classes mapped onto
inert placeholder modules (their ``__init__``/``forward`` never run). Any other global —
``os.system``, ``builtins.eval``, another class — makes the load fail with
:class:`~clasp_ingest.errors.ModelLoadError` before anything is called. Only the resulting
state dict is used: it is loaded into a fresh :class:`ConcatFusion`/:class:`GatingFusion`.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.config import FusionKind

__all__ = ["ALLOWED_LAYERS", "OfficialCheckpoint", "import_official", "read_official_state_dict"]

logger = get_logger("model.checkpoint")

#: torch.nn classes that the paper's fusion modules are built from.
ALLOWED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.Linear,
    nn.BatchNorm1d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Dropout,
    nn.Sigmoid,
    nn.Tanh,
)


class _PickledConcat(nn.Module):
    """Inert stand-in for the notebook's ``HubertLabseConcat``: receives its pickled state only."""


class _PickledGating(nn.Module):
    """Inert stand-in for the notebook's ``HubertLabseGating``: receives its pickled state only."""


_PAPER_CLASSES: dict[str, type[nn.Module]] = {
    "HubertLabseConcat": _PickledConcat,
    "HubertLabseGating": _PickledGating,
}


@dataclass(frozen=True)
class OfficialCheckpoint:
    """What a paper checkpoint holds: fusion kind, its dimensions, and the state dict."""

    kind: FusionKind
    class_name: str
    speech_dim: int
    spec_dim: int
    out_dim: int
    state_dict: Mapping[str, torch.Tensor]


def _safe_globals() -> list[Any]:
    allowed: list[Any] = list(ALLOWED_LAYERS)
    allowed.append(set)  # nn.Module pickles its ``_non_persistent_buffers_set``
    for name, stand_in in _PAPER_CLASSES.items():
        allowed.append((stand_in, f"__main__.{name}"))
    return allowed


def _unpickle(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Detected pickle protocol 4 ...": ours to say
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickling_detail(exc)
        if "GLOBAL" not in detail and "global" not in detail:  # an opcode torch.save never writes
            raise ModelLoadError(
                f"cannot read {str(path)!r}: it is not a PyTorch checkpoint ({detail}); the paper's "
                "weights are files torch.save wrote (.pt/.pkl), e.g. those of llm-lab/CLASP"
            ) from None
        raise ModelLoadError(
            f"refusing to load {str(path)!r}: it needs something a fusion checkpoint never contains "
            f"({detail}); only tensors, torch.nn layers and the paper's HubertLabseConcat/HubertLabseGating "
            f"are allowed. Do not load this file with plain torch.load"
        ) from None
    except (EOFError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # an empty file (EOFError with no message), or bytes the unpickler reads as opcodes it
        # then trips over (text starting with 'h' or 'j': KeyError 101)
        raise ModelLoadError(
            f"cannot read {str(path)!r}: it is not a PyTorch checkpoint (empty, cut short or another "
            f"kind of file: {type(exc).__name__}); the paper's weights are files torch.save wrote "
            "(.pt/.pkl), e.g. those of llm-lab/CLASP"
        ) from None
    except (OSError, RuntimeError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read checkpoint {str(path)!r}: it is cut short, damaged or not a PyTorch checkpoint "
            f"({_first_sentence(exc)}); download or copy it again"
        ) from exc


def _first_sentence(exc: BaseException) -> str:
    """The reader's own words, up to their first full stop (torch appends paragraphs of advice)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.removeprefix("[enforce fail at inline_container.cc:180] . ")
    end = text.find(". ")
    return text if end < 0 else text[:end]


def _unpickling_detail(exc: pickle.UnpicklingError) -> str:
    """What torch's safe unpickler refused (e.g. "Unsupported operand 149", "Trying to load
    unsupported GLOBAL posix.system ..."), without its advice to load the file unsafely."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [
        line
        for line in lines
        if not line.startswith(
            ("Weights only load failed", "Please file an issue", "Check the documentation")
        )
        and "weights_only" not in line
    ]
    detail = kept[0] if kept else type(exc).__name__
    return detail.split(" Please use `torch.serialization.add_safe_globals", 1)[0]  # not advice to follow


def _kind_of(obj: Any, state: Mapping[str, torch.Tensor], path: Path) -> tuple[FusionKind, str]:
    if isinstance(obj, _PickledConcat):
        return "concat", "HubertLabseConcat"
    if isinstance(obj, _PickledGating):
        return "gating", "HubertLabseGating"
    if "audio_seq.0.weight" in state and "mix_seq.0.weight" in state:
        return "concat", "state_dict"
    if "text_seq.0.weight" in state and "weight.0.weight" in state:
        return "gating", "state_dict"
    raise ModelLoadError(
        f"{str(path)!r} holds a {type(obj).__name__} that is neither HubertLabseConcat, HubertLabseGating "
        "nor a state dict of one: it is not a CLASP fusion checkpoint; import the paper's .pt/.pkl "
        "files (e.g. those of llm-lab/CLASP)"
    )


def _state_of(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return {k: v.detach().clone() for k, v in obj.state_dict().items()}
    if isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {str(k): v for k, v in obj.items()}
    return {}


def read_official_state_dict(path: Path) -> OfficialCheckpoint:
    """Read a paper checkpoint (pickled module or state dict) without executing its code."""
    obj = _unpickle(Path(path))
    state = _state_of(obj)
    kind, class_name = _kind_of(obj, state, Path(path))
    speech_key = "audio_seq.0.weight" if kind == "concat" else "text_seq.0.weight"
    try:
        out_dim, speech_dim = state[speech_key].shape
        spec_dim = state["image_seq.0.weight"].shape[1]
    except (KeyError, ValueError) as exc:
        raise ModelLoadError(f"checkpoint {str(path)!r} lacks the {kind} fusion layers: {exc}") from exc
    return OfficialCheckpoint(kind, class_name, int(speech_dim), int(spec_dim), int(out_dim), state)


def _preset_for(path: Path, kind: FusionKind) -> str:
    from clasp_ingest.model.presets import _OFFICIAL_FILES

    for name, (preset_kind, filename) in _OFFICIAL_FILES.items():
        if path.name == filename and preset_kind == kind:
            return name
    return "clasp-official" if kind == "concat" else "clasp-official-gating"


def import_official(
    path: Path, out_dir: Path, *, preset: str | None = None, model_id: str | None = None
) -> Path:
    """Convert a paper ``.pt`` to ``fusion.safetensors`` + ``config.json`` in ``out_dir``.

    The config is the matching official preset (by file name, else by fusion kind, or
    ``preset``) with the dimensions found in the checkpoint.
    """
    from dataclasses import replace

    from clasp_ingest.model.clasp import load_fusion_weights, save_fusion
    from clasp_ingest.model.config import saved_model_files
    from clasp_ingest.model.presets import get_preset

    path = Path(path)
    held = saved_model_files(Path(out_dir))
    if held:
        raise ConfigError(
            f"{str(out_dir)!r} holds a model already ({', '.join(held)}); choose another --out, or "
            "delete that folder first"
        )
    ckpt = read_official_state_dict(path)
    base = get_preset(preset or _preset_for(path, ckpt.kind))
    if base.fusion.kind != ckpt.kind:
        raise ModelLoadError(
            f"{str(path)!r} is a {ckpt.kind} head but preset {base.model_id!r} uses {base.fusion.kind}; "
            "pick a matching --preset"
        )
    config = replace(base, model_id=model_id or base.model_id, weights=None)
    if (ckpt.speech_dim, ckpt.spec_dim, ckpt.out_dim) != (
        config.fusion.speech_dim,
        config.fusion.spec_dim,
        config.fusion.out_dim,
    ):
        raise ModelLoadError(
            f"{str(path)!r} maps {ckpt.speech_dim}+{ckpt.spec_dim}→{ckpt.out_dim} but preset "
            f"{base.model_id!r} expects {config.fusion.speech_dim}+{config.fusion.spec_dim}→"
            f"{config.fusion.out_dim}; pick a matching --preset"
        )
    fusion = load_fusion_weights(config, path)
    logger.info("imported %s (%s) from %s", config.model_id, ckpt.class_name, path)
    return save_fusion(config, fusion, Path(out_dir))
