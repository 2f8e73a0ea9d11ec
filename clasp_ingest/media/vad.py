"""Streaming Silero VAD: per-frame speech probabilities of 16 kHz audio.

Runs the silero-vad package's bundled *sequence* ONNX model (one onnxruntime call per
block of frames, bit-identical to the frame-by-frame model) with onnxruntime on one thread,
so it is deterministic and needs no torch. The LSTM state and the 64-sample context carry
across blocks, so feeding audio in blocks of any size gives the same probabilities.

Silero misses speech that is quiet as a whole: a sentence at a peak of −45 dBFS (a far
microphone, an unnormalised export) lost its first sentence, and at −60 dBFS most of the file.
So the model hears quiet audio amplified, by at most ``max_gain_db``, until the file's level
reaches :data:`VAD_TARGET_PEAK` (−26 dBFS). The level is sustained loudness, not one loud
sample: the highest, so far, of the :data:`_LOUD_FRAMES`-th loudest frame peak among the last
:data:`_LEVEL_FRAMES` frames (about 1 s). A door slam in a quiet lecture is too short to count:
a gain that fell to 1 at the slam left Silero, its state used to the amplified speech, deaf to
the quiet speech after it for some 15 s. And no frame is raised above the target (the slam is
heard as it is). The gain depends only on the audio before and in the frame, so it streams
and keeps block sizes irrelevant; in a file at a normal level it is 1 from its first second
of loud sound on (only quieter frames before are raised), and only the model's input
changes, never the samples handed on.

Before both, the detector's audio is high-passed (:data:`VAD_HIGHPASS_HZ`, Butterworth, its
state carried across blocks): a DC offset or a rumble under speech hid the speech from Silero
and read as loud, so the gain stayed off. Speech at −40 dBFS plus a DC offset of 0.05, or at
−14 dBFS under a 30 Hz hum at −2 dBFS, was stored as "no speech found" (Whisper heard every
word). Speech has little energy under 80 Hz, so normal files segment as before (no boundary
of the demo samples moved more than a frame); a steeper filter (4th order) moved an onset by
three. Frame energies (where long speech is split) are measured on the same filtered audio;
the samples handed on (to the embedding model) are never filtered.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ModelLoadError

__all__ = [
    "FRAME_SAMPLES",
    "VAD_HIGHPASS_HZ",
    "VAD_SAMPLE_RATE",
    "VAD_TARGET_PEAK",
    "StreamingVad",
    "silero_model_path",
]

VAD_SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz
_CONTEXT = 64
_MODEL_FILE = "silero_vad_16k_sequence.onnx"
_MAX_FRAMES = 512  # frames per onnxruntime call (16.4 s), as silero-vad does
VAD_TARGET_PEAK = 0.05  # −26 dBFS: audio at a quieter level is amplified for the model (up to max_gain_db)
_LEVEL_FRAMES = 32  # the window of the level (1.02 s)
_LOUD_FRAMES = 10  # the level is the window's 10th loudest frame peak: 320 ms of loud sound
VAD_HIGHPASS_HZ = 80.0  # the detector hears little under this: DC offset, rumble, hum (docstring)
_DUST = 1e-9  # −180 dBFS: filtered samples smaller than this are heard as 0 (see _HighPass)
_CHUNK = 256  # samples a one-pole section of _HighPass sums at once (|p|**-256 is about 300)


def silero_model_path() -> Path:
    """The ONNX file inside the installed silero-vad package (found without importing torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise ModelLoadError("Silero VAD needs the silero-vad package: pip install 'silero-vad==6.2.3'")
    path = Path(spec.origin).parent / "data" / _MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"silero-vad is installed but {path} is missing; reinstall silero-vad==6.2.3")
    return path


@functools.lru_cache(maxsize=1)
def _session() -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError("Silero VAD needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )


class _HighPass:
    """A 2nd-order Butterworth high-pass at :data:`VAD_HIGHPASS_HZ` (the bilinear transform's,
    as ``scipy.signal.butter`` designs it) whose state carries across blocks: filtering a stream
    in blocks of any size gives the same samples as filtering it whole, with no click at block
    boundaries.

    In numpy alone: ``scipy.signal`` took 0.4-0.7 s to import, in every ``ingest``. The filter is
    its constant term plus two complex-conjugate one-pole sections (partial fractions), and a
    one-pole recursion ``w[n] = p w[n-1] + r x[n]`` runs as cumulative sums over chunks short
    enough that ``p**-n`` stays small (:data:`_CHUNK`), carrying ``w`` from chunk to chunk.
    """

    def __init__(self) -> None:
        w0 = 2 * np.pi * VAD_HIGHPASS_HZ / VAD_SAMPLE_RATE
        alpha = np.sin(w0) / np.sqrt(2.0)  # Q = 1/sqrt(2): Butterworth
        a0 = 1 + alpha
        b0 = (1 + np.cos(w0)) / 2 / a0  # b = (b0, -2 b0, b0)
        a1, a2 = -2 * np.cos(w0) / a0, (1 - alpha) / a0
        pole = complex(np.roots([1.0, a1, a2])[0])
        # H(z) = b0 (1 - z^-1)^2 / (1 + a1 z^-1 + a2 z^-2) = k + r / (1 - p z^-1) + conj(...)
        self._k = b0 / a2  # the quotient; r: the residue at q = 1/p of what remains
        self._r = b0 * (1 - 1 / pole) ** 2 / (1 - pole.conjugate() / pole)
        self._p = pole
        n = np.arange(_CHUNK, dtype=np.float64)
        self._up = (pole**-n).astype(np.complex64)  # p**-n
        self._scale = (self._r * pole**n).astype(np.complex64)  # r p**n
        self._step = (pole ** (n + 1)).astype(np.complex64)  # p**(n+1): how w before a chunk decays in it
        self._state: complex | None = None  # w of the last sample

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        if samples.size == 0:
            return samples
        x = np.asarray(samples, dtype=np.float32)
        if not np.isfinite(x).all():  # one NaN would be in the state, and every sample after
            x = np.where(np.isfinite(x), x, np.float32(0.0))
        if self._state is None:  # as if the first sample's level had always been there:
            self._state = self._r * float(x[0]) / (1 - self._p)  # a DC offset gives no click
        chunks = -(-x.size // _CHUNK)
        padded = np.zeros(chunks * _CHUNK, dtype=np.float32)
        padded[: x.size] = x
        rows = padded.reshape(chunks, _CHUNK)
        # each chunk from w = 0: w[n] = r p**n sum_{k<=n} p**-k x[k] (single precision: the
        # detector's input, and 4 times less work than double; within 1e-6 of scipy's)
        w = self._scale * np.cumsum(rows * self._up, axis=1)
        carried = np.empty(chunks, dtype=np.complex128)  # w just before each chunk
        state, last = self._state, self._p**_CHUNK
        for c in range(chunks):
            carried[c] = state
            state = complex(w[c, -1]) + last * state
        w += np.outer(carried.astype(np.complex64), self._step)
        flat = w.reshape(-1)[: x.size]
        self._state = complex(flat[-1])
        filtered = self._k * x + 2 * flat.real
        # After digital silence the filter's tail decays through values like 1e-30, which
        # turn subnormal inside Silero and made it about 40 % slower: such dust is silence.
        filtered[np.abs(filtered) < _DUST] = 0.0
        return filtered.astype(np.float32)


class StreamingVad:
    """Feed 16 kHz float32 audio in blocks; get one probability and one energy per 512-sample frame.

    ``max_gain_db``: the most a quiet recording is amplified for the model (0: never).
    """

    def __init__(self, max_gain_db: float = 0.0) -> None:
        self._session = _session()
        self._highpass = _HighPass()
        self._max_gain = 10.0 ** (max_gain_db / 20.0)
        self._level = 0.0  # the file's level so far (module docstring)
        self._recent = np.zeros(_LEVEL_FRAMES - 1, dtype=np.float32)  # the last frames' peaks
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._residual = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, frame energies in dB) for the frames completed by ``samples``."""
        heard = self._highpass(np.asarray(samples, dtype=np.float32).reshape(-1))
        audio = np.concatenate((self._residual, heard))
        count = audio.size // FRAME_SAMPLES
        self._residual = audio[count * FRAME_SAMPLES :].copy()
        return self._run(audio[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES))

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The last, zero-padded partial frame (if any)."""
        if self._residual.size == 0:
            return self._run(np.zeros((0, FRAME_SAMPLES), dtype=np.float32))
        frame = np.zeros((1, FRAME_SAMPLES), dtype=np.float32)
        frame[0, : self._residual.size] = self._residual
        self._residual = np.zeros(0, dtype=np.float32)
        return self._run(frame)

    def _run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heard = self._amplified(frames)
        probs = [self._run_block(heard[i : i + _MAX_FRAMES]) for i in range(0, heard.shape[0], _MAX_FRAMES)]
        energy = 10.0 * np.log10(np.mean(np.square(frames, dtype=np.float64), axis=1) + 1e-10)
        prob = np.concatenate(probs) if probs else np.zeros(0, dtype=np.float32)
        return prob, energy.astype(np.float32)

    def _amplified(self, frames: np.ndarray) -> np.ndarray:
        """``frames`` as the model hears them: each scaled towards the target by the file's level
        up to its end (module docstring), never down, at most ``max_gain``, and never above
        the target itself."""
        if self._max_gain <= 1.0 or frames.shape[0] == 0 or self._level >= VAD_TARGET_PEAK:
            return frames  # off, or loud already: the model hears the file as it is
        peaks = np.abs(frames).max(axis=1)
        recent = np.concatenate((self._recent, peaks))
        self._recent = recent[-(_LEVEL_FRAMES - 1) :]
        windows = np.lib.stride_tricks.sliding_window_view(recent, _LEVEL_FRAMES)
        loud = np.partition(windows, -_LOUD_FRAMES, axis=1)[:, -_LOUD_FRAMES]
        level = np.maximum.accumulate(np.maximum(loud, self._level))
        self._level = float(level[-1])
        gain = np.clip(VAD_TARGET_PEAK / np.maximum(level, 1e-12), 1.0, self._max_gain)
        gain = np.minimum(gain, np.maximum(1.0, VAD_TARGET_PEAK / np.maximum(peaks, 1e-12)))
        return frames * gain.astype(np.float32)[:, None]

    def _run_block(self, frames: np.ndarray) -> np.ndarray:
        contexts = np.empty((frames.shape[0], _CONTEXT), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = frames[:-1, -_CONTEXT:]
        self._context = frames[-1, -_CONTEXT:].copy()
        probs, self._h, self._c = self._session.run(
            ["speech_probs", "hn", "cn"],
            {"input": np.concatenate((contexts, frames), axis=1), "h": self._h, "c": self._c},
        )
        return np.asarray(probs, dtype=np.float32).reshape(-1)
