"""Which engine runs a model for ingestion: ONNX Runtime on the CPU when it can, torch otherwise.

``engine="auto"`` picks ONNX Runtime (:mod:`~clasp_ingest.model.onnx_engine`) for a model it
can run (clasp-mini) when the model runs on the CPU, and torch (:func:`load_model`) for
everything else: GPUs, the official HuBERT/EfficientNet-B7 models, training. Both give the
same vectors (to about 1e-6) except where ONNX Runtime runs clasp-mini's CNN in int8 (cosine to
torch's 0.994 or more; :mod:`~clasp_ingest.model.int8`); ONNX Runtime starts without importing
torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.model.config import ModelConfig

__all__ = ["ENGINES", "Engine", "check_runtime", "choose_engine", "load_inference_model"]

logger = get_logger("model.inference")

Engine = Literal["auto", "torch", "onnx"]
ENGINES: tuple[str, ...] = ("auto", "torch", "onnx")


def _cuda_count() -> int:
    """CUDA devices visible, asked of CTranslate2 (cheap) rather than torch (seconds)."""
    try:
        import ctranslate2
    except ImportError:  # pragma: no cover - a core dependency
        return 0
    return int(ctranslate2.get_cuda_device_count())


def _cuda_present() -> bool:
    return _cuda_count() > 0


def check_runtime(device: str, engine: str = "auto") -> None:
    """Refuse an unknown device or engine, or a CUDA device this machine lacks, before any work
    (a run would otherwise fail on every item, after ``--recreate`` had dropped the collection)."""
    from clasp_ingest.config import is_device

    if not is_device(device):
        raise ConfigError(
            f"device {device!r} is unknown; use 'auto', 'cpu', 'cuda' or 'cuda:N' (--device, CLASP_DEVICE)"
        )
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is unknown; use one of {', '.join(ENGINES)} (CLASP_ENGINE)")
    if device.startswith("cuda"):
        count = _cuda_count()
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(
                f"device {device!r}: this machine has {count} CUDA device(s) visible; use --device cpu "
                "(or auto, which takes a GPU when there is one)"
            )


def choose_engine(config: ModelConfig, device: str, engine: str) -> str:
    """``"onnx"`` or ``"torch"`` for this model, device and requested engine."""
    from clasp_ingest.model.onnx_engine import onnx_capable

    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is unknown; use one of {ENGINES}")
    if engine == "onnx":
        if device not in ("auto", "cpu"):
            raise ConfigError(f"the onnx engine runs on the CPU only, not on {device!r}; use --device cpu")
        return "onnx"
    if engine == "torch" or not onnx_capable(config):
        return "torch"
    on_cpu = device == "cpu" or (device == "auto" and not _cuda_present())
    return "onnx" if on_cpu else "torch"


def load_inference_model(
    name_or_path: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    model_dir: Path | None = None,
    batch_size: int = 8,
    threads: int | None = None,
    engine: str = "auto",
) -> AudioTextEncoder:
    """A preset or saved model ready to embed audio, on the engine :func:`choose_engine` picks.

    ``threads``: CPU threads for torch or ONNX Runtime (default one less than the usable
    cores). With ``engine="auto"``, a failed ONNX export falls back to torch with a warning.
    """
    from clasp_ingest.model.query import resolve_model_config

    config, _ = resolve_model_config(name_or_path)
    chosen = choose_engine(config, device, engine)
    if chosen == "onnx":
        from clasp_ingest.model.onnx_engine import load_onnx_model

        try:
            return load_onnx_model(name_or_path, model_dir=model_dir, batch_size=batch_size, threads=threads)
        except (ModelLoadError, ImportError) as exc:
            if engine == "onnx":
                raise
            logger.warning("ONNX Runtime cannot run %s (%s); using torch", config.model_id, exc)
    from clasp_ingest.model.clasp import load_model, set_torch_threads

    set_torch_threads(threads)
    return load_model(name_or_path, device=device, dtype=dtype, model_dir=model_dir, batch_size=batch_size)
