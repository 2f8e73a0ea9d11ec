"""Protocols that every model part implements. Light: no torch import here.

A CLASP model is a speech branch and a spectrogram branch whose pooled features a fusion
head maps into the space of a frozen text encoder. Each branch is swappable; a preset
names one combination (see ARCHITECTURE.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "AudioTextEncoder",
    "FrameSpeechEncoder",
    "Preloadable",
    "QueryEncoder",
    "SpectrogramEncoder",
    "SpeechEncoder",
    "TextEncoder",
    "TokenLimited",
    "check_waveforms",
    "default_threads",
    "pad_frames",
]

#: Every waveform handed to a model is 16 kHz mono float32 in [-1, 1].
SAMPLE_RATE = 16_000


@runtime_checkable
class SpeechEncoder(Protocol):
    """Speech SSL branch: waveforms → one pooled feature vector each."""

    @property
    def dim(self) -> int: ...

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32, pooled over the frames that cover real audio only."""
        ...


@runtime_checkable
class FrameSpeechEncoder(SpeechEncoder, Protocol):
    """A speech branch that also gives its frames, for heads that pool them (``speech_pool``)."""

    def encode_frames(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per clip, (frames, dim) float32 over real audio; their row mean is ``encode``'s vector."""
        ...


@runtime_checkable
class SpectrogramEncoder(Protocol):
    """Spectrogram-image branch: waveforms → one feature vector each."""

    @property
    def dim(self) -> int: ...

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """A frozen sentence encoder whose space the fusion head targets."""

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, pooled/normalised as the encoder itself does."""
        ...


@runtime_checkable
class TokenLimited(Protocol):
    """A text encoder that reads at most ``max_tokens`` tokens of a text (special tokens and
    prefixes included), and can count them."""

    @property
    def max_tokens(self) -> int: ...

    def token_count(self, text: str) -> int:
        """The tokens the encoder would feed for ``text``, uncut."""
        ...


@runtime_checkable
class Preloadable(Protocol):
    """A model that can start loading its weights early, in the background (``DeferredModel``)."""

    def preload(self) -> None:
        """Start loading; returns at once."""
        ...


@runtime_checkable
class QueryEncoder(Protocol):
    """The text side alone: what a search needs (``clasp_ingest.model.load_query_model``)."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised: the model's query vectors."""
        ...


@runtime_checkable
class AudioTextEncoder(Protocol):
    """What the pipeline, store and retriever need from a model (open_clip-style two towers)."""

    @property
    def model_id(self) -> str:
        """Stable name stored with every point (preset name or checkpoint id)."""
        ...

    @property
    def dim(self) -> int: ...

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32, L2-normalised; waveforms are 16 kHz mono float32."""
        ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised."""
        ...


def check_waveforms(waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The waveforms as float32 arrays; ``ValueError`` naming the first that is not 1-D, non-empty
    and finite."""
    checked = []
    for i, wav in enumerate(waveforms):
        arr = np.asarray(wav, dtype=np.float32)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"waveform {i} must be a non-empty 1-D 16 kHz mono array, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"waveform {i} contains NaN or inf samples; decode it again")
        checked.append(arr)
    return checked


def pad_frames(clips: Sequence[np.ndarray]) -> np.ndarray:
    """Clips' ``(frames, dim)`` arrays as one zero-padded float32 ``(n, longest, dim)`` array."""
    longest = max((len(c) for c in clips), default=1)
    out = np.zeros((len(clips), longest, clips[0].shape[1] if clips else 0), np.float32)
    for row, clip in enumerate(clips):
        out[row, : len(clip)] = clip
    return out


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, usable or 1)


def default_threads() -> int:
    """CPU threads for a model's engine: one less than the usable cores, at least 1 (decoding
    runs on a thread beside the embedding)."""
    return max(1, usable_cores() - 1)
