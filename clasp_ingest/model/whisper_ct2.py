"""Whisper encoder through CTranslate2 as a :class:`~clasp_ingest.model.base.SpeechEncoder`.

Features are Whisper's own log-mel spectrogram (computed here in numpy: 25 ms Hann window,
10 ms hop, Slaney mel filters, ``log10`` clamped to 8 decades below the clip maximum, scaled
by ``(x + 4) / 4``). The encoder maps 2 mel frames to 1 output frame, so 50 output frames per
second of audio. A clip is pooled by the mean of the output frames that cover real audio only;
clips longer than 30 s are cut into 30 s windows whose real frames are averaged together.

``window="full"`` pads every window to 30 s as Whisper was trained (the reference behaviour).
``window="trim"`` feeds only the frames that cover the clip (CTranslate2 accepts shorter
inputs); it is 5-25x faster on short clips but the encoder then never sees padding, so its
features differ from ``"full"``; a head trained on one must be used with the same mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np

from clasp_ingest.errors import ConfigError, ModelLoadError
from clasp_ingest.log import get_logger
from clasp_ingest.model.base import SAMPLE_RATE, default_threads, usable_cores
from clasp_ingest.model.logmel import frames_power

if TYPE_CHECKING:
    import ctranslate2

    from clasp_ingest.model.config import ComponentSpec, Runtime

__all__ = [
    "CHUNK_SAMPLES",
    "HOP_LENGTH",
    "MAX_THREADS",
    "N_FFT",
    "PACKAGED_WHISPER_BASE",
    "WhisperCT2Options",
    "WhisperCT2SpeechEncoder",
    "build_speech",
    "check_speech_options",
    "clip_parts",
    "int7_whisper_dir",
    "load_ct2_whisper",
    "log_mel_spectrogram",
    "mel_filters",
    "patched_whisper_dir",
    "weight_bits_for_this_cpu",
    "window_states",
]

log = get_logger("model.whisper_ct2")

N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480 000
CHUNK_FRAMES = CHUNK_SAMPLES // HOP_LENGTH  # 3 000 mel frames
SAMPLES_PER_OUTPUT_FRAME = 2 * HOP_LENGTH  # 320 samples = 20 ms


@dataclass(frozen=True)
class WhisperCT2Options:
    """How clips are windowed and batched."""

    window: Literal["full", "trim"] = "full"
    batch_size: int = 8
    #: CTranslate2 threads per replica; 0 lets CTranslate2 choose.
    intra_threads: int = 0
    device_index: int = 0
    #: Batches encoded at once (CTranslate2 replicas, fed from that many Python threads).
    inter_threads: int = 1

    def __post_init__(self) -> None:
        if self.window not in ("full", "trim"):
            raise ConfigError(f"window={self.window!r} is not one of 'full', 'trim'")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.intra_threads < 0:
            raise ConfigError(f"intra_threads={self.intra_threads} must be >= 0")
        if self.inter_threads < 1:
            raise ConfigError(f"inter_threads={self.inter_threads} must be >= 1")


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    mels = freq / f_sp
    log_part = min_log_hz / f_sp + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log_part, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney-normalised triangular filters, as Whisper uses."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    low, high = _hz_to_mel(np.array([0.0, sample_rate / 2]))
    mel_pts = np.linspace(float(low), float(high), n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    widths = np.diff(hz_pts)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    """Periodic Hann window of ``N_FFT`` points (float32, read-only)."""
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    window.flags.writeable = False
    return window


def _power_spectrum(audio: np.ndarray) -> np.ndarray:
    """|STFT|² with a periodic Hann window, centred frames (reflect padding), last frame dropped."""
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:n_frames]
    return frames_power(frames, _hann_window())[:-1].T  # (n_fft/2+1, frames)


def log_mel_spectrogram(audio: np.ndarray, n_mels: int = 80, pad_to: int | None = None) -> np.ndarray:
    """Whisper's normalised log-mel features, (n_mels, frames) float32.

    ``pad_to`` (samples) zero-pads the audio first, as Whisper pads every window to 30 s.
    """
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if pad_to is not None and len(audio) < pad_to:
        audio = np.pad(audio, (0, pad_to - len(audio)))
    if len(audio) <= N_FFT // 2:
        audio = np.pad(audio, (0, N_FFT // 2 + 1 - len(audio)))
    mel = mel_filters(n_mels) @ _power_spectrum(audio)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


@dataclass(frozen=True)
class _Window:
    """One encoder input: the features of a ≤ 30 s window of one clip."""

    item: int
    features: np.ndarray  # (n_mels, frames)
    real_frames: int  # encoder output frames that cover real audio
    start: int = 0  # first sample of the window in the clip


def _real_output_frames(n_samples: int) -> int:
    return max(1, math.ceil(n_samples / SAMPLES_PER_OUTPUT_FRAME))


def _trim_frames(n_samples: int) -> int:
    """Mel frames fed in trim mode: the clip's frames rounded up to even (conv stride 2)."""
    frames = max(2, math.ceil(n_samples / HOP_LENGTH))
    return min(CHUNK_FRAMES, frames + frames % 2)


def _windows(item: int, audio: np.ndarray, n_mels: int, mode: str) -> Iterator[_Window]:
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    for start in range(0, max(len(audio), 1), CHUNK_SAMPLES):
        piece = audio[start : start + CHUNK_SAMPLES]
        real = _real_output_frames(len(piece))
        if mode == "full":
            feats = log_mel_spectrogram(piece, n_mels, pad_to=CHUNK_SAMPLES)[:, :CHUNK_FRAMES]
        else:
            n = _trim_frames(len(piece))
            feats = log_mel_spectrogram(piece, n_mels, pad_to=n * HOP_LENGTH)[:, :n]
        yield _Window(item, np.ascontiguousarray(feats), min(real, feats.shape[1] // 2), start)


def _batches(windows: list[_Window], batch_size: int) -> Iterator[list[_Window]]:
    """Batches of windows of equal frame count (trim mode makes several sizes)."""
    by_len: dict[int, list[_Window]] = {}
    for w in windows:
        by_len.setdefault(w.features.shape[1], []).append(w)
    for group in by_len.values():
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


class _Rows(Protocol):
    def __getitem__(self, index: slice, /) -> Any: ...


StatesT = TypeVar("StatesT", bound=_Rows)


def window_states(
    waveforms: Sequence[np.ndarray],
    n_mels: int,
    options: WhisperCT2Options,
    run: Callable[[np.ndarray], Iterable[StatesT]],
) -> Iterator[tuple[_Window, StatesT]]:
    """Each window of each clip with its encoder states over real audio, (frames, dim).

    ``run`` maps a (batch, n_mels, frames) float32 batch of windows to one state array per window
    (CTranslate2 here, torch in :mod:`clasp_ingest.model.whisper_torch`).
    """
    windows = [w for i, wav in enumerate(waveforms) for w in _windows(i, wav, n_mels, options.window)]
    batches = list(_batches(windows, options.batch_size))

    def encoded(batch: list[_Window]) -> Iterable[StatesT]:
        return run(np.stack([w.features for w in batch]))

    if options.inter_threads > 1 and len(batches) > 1:
        # trim mode batches only windows of one length, so a few seconds' clips make batches of
        # one or two; the engine runs ``inter_threads`` of them at once (it releases the GIL)
        with ThreadPoolExecutor(min(options.inter_threads, len(batches))) as pool:
            results: Iterable[Iterable[StatesT]] = list(pool.map(encoded, batches))
    else:
        results = map(encoded, batches)
    for batch, states in zip(batches, results, strict=True):
        for w, s in zip(batch, states, strict=True):
            yield w, s[: w.real_frames]


def clip_parts(n_clips: int, states: Iterable[tuple[_Window, StatesT]]) -> list[list[StatesT]]:
    """Per clip, its windows' states in time order (to be concatenated)."""
    parts: list[dict[int, StatesT]] = [{} for _ in range(n_clips)]
    for w, s in states:
        parts[w.item][w.start] = s
    return [[p[k] for k in sorted(p)] for p in parts]


def load_ct2_whisper(
    model_dir: Path,
    *,
    device: str = "cpu",
    device_index: int = 0,
    compute_type: str = "default",
    intra_threads: int = 0,
    inter_threads: int = 1,
) -> ctranslate2.models.Whisper:
    """A CTranslate2 Whisper model from ``model_dir``; ``ModelLoadError`` saying the fix."""
    try:
        import ctranslate2
    except ImportError:
        raise ImportError("Whisper through CTranslate2 needs ctranslate2: pip install ctranslate2") from None
    if not (Path(model_dir) / "model.bin").is_file():
        raise ModelLoadError(
            f"{model_dir} is not a CTranslate2 Whisper model (no model.bin); use "
            "clasp_ingest.model.assets.whisper_base_ct2_dir() or convert one with "
            "ct2-transformers-converter"
        )
    try:
        return ctranslate2.models.Whisper(
            str(model_dir),
            device=device,
            device_index=device_index,
            compute_type=compute_type,
            intra_threads=intra_threads,
            inter_threads=inter_threads,
        )
    except (RuntimeError, ValueError) as exc:
        remedy = _load_remedy(Path(model_dir), device, compute_type, exc)
        raise ModelLoadError(
            f"CTranslate2 could not load {model_dir} on device={device!r} with "
            f"compute_type={compute_type!r}: {exc}; {remedy}"
        ) from exc


def _load_remedy(model_dir: Path, device: str, compute_type: str, exc: BaseException) -> str:
    """What to do when CTranslate2 cannot load ``model_dir``. Out of memory, neither other device
    nor type helps (float32 needs more); a copy in the model cache (a file of it damaged in a way
    its stamp cannot see) is written again once deleted; only settings not already in use are
    suggested (a run on the CPU was told to try device='cpu')."""
    from clasp_ingest.model.assets import is_cache_copy
    from clasp_ingest.model.inference import out_of_memory

    if out_of_memory(exc):
        return "free memory, or raise the process's limit (ulimit -v)"
    settings = (("device", "cpu", device), ("compute_type", "float32", compute_type))
    tries = " or ".join(f"{name}={value!r}" for name, value, used in settings if used != value)
    if not is_cache_copy(model_dir):
        return (
            f"try {tries}"
            if tries
            else "its files may be damaged: convert it again (ct2-transformers-converter)"
        )
    deleted = (
        f"it is a copy in the model cache: delete the folder {str(model_dir)!r} "
        "and the next run writes it again"
    )
    return f"{deleted}; or try {tries}" if tries else deleted


class WhisperCT2SpeechEncoder:
    """Mean-pooled Whisper encoder states (CTranslate2); implements ``SpeechEncoder`` and
    ``FrameSpeechEncoder`` (:meth:`encode_frames`: the states themselves).

    ``model_dir`` is a CTranslate2 Whisper directory, e.g. from
    :func:`clasp_ingest.model.assets.whisper_base_ct2_dir` (whisper-base: ``dim == 512``).
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        compute_type: str = "int8",
        options: WhisperCT2Options | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.compute_type = compute_type
        self.options = options or WhisperCT2Options()
        self._model = self._load()
        self._n_mels = int(self._model.n_mels)
        self._dim = self._probe_dim()

    @classmethod
    def from_packages(
        cls,
        cache_dir: Path | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        options: WhisperCT2Options | None = None,
    ) -> WhisperCT2SpeechEncoder:
        """Whisper-base from the registry packages (re-joined once into ``cache_dir``)."""
        from clasp_ingest.model.assets import whisper_base_ct2_dir

        return cls(whisper_base_ct2_dir(cache_dir), device=device, compute_type=compute_type, options=options)

    def _load(self) -> ctranslate2.models.Whisper:
        return load_ct2_whisper(
            self.model_dir,
            device=self.device,
            device_index=self.options.device_index,
            compute_type=self.compute_type,
            intra_threads=self.options.intra_threads,
            inter_threads=self.options.inter_threads,
        )

    def _run(self, features: np.ndarray) -> np.ndarray:
        import ctranslate2

        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
        out: Any = self._model.encode(view, to_cpu=self.device != "cpu")
        return np.asarray(out, dtype=np.float32)

    def _probe_dim(self) -> int:
        return int(self._run(np.zeros((1, self._n_mels, 2), dtype=np.float32)).shape[-1])

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def n_mels(self) -> int:
        return self._n_mels

    def _states(self, waveforms: Sequence[np.ndarray]) -> Iterator[tuple[_Window, np.ndarray]]:
        """Each window of each clip with its encoder states over real audio, (frames, dim)."""
        return window_states(waveforms, self._n_mels, self.options, self._run)

    def encode(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """(n, dim) float32: per clip, the mean encoder state over frames that cover real audio."""
        sums = np.zeros((len(waveforms), self._dim), dtype=np.float64)
        counts = np.zeros(len(waveforms), dtype=np.int64)
        for w, states in self._states(waveforms):
            sums[w.item] += states.sum(axis=0, dtype=np.float64)
            counts[w.item] += len(states)
        return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def encode_frames(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per clip, the encoder states over real audio in time order, (frames, dim) float32.

        Their mean over rows is :meth:`encode`'s vector; a clip over 30 s joins its windows.
        """
        parts = clip_parts(len(waveforms), self._states(waveforms))
        return [np.concatenate(p).astype(np.float32, copy=False) for p in parts]


#: ``ComponentSpec.source`` value meaning "whisper-base from the registry packages".
PACKAGED_WHISPER_BASE = "whisper-base"


#: The most threads a model's ``speech.options`` may ask of CTranslate2 (``inter_threads`` ×
#: ``intra_threads``), as ``CLASP_TORCH_THREADS`` allows torch: more than any one machine this
#: runs on has cores. A model folder may come from anyone: 4096 threads stalled an ingest that
#: takes 10 s (killed after 90 s, load average over 300 on 2 cores).
MAX_THREADS = 1024
#: CTranslate2's compute types.
_COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                  "float16", "bfloat16", "float32")  # fmt: skip


def _whole(options: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    """``options[key]`` when it is a whole number in ``low..high``, None when absent."""
    value = options.get(key)
    if value is None and key not in options:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"speech.options.{key} must be a whole number from {low} to {high}, got {value!r}")
    return value


def check_speech_options(options: Mapping[str, Any]) -> None:
    """Raise ``ConfigError`` naming the first ``speech.options`` value of a ``ct2-whisper`` model
    that :func:`build_speech` cannot use (see there). Called where a model's config is read
    (:meth:`~clasp_ingest.model.config.ModelConfig.from_file`, which names the file), so a bad
    value stops a run once, before any item, not as an error of each item (a thread count of
    0 divided by zero) or a run that never ends (4096 threads)."""
    inter = _whole(options, "inter_threads", 1, MAX_THREADS)
    intra = _whole(options, "intra_threads", 0, MAX_THREADS)
    if (inter or 1) * (intra or 1) > MAX_THREADS:
        raise ConfigError(
            f"speech.options.inter_threads × intra_threads must be at most {MAX_THREADS}, "
            f"got {inter} × {intra}"
        )
    if options.get("encoder_layers") is not None:  # null leaves it out, as before
        _whole(options, "encoder_layers", 1, 1024)  # Whisper's largest encoder has 32
    bits = options.get("weight_bits")
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or bits not in (7, 8)):
        raise ConfigError(f"speech.options.weight_bits must be 7 or 8 (or null: by the CPU), got {bits!r}")
    for key, allowed in (("compute_type", _COMPUTE_TYPES), ("window", ("full", "trim"))):
        if key in options and options[key] not in allowed:
            raise ConfigError(
                f"speech.options.{key} must be one of {', '.join(allowed)}; got {options[key]!r}"
            )
    for key in ("cache_dir", "top_layers"):  # null or "" leave them out, as before
        if options.get(key) and not isinstance(options[key], str):
            raise ConfigError(f"speech.options.{key} must be a path (a string), got {options[key]!r}")


def _split_device(device: str) -> tuple[str, int]:
    kind, _, index = device.partition(":")
    return kind, int(index) if index else 0


def build_speech(spec: ComponentSpec, runtime: Runtime) -> WhisperCT2SpeechEncoder:
    """Backend ``ct2-whisper``: ``spec.source`` is ``"whisper-base"`` (registry packages) or a CT2 dir.

    ``spec.options``: ``compute_type`` (default int8 on CPU, float16 on CUDA), ``window``
    (``"full"``/``"trim"``), ``inter_threads`` (batches encoded at once; default on CPU 2 with two
    or more usable cores: trim mode makes batches of one or two short windows, and two of them
    at once embedded a 614 s file in 4.3 s instead of 4.9 s on 2 cores, same vectors),
    ``intra_threads`` (threads per batch; default on CPU one less than the usable cores divided
    by ``inter_threads``, at least 1, so on 2 cores one: the decoding thread keeps a core while
    it runs; 0 lets CTranslate2 choose), ``cache_dir``
    (where whisper-base is re-joined), ``top_layers`` (a file of fine-tuned top encoder layers,
    ``pkg://``, a path or one in the model dir; see :func:`patched_whisper_dir`), ``encoder_layers``
    (run only the first that many encoder layers, after ``top_layers`` is written in; see
    :func:`truncated_whisper_dir`), ``weight_bits`` (for an int8 compute type on the CPU: 7 gives
    CTranslate2 the encoder's weight matrices in 7 bits, +-63, which no int8 GEMM saturates;
    8 lets CTranslate2 quantise them to +-127 itself; absent or null: 7 where the CPU's int8
    GEMM may saturate, 8 elsewhere, :func:`weight_bits_for_this_cpu`; see :func:`int7_whisper_dir`).
    """
    check_speech_options(spec.options)
    opts = dict(spec.options)
    device, index = _split_device(runtime.device)
    compute_type = str(opts.get("compute_type", "int8" if device == "cpu" else "float16"))
    inter = int(opts.get("inter_threads", 2 if device == "cpu" and usable_cores() >= 2 else 1))
    options = WhisperCT2Options(
        window=opts.get("window", "full"),
        batch_size=runtime.batch_size,
        intra_threads=int(
            opts.get("intra_threads", max(1, default_threads() // inter) if device == "cpu" else 0)
        ),
        device_index=index,
        inter_threads=inter,
    )
    cache = Path(opts["cache_dir"]) if opts.get("cache_dir") else None
    if spec.source == PACKAGED_WHISPER_BASE:
        from clasp_ingest.model.assets import whisper_base_ct2_dir

        path = whisper_base_ct2_dir(cache)
    else:
        path = Path(spec.source).expanduser()
        if not path.is_dir() and runtime.model_dir is not None:
            path = runtime.model_dir / spec.source
    if opts.get("top_layers"):
        from clasp_ingest.model.hub import resolve_file

        path = patched_whisper_dir(path, resolve_file(str(opts["top_layers"]), runtime.model_dir), cache)
    if opts.get("encoder_layers") is not None:
        path = truncated_whisper_dir(path, int(opts["encoder_layers"]), cache)
    bits = opts.get("weight_bits")
    if device == "cpu" and compute_type.startswith("int8") and (bits or weight_bits_for_this_cpu()) == 7:
        try:
            path = int7_whisper_dir(path, cache)
        except ModelLoadError as exc:
            if bits == 7:  # asked for by name: no quiet fallback
                raise
            # a cache that cannot be written (a read-only one that served older versions):
            # CTranslate2's own int8 weights still run, as before 7-bit ones
            log.warning("using CTranslate2's own int8 weights (they may saturate on this CPU): %s", exc)
    return WhisperCT2SpeechEncoder(path, device=device, compute_type=compute_type, options=options)


def weight_bits_for_this_cpu() -> Literal[7, 8]:
    """7 where CTranslate2's int8 GEMM may saturate on this CPU, 8 where it cannot.

    On x86 the GEMM (oneDNN, or MKL on Intel) multiplies u8 activations by s8 weights; without
    AVX-512 VNNI it sums each pair of products into int16 (``vpmaddubsw``), which overflows with
    weights near +-127. VNNI sums into int32, and ARM's kernels (Ruy) widen before they add. On
    an AVX2-only AMD EPYC (2026-12-07) Whisper-base's int8 frames had a pooled cosine of 0.989
    to float32's (the lowest frame 0.68) with CTranslate2's own weights, 0.9995 with 7-bit ones;
    the earlier machines' CPUs (with VNNI) gave above 0.999 with their own. Unknown: 7."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return 8
    return 8 if _has_avx512_vnni() else 7


@lru_cache(maxsize=1)
def _has_avx512_vnni() -> bool:
    """Whether this x86 CPU has AVX-512 VNNI (numpy's dispatch table, else /proc/cpuinfo's flags)."""
    import importlib

    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, 1
        try:
            features = dict(getattr(importlib.import_module(module), "__cpu_features__", {}))
            break
        except ImportError:
            continue
    if "AVX512VNNI" in features:
        return bool(features["AVX512VNNI"])
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").split()
    except OSError:
        return False
    return "avx512_vnni" in flags


def int7_whisper_dir(base_dir: Path, cache_dir: Path | None = None) -> Path:
    """``base_dir``'s CTranslate2 Whisper with its encoder's weight matrices stored as int8 in
    +-63 (:func:`~clasp_ingest.model.ct2_format.quantize_ct2_weights`; the decoder is left as it
    is: the speech encoder does not run it),
    for an int8 compute type on the CPU: CTranslate2's int8 GEMM on a CPU without VNNI (an
    AVX2-only AMD EPYC here) saturates with its own +-127 weights, and Whisper-base's frames
    fell to a pooled cosine of 0.989 to float32's (0.9995 with these). Made once under
    ``cache_dir`` (default :func:`~clasp_ingest.model.assets.default_cache_dir`), named by the
    source folder's path and its ``model.bin``'s size and time, and again when cut short."""
    import hashlib

    from clasp_ingest.model.assets import cached_folder, default_cache_dir
    from clasp_ingest.model.ct2_format import quantize_ct2_weights

    base_dir = Path(base_dir)
    try:
        stat = (base_dir / "model.bin").stat()
    except OSError as exc:
        raise ModelLoadError(
            f"{base_dir} is not a CTranslate2 Whisper model (no readable model.bin: {exc.strerror or exc})"
        ) from exc
    source = f"{base_dir.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    digest = hashlib.sha256(source).hexdigest()[:12]
    target = (cache_dir or default_cache_dir()) / f"{base_dir.name}-int7e-{digest}"

    def write(out: Path) -> None:
        log.info("writing %s with 7-bit int8 weights into %s", base_dir, target)
        quantize_ct2_weights(base_dir, out, lambda name: name.startswith("encoder/"))

    return cached_folder(target, write)


def truncated_whisper_dir(base_dir: Path, layers: int, cache_dir: Path | None = None) -> Path:
    """``base_dir``'s CTranslate2 Whisper with only its first ``layers`` encoder layers (the final
    layer norm kept): an encoder that costs ``layers`` / 6 of Whisper-base's transformer work.
    Made once under ``cache_dir`` (default :func:`~clasp_ingest.model.assets.default_cache_dir`),
    and again when cut short or changed since; ``base_dir`` itself when it has no more layers
    than that."""
    from clasp_ingest.model.assets import cached_folder, default_cache_dir
    from clasp_ingest.model.ct2_format import encoder_layer_count, encoder_layers_below, patch_ct2_model

    if layers < 1:
        raise ConfigError(f"encoder_layers must be >= 1, got {layers}")
    if layers >= encoder_layer_count(Path(base_dir)):
        return Path(base_dir)
    target = (cache_dir or default_cache_dir()) / f"{Path(base_dir).name}-{layers}L"

    def write(out: Path) -> None:
        log.info("writing the first %d encoder layers of %s into %s", layers, base_dir, target)
        patch_ct2_model(Path(base_dir), out, {}, drop=encoder_layers_below(layers))

    return cached_folder(target, write)


def patched_whisper_dir(base_dir: Path, top_layers: Path, cache_dir: Path | None = None) -> Path:
    """``base_dir``'s CTranslate2 Whisper with the encoder variables of ``top_layers`` (a safetensors
    file of fine-tuned top layers, CTranslate2 names) written in; made once under ``cache_dir``
    (default :func:`~clasp_ingest.model.assets.default_cache_dir`), named by the file's hash.
    A copy cut short or changed since it was written is written again
    (:func:`~clasp_ingest.model.assets.cached_folder`)."""
    from clasp_ingest.model.assets import cached_folder, default_cache_dir, file_sha256

    digest = file_sha256(top_layers)[:16]
    target = (cache_dir or default_cache_dir()) / f"{Path(base_dir).name}-top-{digest}"

    def write(out: Path) -> None:
        from safetensors.numpy import load_file

        from clasp_ingest.model.ct2_format import patch_ct2_model
        from clasp_ingest.model.hub import readable_weights

        log.info("writing the fine-tuned top layers of %s into %s", top_layers, target)
        with readable_weights(top_layers):
            layers = load_file(str(top_layers))
        patch_ct2_model(Path(base_dir), out, layers)

    return cached_folder(target, write)
