"""Text → audio retrieval evaluation with the CLASP paper's protocols (``clasp-ingest eval``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clasp_ingest.evaluation.metrics import hits_at_1, macro_f1, mean_rank, mrr, ranks

if TYPE_CHECKING:
    from clasp_ingest.evaluation.evaluate import evaluate

__all__ = ["evaluate", "hits_at_1", "macro_f1", "mean_rank", "mrr", "ranks"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        return importlib.import_module("clasp_ingest.evaluation.evaluate").evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
