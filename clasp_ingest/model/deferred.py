"""A model whose weights load in the background while the first media decode.

The command line knows which model it will use before it knows whether there is work: a
:class:`DeferredModel` reads the config at once (model id and vector width, enough to check
the collection and skip unchanged items) and loads the weights only when :meth:`preload` is
called, on a background thread, so decoding and segmenting the first item overlap with
importing torch and building the backbones. The first ``encode_audio`` waits for the load.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.query import model_source, resolve_model_config

if TYPE_CHECKING:
    from clasp_ingest.model.base import AudioTextEncoder

__all__ = ["DeferredModel"]

logger = get_logger("model.deferred")


class DeferredModel:
    """An ``AudioTextEncoder`` (and ``Preloadable``) over
    :func:`~clasp_ingest.model.inference.load_inference_model` (ONNX Runtime or torch).

    ``source`` is what it loads: the preset name, or the model directory as an absolute path
    (collections record it, so a search can load the same model).
    """

    def __init__(
        self,
        name_or_path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        model_dir: Path | None = None,
        batch_size: int = 8,
        threads: int | None = None,
        engine: str = "auto",
    ) -> None:
        from clasp_ingest.model.inference import check_runtime

        check_runtime(device, engine)
        self.config, saved_dir = resolve_model_config(name_or_path)
        self.source = model_source(name_or_path, saved_dir)
        self._options = {"device": device, "dtype": dtype, "model_dir": model_dir, "batch_size": batch_size,
                         "threads": threads, "engine": engine}  # fmt: skip
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._model: AudioTextEncoder | None = None
        self._error: BaseException | None = None

    @property
    def model_id(self) -> str:
        return self.config.model_id

    @property
    def dim(self) -> int:
        return self.config.vector_dim

    def preload(self) -> None:
        """Start loading the weights on a background thread (once; returns at once).

        The thread is not a daemon: a run that ends while the weights still load (every item
        failed to decode at once) waits for the load before the interpreter exits. A daemon
        thread left inside a native constructor (ONNX Runtime, CTranslate2) when the process
        tears down aborts it ("terminate called without an active exception", exit -6).
        """
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._load, name="clasp-model-load", daemon=False)
                self._thread.start()

    def _load(self) -> None:
        from clasp_ingest.model.inference import load_inference_model

        try:
            model = load_inference_model(self.source, **self._options)  # type: ignore[arg-type]
            if (model.model_id, model.dim) != (self.model_id, self.dim):
                raise ModelLoadError(
                    f"model {self.source!r} loaded as {model.model_id!r} ({model.dim}-d) but its config "
                    f"says {self.model_id!r} ({self.dim}-d); fix its config.json"
                )
            self._model = model
        except BaseException as exc:  # re-raised in the thread that uses the model
            self._error = exc

    def settle(self) -> None:
        """Wait for a load that was started to end; its error, if any, stays for the first use.

        A command calls it before it returns when no item needed the model (all failed or
        were unchanged): a load still running once the interpreter tears down cannot start
        threads (the one-time ONNX export fails with "cannot schedule new futures after
        interpreter shutdown"), so it would warn, fall back to torch and cache nothing.
        """
        thread = self._thread
        if thread is not None:
            thread.join()

    def loaded(self) -> AudioTextEncoder:
        """The loaded model (starts the load if needed and waits for it)."""
        self.preload()
        assert self._thread is not None  # set by preload
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._model is None:  # pragma: no cover - _load sets one or the other
            raise ModelLoadError(f"model {self.source!r} did not load")
        return self._model

    def query_sample(self) -> np.ndarray | None:
        """The model's query bank as query vectors, read from its weights file without loading
        the model (:func:`~clasp_ingest.model.query.query_sample`)."""
        from clasp_ingest.model.query import query_sample

        return query_sample(self.source, model_dir=self._options["model_dir"])  # type: ignore[arg-type]

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        return self.loaded().encode_audio(waveforms)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.loaded().encode_text(texts)

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "loading" if self._thread else "not loaded"
        return f"DeferredModel({self.source!r}, {state})"
