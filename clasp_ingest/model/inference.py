"""Which engine runs a model for ingestion: ONNX Runtime on the CPU when it can, torch otherwise.

``engine="auto"`` picks ONNX Runtime (:mod:`~clasp_ingest.model.onnx_engine`) for a model it
can run (clasp-mini) when the model runs on the CPU, and torch (:func:`load_model`) for
everything else: GPUs, the official HuBERT/EfficientNet-B7 models, training. Both give the
same vectors (to about 1e-6) except where ONNX Runtime runs clasp-mini's CNN in int8 (cosine to
torch's 0.994 or more; :mod:`~clasp_ingest.model.int8`); ONNX Runtime starts without importing
torch.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Literal

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import AudioTextEncoder
from clasp_ingest.model.config import ModelConfig

__all__ = ["ENGINES", "Engine", "check_runtime", "choose_engine", "load_inference_model", "out_of_memory"]

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
                f"device {device!r}: this machine has {count} CUDA device(s) visible; use the device "
                "cpu (or auto, which takes a GPU when there is one): --device, CLASP_DEVICE, or a "
                "flow's device parameter"
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

    A load that runs out of memory or address space (``ulimit -v``; :func:`out_of_memory`) is
    a :class:`ModelLoadError` naming the model and the remedy, and does not fall back to
    torch (which needs more): before, each item of an ingest failed with ``ImportError:
    libtorch_cpu.so: failed to map segment from shared object``, after a warning that
    suggested ``device='cpu'`` to a model already on the CPU.
    """
    from clasp_ingest.model.query import resolve_model_config

    config, _ = resolve_model_config(name_or_path)
    chosen = choose_engine(config, device, engine)
    try:
        onnx = None
        if chosen == "onnx":
            onnx = _on_onnx(name_or_path, config, engine, model_dir, batch_size, threads)
        if onnx is not None:
            return onnx
        return _on_torch(name_or_path, device, dtype, model_dir, batch_size, threads)
    except (MemoryError, ImportError, OSError, RuntimeError, ModelLoadError) as exc:
        if not out_of_memory(exc):
            raise
        raise ModelLoadError(no_memory_message(config.model_id, exc)) from exc


def _on_onnx(
    name_or_path: str,
    config: ModelConfig,
    engine: str,
    model_dir: Path | None,
    batch_size: int,
    threads: int | None,
) -> AudioTextEncoder | None:
    """The model on ONNX Runtime; None (after a warning) where ``engine="auto"`` may fall back to torch."""
    from clasp_ingest.model.onnx_engine import load_onnx_model

    try:
        return load_onnx_model(name_or_path, model_dir=model_dir, batch_size=batch_size, threads=threads)
    except (ModelLoadError, ImportError) as exc:
        if engine == "onnx" or out_of_memory(exc):
            raise
        logger.warning("ONNX Runtime cannot run %s (%s); using torch", config.model_id, exc)
        return None


def _on_torch(
    name_or_path: str, device: str, dtype: str, model_dir: Path | None, batch_size: int, threads: int | None
) -> AudioTextEncoder:
    from clasp_ingest.model.clasp import load_model, set_torch_threads

    set_torch_threads(threads)
    return load_model(name_or_path, device=device, dtype=dtype, model_dir=model_dir, batch_size=batch_size)


#: What native libraries say when the process has no memory or address space left for them:
#: the dynamic loader (``failed to map segment from shared object``), MKL (``mkl_malloc:
#: failed to allocate memory``), C++ (``std::bad_alloc``), CUDA and torch (``out of memory``).
_NO_MEMORY = ("failed to map segment", "cannot allocate memory", "failed to allocate memory",
              "out of memory", "bad_alloc")  # fmt: skip


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is the process running out of memory
    or address space (not "cannot allocate memory in static TLS block": a loader limit that
    more memory does not lift)."""
    return _memory_cause(exc) is not None


def _memory_cause(exc: BaseException) -> BaseException | None:
    """The error deepest in ``exc``'s chain (its causes, else contexts) that says it is out of
    memory: the library's own words, not a wrapper's remedy for other failures."""
    seen: set[int] = set()
    found: BaseException | None = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        words = [w for w in _NO_MEMORY if w in text]
        # the loader says "failed to map segment" for a library on a noexec mount too: memory
        # only where an address-space limit is set (a venv under a noexec /tmp was "not enough
        # memory")
        if words == ["failed to map segment"] and _address_space_limit() is None:
            words = []
        if (
            isinstance(current, MemoryError)
            or (isinstance(current, OSError) and current.errno == errno.ENOMEM)
            or ("static tls" not in text and words)
        ):
            found = current
        # a cause, else the error it was raised while handling (unless that was suppressed:
        # ``raise ... from None``, where an earlier unrelated error must not decide)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return found


def no_memory_message(model_id: str, exc: BaseException) -> str:
    """The error of a model that could not load for lack of memory: the model, the cause (its
    first line) and the remedy (the ``ulimit -v`` in force, when there is one)."""
    cause = _memory_cause(exc) or exc
    lines = str(cause).strip().splitlines()
    said = f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    if "cuda" in said.lower() and "out of memory" in said.lower():  # not libtorch_cuda.so's mapping
        remedy = "free GPU memory (other processes), or run it on the CPU (--device cpu)"
    else:
        limit = _address_space_limit()
        remedy = (
            f"raise the process's address-space limit (ulimit -v, now {limit} KiB; e.g. ulimit -v unlimited)"
            if limit is not None
            else "free memory (close other programs), or run on a machine with more"
        )
    return f"not enough memory to load model {model_id!r} ({said}); {remedy}"


def _address_space_limit() -> int | None:
    """The process's ``ulimit -v`` in KiB, or None when there is none (or no way to ask)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return None
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if soft == resource.RLIM_INFINITY else soft // 1024
