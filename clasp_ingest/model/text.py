"""Frozen text encoders whose space the fusion head targets.

* ``sentence-transformers``: any SentenceTransformer model (LaBSE,
  paraphrase-xlm-r-multilingual-v1...) with its own pooling and normalisation modules.
* ``HFMeanTextEncoder``: a transformers encoder + tokenizer, mean-pooled over real tokens
  (what sentence-transformers does for a plain model); ``tiny-random`` uses it.

Other encoders plug in through a backend factory returning anything with ``dim`` and
``encode(texts) -> (n, dim)`` (the ``TextEncoder`` protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clasp_ingest.errors import ModelLoadError
from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = ["HFMeanTextEncoder", "SentenceTransformerText", "build_sentence_transformer"]


def _st_dim(model: Any) -> int:
    # sentence-transformers 6 renamed get_sentence_embedding_dimension → get_embedding_dimension
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


class SentenceTransformerText:
    """``TextEncoder`` over a ``sentence_transformers.SentenceTransformer``."""

    def __init__(self, model: Any, batch_size: int = 32) -> None:
        self.model = model.eval()
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return _st_dim(self.model)

    @property
    def max_tokens(self) -> int:
        """The model's ``max_seq_length`` (sentence-transformers cuts longer texts silently)."""
        return int(self.model.max_seq_length)

    def token_count(self, text: str) -> int:
        return len(self.model.tokenizer(text, verbose=False)["input_ids"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


class HFMeanTextEncoder:
    """``TextEncoder``: transformers model, attention-masked mean pooling, L2 normalisation."""

    def __init__(self, model: Any, tokenizer: Any, runtime: Runtime, max_length: int = 128) -> None:
        self.device = torch.device(runtime.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = runtime.batch_size

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_tokens(self) -> int:
        return self.max_length

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, verbose=False)["input_ids"])

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            enc = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            enc = {k: v.to(self.device) for k, v in enc.items()}
            hidden = self.model(**enc).last_hidden_state.to(torch.float32)
            mask = enc["attention_mask"].unsqueeze(-1).to(torch.float32)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[start : start + len(chunk)] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out


def build_sentence_transformer(spec: ComponentSpec, runtime: Runtime) -> SentenceTransformerText:
    """Backend ``sentence-transformers``: local dir (``model_dir``), the HF cache or the hub."""
    from sentence_transformers import SentenceTransformer

    from clasp_ingest.model.hub import hub_offline, local_model_dir

    local = local_model_dir(spec.source, runtime.model_dir)
    target = str(local) if local is not None else spec.source
    try:
        model = SentenceTransformer(
            target, device=runtime.device, local_files_only=local is not None or hub_offline()
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load sentence-transformers model {spec.source!r}: {exc}. Put its folder in "
            f"--model-dir (CLASP_MODEL_DIR) or allow hub downloads (unset HF_HUB_OFFLINE)"
        ) from exc
    dim = _st_dim(model)
    if dim != spec.dim:
        raise ModelLoadError(
            f"text model {spec.source!r} makes {dim}-d vectors, "
            f"the config says {spec.dim}; fix the preset's text dim"
        )
    return SentenceTransformerText(model, batch_size=int(spec.options.get("batch_size", 32)))
