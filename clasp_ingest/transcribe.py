"""Speech → words with faster-whisper (CTranslate2 Whisper), loaded on first use.

:class:`Transcriber` turns one span's 16 kHz mono samples into a :class:`Transcript`: the
words, the language Whisper detected for that span (or the one given), and the model that
made them; optionally also Whisper's English translation of a non-English span. A language
the span's media declares (an audio track's tag, a feed's ``<language>``) is preferred to the
one detected where Whisper knows it, unless the detection contradicts it
(:meth:`Transcriber.choose_language`): detection on a few seconds of speech can be wrong
(espeak Italian heard as Japanese), and a declared language can be a default. For the same
reason :meth:`Transcriber.transcribe_many` takes each span's context, the media around it, and
detects a short span's language from that.

The default model is the bundled Whisper-base (CTranslate2, int8 on the CPU), re-joined from
its registry packages by :func:`~clasp_ingest.model.assets.whisper_base_ct2_dir`: that folder
holds ``model.bin``, ``config.json`` and ``tokenizer.json``, which is all faster-whisper reads
offline (no ``preprocessor_config.json`` means Whisper's 80-mel defaults, right for base).
``TranscriberOptions.model`` names any other faster-whisper model: a local CTranslate2 folder,
or a hub name such as ``"small"`` or ``"large-v3"`` (downloaded by faster-whisper through the
Hugging Face Hub, so only where the hub is reachable or the model is cached).

Nothing loads at construction: the model loads when the first span needs words.
"""

from __future__ import annotations

import copy
import functools
import numbers
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import error_line, get_logger

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper import WhisperModel

__all__ = ["BUNDLED_MODEL", "TimedWord", "Transcriber", "TranscriberOptions", "Transcript"]

log = get_logger("transcribe")

#: The model name meaning the bundled Whisper-base (CTranslate2 folder from registry packages).
BUNDLED_MODEL = "whisper-base"
SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class TranscriberOptions:
    """Which Whisper model transcribes, where, and how.

    * ``model``: ``"whisper-base"`` (bundled, offline), a CTranslate2 Whisper folder, or a
      faster-whisper hub name (``"small"``, ``"large-v3"``, ``"org/repo"``);
    * ``device``: ``"auto"`` (a GPU when CTranslate2 sees one, else the CPU), ``"cpu"``,
      ``"cuda"`` or ``"cuda:N"``;
    * ``compute_type``: CTranslate2's (``None``: ``int8`` on the CPU, ``float16`` on a GPU);
    * ``language``: a Whisper code (``"en"``, ``"fr"``) for every span; ``None`` detects the
      language of each span;
    * ``translate``: also run Whisper's translate task on non-English spans (English text in
      :attr:`Transcript.english`; a second decoding pass, so about twice the time);
    * ``beam_size``: 1 is greedy (fastest, what query-time transcription wants);
    * ``cpu_threads``: ``0`` uses every usable core.
    """

    model: str = BUNDLED_MODEL
    device: str = "auto"
    compute_type: str | None = None
    language: str | None = None
    translate: bool = False
    beam_size: int = 1
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise ConfigError(
                "TranscriberOptions.model must name a model ('whisper-base', a folder or a hub name)"
            )
        self._check_types()
        if not 1 <= self.beam_size <= 10:
            raise ConfigError(f"TranscriberOptions.beam_size must be 1 (greedy) to 10, got {self.beam_size}")
        if self.cpu_threads < 0:
            raise ConfigError(f"TranscriberOptions.cpu_threads must be >= 0, got {self.cpu_threads}")
        if self.language is not None and not self.language.isalpha():
            raise ConfigError(f"language={self.language!r} must be a Whisper code such as 'en' or 'fr'")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device={self.device!r} must be 'auto', 'cpu', 'cuda' or 'cuda:N'")

    def _check_types(self) -> None:
        """A value of the wrong type is a ``ConfigError`` naming its field, as one out of range
        is (``device=None`` raised AttributeError; ``cpu_threads=nan`` was accepted)."""
        texts = {
            "device": (self.device, "a string: 'auto', 'cpu', 'cuda' or 'cuda:N'"),
            "compute_type": (self.compute_type, "a CTranslate2 compute type such as 'int8', or None"),
            "language": (self.language, "a Whisper code such as 'en' or 'fr', or None"),
        }
        for field, (value, wanted) in texts.items():
            if not isinstance(value, str) and (value is not None or field == "device"):
                raise ConfigError(f"TranscriberOptions.{field} must be {wanted}, got {value!r}")
        for field, number in {"beam_size": self.beam_size, "cpu_threads": self.cpu_threads}.items():
            if isinstance(number, bool) or not isinstance(number, numbers.Integral):
                raise ConfigError(f"TranscriberOptions.{field} must be a whole number, got {number!r}")


@dataclass(frozen=True)
class Transcript:
    """The words of one span: ``language`` is Whisper's code (detected or given), ``model`` the
    transcriber's :attr:`~Transcriber.model_id`; ``english`` the translation when asked for
    and the span is not English."""

    text: str
    language: str
    model: str
    english: str | None = None


@dataclass(frozen=True)
class TimedWord:
    """One word Whisper heard, with its time in seconds from the start of the media.

    ``text`` keeps Whisper's spacing (a leading space before a word of a spaced script), so
    the words of a span join with ``"".join``."""

    start_s: float
    end_s: float
    text: str

    @property
    def middle_s(self) -> float:
        return (self.start_s + self.end_s) / 2


#: Greedy first; hotter retries only where Whisper's output looks wrong (repetitive, unlikely).
_TEMPERATURES = (0.0, 0.2, 0.4)
#: faster-whisper's defaults, which every path here keeps: a retry when the text compresses
#: better than this (repetition) or its mean token log-probability is lower; silence when the
#: no-speech probability is higher (and the log-probability low); samples drawn at a retry's
#: temperature.
_COMPRESSION_RATIO_MAX = 2.4
_LOG_PROB_MIN = -1.0
_NO_SPEECH_MIN = 0.6
_BEST_OF = 5
#: A window decoded after the previous window's text drops that prompt for the windows after
#: it when it needed the last retry or failed at every temperature (faster-whisper's
#: ``prompt_reset_on_temperature``: its default 0.5 is never passed with these temperatures),
#: as openai-whisper resets after its hot retries: a looping window's text no longer prompts
#: the next window into the same loop. Whisper-base hears the bundled espeak German as Welsh:
#: its second window looped at every temperature, and the 26 ms left after it, prompted by that
#: loop, looped at every temperature too; the file's 19 s took 79 CPU-s, now 33, the same words
#: (the other samples and 5 min of festvox-ru: the same words, WER 0.152 both; 2026-12-07).
_PROMPT_RESET = 0.3
#: CTranslate2's random seed for those samples (:class:`_SeededSampling`), so that a retry draws
#: the same samples, and a file gets the same words, on every run.
_SAMPLING_SEED = 0

#: New tokens of a window decoded after the previous window's text: its prompt takes up to 227
#: of Whisper's 448 (faster-whisper raises past them).
_PROMPTED_MAX = 220

#: No word of any language is longer (German compounds reach about 40-60 letters); a longer
#: "word" is Whisper looping inside one (``Fafafafa…``).
_WORD_MAX = 64

#: ISO 639-1 codes (as media and feeds declare languages) that Whisper spells otherwise.
_WHISPER_SPELLING = {"jv": "jw", "nb": "no"}
#: A declared language is taken unless Whisper's detection gives it less than this: declared
#: languages can be defaults (a WebM/MKV track without a Language element reads as ``eng``; a
#: host's feed template says ``en-us``), so one that the audio clearly contradicts loses. On
#: short espeak spans whose detection went wrong, the declared language kept 0.07-0.14
#: (Italian heard as Japanese at 0.31); Italian speech tagged ``eng`` gave English 0.003.
_DECLARED_MIN_PROB = 0.05
#: A span whose own encoding gives one language at least this is not heard again in its
#: context (:func:`_languages_of`): the context's encoding is the cost of a short span's
#: language. Whisper-base on spans alone: LibriVox English 0.990-0.998; among 148 short lines
#: of a Czech and a Dutch actor the surest wrong answers were 0.990 (Polish) and 0.959
#: (English), none at 0.995 or more (1 of the 148 was that sure, and right).
_SURE_ALONE = 0.995


#: Audio quieter than this (RMS, full scale 1) is silence to language detection: -45 dBFS.
_SILENCE_RMS = 10 ** (-45 / 20)


def _first_sound(audio: np.ndarray, frame: int = SAMPLE_RATE // 10) -> int:
    """The first sample of the first 0.1 s frame louder than silence (0 when none is)."""
    usable = audio.size - audio.size % frame
    if usable == 0:
        return 0
    rms = np.sqrt(np.mean(np.square(audio[:usable].reshape(-1, frame), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > _SILENCE_RMS)
    return int(loud[0]) * frame if loud.size else 0


def _max_tokens(window_s: float) -> int:
    """A cap on the tokens of one window: speech runs about 3–5 tokens a second, so twice
    that with headroom ends a repetition loop (a known Whisper failure) early."""
    return min(300, 16 + round(10 * window_s))


def _cap(audio: np.ndarray) -> int:
    """:func:`_max_tokens` of a span's Whisper window: 30 s, or the span where shorter."""
    return _max_tokens(min(audio.size / SAMPLE_RATE, 30.0))


def _repetitive(compression_ratio: float) -> bool:
    """Whether a decoding repeats itself (faster-whisper's test: its text compresses too well)."""
    return compression_ratio > _COMPRESSION_RATIO_MAX


def _guarded(audio: np.ndarray, *, conditioned: bool = False) -> dict[str, Any]:
    """faster-whisper ``transcribe`` settings every path here shares, against repetition loops:
    retries at :data:`_TEMPERATURES` on faster-whisper's thresholds (a window failing at every
    temperature keeps its likeliest non-repetitive decoding) and a token cap per 30 s window
    (:func:`_max_tokens`; the last, shorter window of a short span gets its own). No VAD: spans
    come cut. ``conditioned`` (a whole file): each window decoded after the previous one's text,
    as an ASR route does; the cap then leaves room for that prompt in Whisper's 448 tokens
    (:data:`_PROMPTED_MAX`), and a window that needed the last retry prompts none after it
    (:data:`_PROMPT_RESET`). Unconditioned, a file's later windows began mid-phrase and made
    things up: demo_es's library sentence was "la vida de la familia, la vida de la familia…"
    in 3 of 4 runs."""
    cap = _cap(audio)
    return {
        "temperature": _TEMPERATURES,
        "compression_ratio_threshold": _COMPRESSION_RATIO_MAX,
        "log_prob_threshold": _LOG_PROB_MIN,
        "no_speech_threshold": _NO_SPEECH_MIN,
        "max_new_tokens": min(cap, _PROMPTED_MAX) if conditioned else cap,
        "condition_on_previous_text": conditioned,
        "prompt_reset_on_temperature": _PROMPT_RESET,
        "vad_filter": False,
    }


def _usable_cores() -> int:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, usable or 1)


def _device(name: str) -> tuple[str, int]:
    """faster-whisper's (device, index) for ``name``; ``"auto"`` asks CTranslate2 for a GPU."""
    if name == "auto":
        import ctranslate2

        return ("cuda", 0) if ctranslate2.get_cuda_device_count() > 0 else ("cpu", 0)
    kind, _, index = name.partition(":")
    if index and not index.isdigit():
        raise ConfigError(f"device={name!r}: the GPU index must be a number, e.g. 'cuda:0'")
    return kind, int(index or 0)


class _SeededSampling:
    """faster-whisper's CTranslate2 Whisper (``WhisperModel.model``) for one transcription
    call, whose sampled decodings (the retries at :data:`_TEMPERATURES` above 0) draw the same
    samples on every call: the greedy and beam decodings, encoding, language detection and
    alignment go to the shared model; the sampled ones to a decoder of this call's own, loaded
    at its first one, seeded with :data:`_SAMPLING_SEED`.

    Seeding the shared model cannot do this. CTranslate2 samples on its worker thread (one per
    model, ``inter_threads``) from a ``thread_local`` generator seeded once, at that thread's
    first draw, from the seed then set (``src/random.cc``; on a GPU, the thread's curand
    states): ``set_random_seed`` before each call changes nothing once the thread has drawn,
    so the shared model's second run of a file went on from where the first left off, and its
    words changed (3 distinct texts in 4 runs of 3 s of noisy speech). A fresh decoder's worker
    thread has not drawn yet. Every call sets the same seed, so calls in threads need no lock;
    other code that sets another CTranslate2 seed in between would still change the draws.
    The cost, only in a call that retries: loading the decoder (Whisper-base int8 on the CPU:
    0.3 s of CPU, 0.5 s wall on two busy cores) and a second copy of the weights while the call
    runs; 3 s of noisy speech took 2.05 s of CPU instead of 1.79 s.
    """

    def __init__(self, model: Any, fresh_decoder: Callable[[], ctranslate2.models.Whisper]) -> None:
        self._model = model
        self._fresh_decoder = fresh_decoder
        self._sampler: ctranslate2.models.Whisper | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("sampling_topk", 1) == 1:  # greedy or beam search: no random draws
            return self._model.generate(*args, **kwargs)
        import ctranslate2

        sampler = self._sampler if self._sampler is not None else self._load_sampler()
        ctranslate2.set_random_seed(_SAMPLING_SEED)  # read at the decoder thread's first draw
        return sampler.generate(*args, **kwargs)

    def _load_sampler(self) -> Any:
        """This call's decoder; the shared model where no second copy loads (a GPU without
        room for it): the words are made as before, only not the same on every run."""
        try:
            self._sampler = self._fresh_decoder()
        except (RuntimeError, MemoryError, OSError) as exc:
            log.warning(
                "cannot load a second copy of Whisper for seeded retries (%s); this call's retries "
                "sample unseeded, so its words can differ between runs: free memory for the copy",
                error_line(exc),
            )
            self._sampler = self._model
        return self._sampler


class Transcriber:
    """Whisper transcription of short spans (seconds to a few minutes) with faster-whisper.

    Thread-safe: one model, loaded once (on the first :meth:`transcribe`), shared by threads;
    CTranslate2 serialises the work on one model replica. The same audio with the same options
    gets the same words on every call, in any thread or process: the retries that sample draw
    seeded samples of their own (:class:`_SeededSampling`).
    """

    def __init__(self, options: TranscriberOptions | None = None, *, cache_dir: Path | None = None) -> None:
        self.options = options or TranscriberOptions()
        self._cache_dir = cache_dir
        self._model: WhisperModel | None = None
        self._fresh_decoder: Callable[[], ctranslate2.models.Whisper] | None = None
        self._load_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """What made the words (stored as ``metadata.transcript_model``)."""
        return f"faster-whisper:{self.options.model}"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def declared_language(self, tag: str | None) -> str | None:
        """The Whisper code of a declared language ``tag``: an item's ``metadata.language``
        (ISO 639-1), an audio track's ISO 639-2 tag (``ita``), a feed's ``pt-BR``, or Whisper's
        own code (``jw``, ``haw``). None where ``tag`` names no language or one this model does
        not know. Loads the model. The language is still detected: the declared one is taken
        unless detection gives it under :data:`_DECLARED_MIN_PROB` (:meth:`choose_language`).
        """
        from clasp_ingest.media.languages import tag_language

        code = tag_language(tag)
        if code is None:
            return None
        code = _WHISPER_SPELLING.get(code, code)
        model = self.load()
        # faster-whisper's codes, less those this model's vocabulary lacks ("yue" before large-v3)
        known = (
            code in model.supported_languages and model.hf_tokenizer.token_to_id(f"<|{code}|>") is not None
        )
        return code if known else None

    def choose_language(self, samples_16k: np.ndarray, declared: str | None) -> str | None:
        """The language to transcribe ``samples_16k`` in, given the one its media declares
        (a Whisper code, :meth:`declared_language`; None: detect as Whisper does): the
        declared one unless detection, from the first sound, gives it under
        :data:`_DECLARED_MIN_PROB`, then the detected one."""
        if declared is None:
            return None
        return self._language_of(self.load(), samples_16k, declared)

    def _language_of(self, model: WhisperModel, samples_16k: np.ndarray, declared: str | None) -> str | None:
        """The language of ``samples_16k`` detected from its first sound, ``declared`` preferred
        (:func:`_preferred`); None for an English-only model (it detects nothing)."""
        if not model.model.is_multilingual:
            return None
        audio = np.asarray(samples_16k, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return declared
        _, _, ranked = model.detect_language(audio[_first_sound(audio) :])
        return _preferred(ranked, declared)

    def _model_path(self) -> str:
        if self.options.model == BUNDLED_MODEL:
            from clasp_ingest.model.assets import whisper_base_ct2_dir

            return str(whisper_base_ct2_dir(self._cache_dir))
        name = self.options.model
        if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().is_dir():
            # a path, not a hub name: faster-whisper would report the hub's repo-id rules instead
            raise ModelLoadError(
                f"cannot load the Whisper model {name!r} for transcription: no such folder; name a "
                "CTranslate2 Whisper folder, 'whisper-base' (bundled), or a faster-whisper model name"
            )
        return str(Path(name).expanduser()) if name.startswith("~") else name

    def load(self) -> WhisperModel:
        """The faster-whisper model, loaded on the first call (later calls return it)."""
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> WhisperModel:
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.utils import download_model
        except ImportError:
            raise ImportError(
                "transcription needs faster-whisper: pip install 'faster-whisper>=1.2,<2'"
            ) from None
        opts = self.options
        device, index = _device(opts.device)
        compute = opts.compute_type or ("int8" if device == "cpu" else "float16")
        path = self._model_path()
        root = str(self._cache_dir) if self._cache_dir else None
        log.info("loading Whisper %s on %s (%s)", path, device, compute)
        try:
            # the folder, downloaded here as faster-whisper would: samplers load from it too
            folder = path if Path(path).is_dir() else download_model(path, cache_dir=root)
            model = WhisperModel(
                folder,
                device=device,
                device_index=index,
                compute_type=compute,
                cpu_threads=opts.cpu_threads or _usable_cores(),
            )
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load the Whisper model {opts.model!r} for transcription ({error_line(exc)}); name a "
                "CTranslate2 Whisper folder, 'whisper-base' (bundled), or a faster-whisper model name "
                "where the Hugging Face Hub is reachable"
            ) from exc
        import ctranslate2

        self._fresh_decoder = functools.partial(
            ctranslate2.models.Whisper,
            folder,
            device=device,
            device_index=index,
            compute_type=compute,
            intra_threads=opts.cpu_threads or _usable_cores(),
        )
        return model

    def _one_pass(self) -> WhisperModel:
        """The model for one call (:meth:`transcribe`, :meth:`transcribe_many`,
        :meth:`transcribe_words`): the loaded one, whose hotter retries sample on a decoder of
        this call's own (:class:`_SeededSampling`), so that the same audio gets the same words
        on every call, in every thread and process."""
        model = self.load()
        if self._fresh_decoder is None:  # a model not loaded by _load: nothing to sample on
            return model
        one_pass = copy.copy(model)  # the shared model's parts, another ``model`` attribute
        one_pass.model = _SeededSampling(model.model, self._fresh_decoder)
        return one_pass

    def transcribe(self, samples_16k: np.ndarray, *, language: str | None = None) -> Transcript:
        """The words of one span: ``samples_16k`` is 16 kHz mono audio (float32 in [-1, 1]).

        ``language`` (else ``options.language``, else detected from the span) sets the
        language Whisper writes. Empty or silent audio gives empty text.
        """
        audio = np.asarray(samples_16k, dtype=np.float32).reshape(-1)
        model = self._one_pass()
        lang = language or self.options.language
        text, detected = self._run(model, audio, lang, "transcribe")
        english = None
        if self.options.translate and detected != "en" and text:
            english, _ = self._run(model, audio, detected, "translate")
        return Transcript(text=text, language=detected, model=self.model_id, english=english)

    def transcribe_many(
        self,
        spans: Sequence[np.ndarray],
        *,
        language: str | None = None,
        languages: Sequence[str | None] | None = None,
        contexts: Sequence[np.ndarray | None] | None = None,
    ) -> list[Transcript]:
        """The words of several spans, as :meth:`transcribe` gives them one by one, faster.

        The language of each span: ``language`` (else ``options.language``) for every span;
        else the one its media declares, ``languages[i]`` (any form
        :meth:`declared_language` reads; None: none declared), where Whisper knows it and its
        detection does not contradict it (:meth:`choose_language`); else the one detected.
        ``contexts[i]`` (None: the span alone) is the media around span ``i``, up to 30 s
        (:func:`~clasp_ingest.retriever.audio.span_in_context`), or around another span of its
        item, which its language is detected from (and a declared one checked against); spans
        given the same array (one object) share its encoding and detection, within each batch
        of :data:`_SHARED_BATCH` and among the spans transcribed on their own (``LazyWords``
        gives an item's short spans one). A few seconds of speech can sound like
        another language (Russian read speech heard as Bulgarian or Polish; most short
        lines of a Czech actor as Polish or Slovak). The words are still read from the span
        alone, in the language chosen. In the shared pass a context costs one more encoding of a
        30 s window, made only where the span alone gives no language :data:`_SURE_ALONE` or
        more; a span transcribed on its own (below) detects from its context always, at no
        extra cost (it is encoded once to detect either way).

        Spans of at most 30 s share the work (:func:`_shared_pass`): each is encoded once
        (:meth:`transcribe` encodes a span twice when it detects the language: once to
        detect, once to decode), the languages not known are read from those encodings, and
        the spans are decoded in one greedy batch, the retries at higher temperatures in
        batches too. Longer spans, and every span when ``beam_size > 1``, are transcribed as
        :meth:`transcribe` does. The words can differ from :meth:`transcribe`'s where Whisper
        is unsure (a retry of several spans draws other samples than a retry of one; on the
        CPU a batch's arithmetic differs from a single span's in the last bits, which can tip
        a near-tie between two tokens), though the same spans get the same words every call.
        """
        audios = [np.asarray(s, dtype=np.float32).reshape(-1) for s in spans]
        if languages is not None and len(languages) != len(audios):
            raise ValueError(
                f"transcribe_many got {len(languages)} languages for {len(audios)} spans; "
                "pass one per span (None where a span declares none)"
            )
        if contexts is not None and len(contexts) != len(audios):
            raise ValueError(
                f"transcribe_many got {len(contexts)} contexts for {len(audios)} spans; "
                "pass one per span (None where a span has none)"
            )
        around = _one_each(contexts if contexts is not None else [None] * len(audios))
        if not audios:
            return []
        model = self._one_pass()
        given = language or self.options.language
        forced: list[str | None] = [given] * len(audios)
        declared = (
            [self.declared_language(tag) for tag in languages]
            if languages is not None and not given
            else [None] * len(audios)
        )
        texts: list[tuple[str, str] | None] = [None] * len(audios)
        shared = [
            i
            for i, audio in enumerate(audios)
            if 0 < audio.size <= 30 * SAMPLE_RATE and self.options.beam_size == 1
        ]
        for start in range(0, len(shared), _SHARED_BATCH):
            chunk = shared[start : start + _SHARED_BATCH]
            done = _shared_pass(
                model,
                [audios[i] for i in chunk],
                [forced[i] for i in chunk],
                [declared[i] for i in chunk],
                [around[i] for i in chunk],
            )
            for i, result in zip(chunk, done, strict=True):
                texts[i] = result
        out: list[Transcript] = []
        told: dict[tuple[int, str | None], str | None] = {}  # (shared context, declared) -> language
        for audio, lang, prior, heard, shared_result in zip(
            audios, forced, declared, around, texts, strict=True
        ):
            if shared_result is None and lang is None and heard is not None:
                key = (id(heard), prior)
                if key not in told:
                    told[key] = self._language_of(model, heard, prior)
                lang = told[key]
            elif shared_result is None and lang is None and prior is not None:
                lang = self._language_of(model, audio, prior)
            text, detected = shared_result or self._run(model, audio, lang, "transcribe")
            english = None
            if self.options.translate and detected != "en" and text:
                english, _ = self._run(model, audio, detected, "translate")
            out.append(Transcript(text=text, language=detected, model=self.model_id, english=english))
        return out

    def transcribe_words(
        self, samples_16k: np.ndarray, *, offset_s: float = 0.0, language: str | None = None
    ) -> tuple[list[TimedWord], str]:
        """The timed words of a long stretch of audio (a whole file, or a window of one) and its
        language: one faster-whisper pass with word timestamps (Whisper's 30 s windows, each
        conditioned on the previous one's text), the way an ASR route transcribes a file, with
        faster-whisper's thresholds: a window is decoded again, hotter, when its text repeats
        itself or its words are unsure (mean log-probability below -1), and skipped as silence
        only when Whisper finds no speech there and is unsure of its words too. The guards of
        query-time words (:func:`_guarded`, with room for the prompt) apply: 2 s of laughter
        gave one 446-character "word" (``Fafafa…``) after a minute of CPU. A window whose every
        decoding repeats itself keeps its likeliest one, bounded by the cap (a chorus or a count
        repeats for real: dropping such windows lost all the words of "one two three four" said
        ten times); a "word" longer than :data:`_WORD_MAX` characters is a loop inside one word,
        and dropped. The language, unless given, is detected from the first sound (a silent
        opening is skipped).

        ``offset_s`` is added to every time (the window's start in the media).
        """
        audio = np.asarray(samples_16k, dtype=np.float32).reshape(-1)
        lang = language or self.options.language
        if audio.size == 0:
            return [], lang or ""
        model = self._one_pass()
        if lang is None and model.model.is_multilingual:  # an English-only model detects nothing
            # from the first sound, not a silent opening (Whisper would read its first 30 s)
            lang = model.detect_language(audio[_first_sound(audio) :])[0]
        # faster-whisper's own thresholds (_guarded): without the log-prob one, a window Whisper
        # guessed to be "no speech" was dropped however sure its words (speech after a long
        # silence, a file's last sentence); never dropping one made it loop on silence
        segments, info = model.transcribe(
            audio,
            language=lang,
            task="transcribe",
            beam_size=self.options.beam_size,
            word_timestamps=True,
            **_guarded(audio, conditioned=True),
        )
        words = [
            TimedWord(round(offset_s + w.start, 3), round(offset_s + max(w.end, w.start), 3), w.word)
            for segment in segments
            for w in segment.words or ()
            if w.word.strip() and len(w.word.strip()) <= _WORD_MAX  # a loop inside one "word"
        ]
        return words, str(info.language)

    def _run(
        self, model: WhisperModel, audio: np.ndarray, language: str | None, task: str
    ) -> tuple[str, str]:
        if audio.size == 0:
            return "", language or ""
        segments, info = model.transcribe(
            audio,
            language=language,
            task=task,
            beam_size=self.options.beam_size,
            without_timestamps=True,
            **_guarded(audio),
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        return text, str(info.language)


#: Spans decoded together by :meth:`Transcriber.transcribe_many` (encoder outputs of 30 s
#: windows, 3 MB each in float32, are held for the batch).
_SHARED_BATCH = 16


@dataclass(frozen=True)
class _Decoded:
    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


def _shared_pass(
    model: WhisperModel,
    audios: Sequence[np.ndarray],
    languages: Sequence[str | None],
    declared: Sequence[str | None] | None = None,
    contexts: Sequence[np.ndarray | None] | None = None,
) -> list[tuple[str, str]]:
    """``(text, language)`` of each span of at most 30 s, as faster-whisper's ``transcribe``
    gives it for one 30 s window, with the work shared; ``languages[i]`` is span ``i``'s
    language, None to detect it (preferring ``declared[i]``, :func:`_preferred`) from
    ``contexts[i]``, the span with the media around it (None: the span alone).

    Each span is encoded once, as faster-whisper encodes it to detect its language (its
    log-mel frames padded to a 30 s window; faster-whisper decodes from the same frames less
    the last one, so a second encoding); the languages not given are detected from those
    spans' encodings, or from their contexts' where given and the span alone is unsure (one
    more encoding each, :data:`_SURE_ALONE`), and the
    spans decoded in one greedy batch. The spans whose text would make faster-whisper retry
    (repetitive, or a low mean log-probability that is not silence) are decoded again together
    at the next of :data:`_TEMPERATURES` (best of five samples), and so on; a span that fails
    at every temperature keeps its most likely non-repetitive decoding, and a silent one gets
    empty text: faster-whisper's rules. The batch decodes up to the longest span's token cap
    (:func:`_max_tokens`) and cuts each span's tokens at its own cap.
    """
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

    # one at a time: batching 30 s windows is no faster on the CPU
    frames = np.concatenate([_encoded(model, audio) for audio in audios])
    encoder_output = ctranslate2.StorageView.from_array(np.ascontiguousarray(frames))
    found = _languages_of(
        model, frames, languages, declared or [None] * len(audios), contexts or [None] * len(audios)
    )
    tokenizers = [
        Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=lang)
        for lang in found
    ]
    prompts = [model.get_prompt(tokenizer, [], without_timestamps=True) for tokenizer in tokenizers]
    caps = [_cap(audio) for audio in audios]
    suppress = list(get_suppressed_tokens(tokenizers[0], [-1]) or ())
    tried: list[list[_Decoded]] = [[] for _ in audios]
    chosen: dict[int, _Decoded] = {}
    pending = list(range(len(audios)))
    for temperature in _TEMPERATURES:
        sampling = {} if temperature == 0 else {
            "num_hypotheses": _BEST_OF, "sampling_topk": 0, "sampling_temperature": temperature,
        }  # fmt: skip
        if len(pending) < len(audios):  # a retry: only the spans that need one
            encoder_output = ctranslate2.StorageView.from_array(np.ascontiguousarray(frames[pending]))
        results = model.model.generate(
            encoder_output,
            [prompts[i] for i in pending],
            beam_size=1,
            max_length=len(prompts[0]) + max(caps[i] for i in pending),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
            **sampling,
        )
        retry = []
        for i, result in zip(pending, results, strict=True):
            tokens = result.sequences_ids[0]
            # a cap can cut a character's bytes in two: no U+FFFD at the end of stored words
            text = tokenizers[i].decode(tokens[: caps[i]]).strip().rstrip("\ufffd").strip()
            got = _Decoded(
                text, result.scores[0] * len(tokens) / (len(tokens) + 1), get_compression_ratio(text),
                result.no_speech_prob,
            )  # fmt: skip
            tried[i].append(got)
            silent = got.no_speech_prob > _NO_SPEECH_MIN and got.avg_logprob < _LOG_PROB_MIN
            unsure = _repetitive(got.compression_ratio) or got.avg_logprob < _LOG_PROB_MIN
            if unsure and not silent:
                retry.append(i)
            else:
                chosen[i] = got
        pending = retry
        if not pending:
            break
    for i in pending:  # failed at every temperature
        plain = [d for d in tried[i] if not _repetitive(d.compression_ratio)]
        chosen[i] = max(plain or tried[i], key=lambda d: d.avg_logprob)
    out = []
    for i, lang in enumerate(found):
        got = chosen[i]
        skipped = got.no_speech_prob > _NO_SPEECH_MIN and not got.avg_logprob > _LOG_PROB_MIN
        out.append(("" if skipped else got.text, lang))
    return out


def _encoded(model: WhisperModel, audio: np.ndarray) -> np.ndarray:
    """Whisper's encoding of ``audio`` (one row): the window faster-whisper detects the language
    from, its first 30 s (it decodes from the same frames less the last one, which only the
    padding fills)."""
    from faster_whisper.transcribe import pad_or_trim

    extractor = model.feature_extractor
    return np.asarray(model.encode(pad_or_trim(extractor(audio)[:, : extractor.nb_max_frames])))


def _languages_of(
    model: WhisperModel,
    frames: np.ndarray,
    languages: Sequence[str | None],
    declared: Sequence[str | None],
    contexts: Sequence[np.ndarray | None],
) -> list[str]:
    """Each span's language: the one given, else detected with the one its media declares
    preferred (:func:`_preferred`) from its own encoding (row of ``frames``) where that gives
    one language at least :data:`_SURE_ALONE`, else from its context's (the media around it: one
    more encoding) where it has one; every span is English to an English-only model
    (``*.en``)."""
    if not model.model.is_multilingual:
        return ["en"] * len(languages)
    found = list(languages)
    unknown = [i for i, lang in enumerate(found) if lang is None]
    ranked = dict(zip(unknown, _detected(model, frames[unknown]), strict=True)) if unknown else {}
    # from the context where the span alone is unsure (a sure span keeps its own detection)
    around = [
        (i, context)
        for i in unknown
        if (context := contexts[i]) is not None and ranked[i][0][1] < _SURE_ALONE
    ]
    if around:  # one at a time, as the spans: batching 30 s windows is no faster on the CPU
        distinct = {id(context): context for _, context in around}  # spans may share one
        heard = np.concatenate([_encoded(model, context) for context in distinct.values()])
        detected = dict(zip(distinct, _detected(model, heard), strict=True))
        ranked.update((i, detected[id(context)]) for i, context in around)
    for i in unknown:
        found[i] = _preferred(ranked[i], declared[i])
    return [str(lang) for lang in found]


def _one_each(contexts: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    """``contexts`` as flat float32 arrays, one array for each distinct one given (spans given
    the same context object share its encoding and detection)."""
    seen: dict[int, tuple[object, np.ndarray]] = {}  # the original kept: its id stays its own
    out: list[np.ndarray | None] = []
    for context in contexts:
        if context is not None and id(context) not in seen:
            seen[id(context)] = (context, np.asarray(context, dtype=np.float32).reshape(-1))
        out.append(None if context is None else seen[id(context)][1])
    return out


def _detected(model: WhisperModel, frames: np.ndarray) -> list[list[tuple[str, float]]]:
    """Whisper's language detection of each encoding (row of ``frames``): ``(code,
    probability)`` pairs, best first."""
    import ctranslate2

    view = ctranslate2.StorageView.from_array(np.ascontiguousarray(frames))
    return [
        [(str(token)[2:-2], float(p)) for token, p in found] for found in model.model.detect_language(view)
    ]


def _preferred(ranked: Sequence[tuple[str, float]], declared: str | None) -> str:
    """The language of a detection ``ranked`` (``(code, probability)``, best first): the one
    declared unless the detection gives it under :data:`_DECLARED_MIN_PROB`, else the best."""
    if declared is not None and dict(ranked).get(declared, 0.0) >= _DECLARED_MIN_PROB:
        return declared
    return ranked[0][0]
