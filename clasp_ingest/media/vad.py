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
changes, never the samples or energies handed on.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from clasp_ingest.errors import ModelLoadError

__all__ = ["FRAME_SAMPLES", "VAD_SAMPLE_RATE", "VAD_TARGET_PEAK", "StreamingVad", "silero_model_path"]

VAD_SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # 32 ms at 16 kHz
_CONTEXT = 64
_MODEL_FILE = "silero_vad_16k_sequence.onnx"
_MAX_FRAMES = 512  # frames per onnxruntime call (16.4 s), as silero-vad does
VAD_TARGET_PEAK = 0.05  # −26 dBFS: audio at a quieter level is amplified for the model (up to max_gain_db)
_LEVEL_FRAMES = 32  # the window of the level (1.02 s)
_LOUD_FRAMES = 10  # the level is the window's 10th loudest frame peak: 320 ms of loud sound


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


class StreamingVad:
    """Feed 16 kHz float32 audio in blocks; get one probability and one energy per 512-sample frame.

    ``max_gain_db``: the most a quiet recording is amplified for the model (0: never).
    """

    def __init__(self, max_gain_db: float = 0.0) -> None:
        self._session = _session()
        self._max_gain = 10.0 ** (max_gain_db / 20.0)
        self._level = 0.0  # the file's level so far (module docstring)
        self._recent = np.zeros(_LEVEL_FRAMES - 1, dtype=np.float32)  # the last frames' peaks
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._residual = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, frame energies in dB) for the frames completed by ``samples``."""
        audio = np.concatenate((self._residual, np.asarray(samples, dtype=np.float32).reshape(-1)))
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
