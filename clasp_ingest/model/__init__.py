"""CLASP models: speech + spectrogram branches fused into a frozen text encoder's space."""

from __future__ import annotations

from clasp_ingest.model.base import (
    SAMPLE_RATE,
    AudioTextEncoder,
    SpectrogramEncoder,
    SpeechEncoder,
    TextEncoder,
)

__all__ = ["SAMPLE_RATE", "AudioTextEncoder", "SpectrogramEncoder", "SpeechEncoder", "TextEncoder"]
