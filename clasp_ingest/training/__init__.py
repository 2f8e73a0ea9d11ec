"""Training of CLASP fusion heads on frozen-backbone features (``clasp-ingest train``).

Importing this package is light; the names below load their modules (and torch) on first
access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clasp_ingest.training.features import FeatureCache, FeatureSet, compute_features
    from clasp_ingest.training.loop import FitOptions, FitResult, fit_head
    from clasp_ingest.training.manifest import ManifestRow, read_manifest
    from clasp_ingest.training.train import TrainOptions, TrainResult, prepare_head, train_fusion

__all__ = [
    "FeatureCache",
    "FeatureSet",
    "FitOptions",
    "FitResult",
    "ManifestRow",
    "TrainOptions",
    "TrainResult",
    "compute_features",
    "fit_head",
    "prepare_head",
    "read_manifest",
    "train_fusion",
]

_LAZY = {
    "FeatureCache": "features",
    "FeatureSet": "features",
    "compute_features": "features",
    "FitOptions": "loop",
    "FitResult": "loop",
    "fit_head": "loop",
    "ManifestRow": "manifest",
    "read_manifest": "manifest",
    "TrainOptions": "train",
    "TrainResult": "train",
    "prepare_head": "train",
    "train_fusion": "train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"clasp_ingest.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
