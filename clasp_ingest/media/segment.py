"""Sentence-like speech segments, streamed while the media decodes.

CLASP was trained on sentence clips, so segments follow pauses:

1. Silero VAD gives a speech probability per 32 ms frame; hysteresis (``threshold`` to
   start, ``threshold - 0.15`` to stop) and a minimum pause (``min_pause_s``) turn them
   into speech regions; blips shorter than ``min_speech_s`` are dropped. The VAD hears the
   audio high-passed (a DC offset or a rumble hid speech from it), and a recording quiet as
   a whole amplified (up to ``vad_gain_db``); both in :mod:`clasp_ingest.media.vad`.
2. A region longer than the maximum is split at its quietest point (lowest smoothed frame
   energy) inside the window that keeps both parts within bounds, never at a fixed offset.
3. Fragments shorter than ``min_segment_s`` merge with the nearer neighbour (when the gap
   is at most ``max_merge_gap_s`` and the result stays under the maximum).
4. Each segment is padded by ``speech_pad_s`` on both sides, never past the middle of the
   pause to its neighbour, and carries its 16 kHz samples.

Memory stays bounded: only the open region and the few regions that may still merge are
kept (about ``4 × max_segment_s`` of audio), whatever the media length. Results depend only
on the audio, not on how it is cut into blocks.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from clasp_ingest.errors import ConfigError
from clasp_ingest.media.decode import DecodeOptions, stream_audio
from clasp_ingest.media.vad import FRAME_SAMPLES, VAD_SAMPLE_RATE, StreamingVad
from clasp_ingest.types import Segment

__all__ = [
    "SegmenterOptions",
    "SegmenterOptionsError",
    "SpeechSegment",
    "no_speech_warning",
    "segment_blocks",
    "segment_media",
]

_FPS = VAD_SAMPLE_RATE / FRAME_SAMPLES  # 31.25 frames per second
_SMOOTH_FRAMES = 5  # ≈ 160 ms: the energy window that finds a pause between words
_CENTRE_DB = 1.0  # dB of quietness traded for cutting in the middle of the allowed window
_MS = VAD_SAMPLE_RATE // 1000  # samples per millisecond


#: The longest any of the segmenter's durations may be, in seconds (a day).
MAX_SECONDS = 86400
_SECONDS = (
    "min_segment_s", "max_segment_s", "min_pause_s", "speech_pad_s", "min_speech_s", "max_merge_gap_s",
)  # fmt: skip


class SegmenterOptionsError(ConfigError):
    """A :class:`SegmenterOptions` value that breaks a rule: ``field`` is the one to change,
    ``value`` its value, ``rule`` what it must be; ``minimum``: the least ``max_segment_s`` may be
    with the other values (when it is too short for them)."""

    def __init__(self, field: str, value: object, rule: str, minimum: float | None = None) -> None:
        self.field, self.value, self.rule, self.minimum = field, value, rule, minimum
        super().__init__(f"SegmenterOptions: {field} {rule}, got {value}")


@dataclass(frozen=True)
class SegmenterOptions:
    """How speech is cut into sentence-like segments (durations in seconds)."""

    min_segment_s: float = 1.0
    max_segment_s: float = 15.0
    min_pause_s: float = 0.3
    speech_pad_s: float = 0.1
    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_s: float = 0.25
    max_merge_gap_s: float = 1.0
    vad_gain_db: float = 30.0  # the most a quiet recording is amplified for the VAD (0: off; media.vad)

    def __post_init__(self) -> None:
        """Raise :class:`SegmenterOptionsError` for a value out of range."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and item.name == "neg_threshold":  # None: threshold - 0.15
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):  # None, "15": TypeError below
                raise SegmenterOptionsError(item.name, value, f"must be a number, not {type(value).__name__}")
            self._check(math.isfinite(value), item.name, "must be a finite number")
        self._check(0.0 < self.threshold < 1.0, "threshold", "must be in (0, 1)")
        low = self.stop_threshold
        self._check(0.0 < low <= self.threshold, "neg_threshold", "must be in (0, threshold]")
        self._check(self.min_segment_s > 0, "min_segment_s", "must be > 0")
        self._check(self.min_pause_s > 0, "min_pause_s", "must be > 0")
        self._check(self.speech_pad_s >= 0, "speech_pad_s", "must be >= 0")
        self._check(self.min_speech_s >= 0, "min_speech_s", "must be >= 0")
        self._check(self.max_merge_gap_s >= 0, "max_merge_gap_s", "must be >= 0")
        self._check(0 <= self.vad_gain_db <= 60, "vad_gain_db", "must be in [0, 60]")
        for name in _SECONDS:  # 1e308 s: every item failed with OverflowError at its frame count
            self._check(getattr(self, name) <= MAX_SECONDS, name, f"must be at most {MAX_SECONDS} (a day)")
        least = 2 * self.min_segment_s + 2 * self.speech_pad_s
        if self.max_segment_s - 2 * self.speech_pad_s < 2 * self.min_segment_s:
            raise SegmenterOptionsError(
                "max_segment_s",
                self.max_segment_s,
                f"must be at least 2 × min_segment_s + 2 × speech_pad_s ({least:g}) so long speech "
                "can be split",
                minimum=least,
            )

    def _check(self, ok: bool, field: str, rule: str) -> None:
        if not ok:
            value = self.stop_threshold if field == "neg_threshold" else getattr(self, field)
            raise SegmenterOptionsError(field, value, rule)

    @property
    def stop_threshold(self) -> float:
        """Probability under which speech ends (``threshold - 0.15`` unless set)."""
        if self.neg_threshold is not None:
            return self.neg_threshold
        return max(self.threshold - 0.15, 0.01)


@dataclass(frozen=True)
class SpeechSegment:
    """One segment and its audio: 16 kHz mono float32 samples of exactly ``start_s..end_s``."""

    segment: Segment
    samples: np.ndarray


def segment_media(
    source: str | os.PathLike[str],
    *,
    media_id: str = "",
    options: SegmenterOptions | None = None,
    decode: DecodeOptions | None = None,
) -> Iterator[SpeechSegment]:
    """Decode ``source`` with ffmpeg and yield its segments while decoding proceeds.

    Raises :class:`~clasp_ingest.errors.MediaDecodeError` for unreadable media. Damage found
    only when ffmpeg finishes (a corrupt or truncated stream, with ``DecodeOptions.strict``)
    is raised after the segments decoded so far were yielded: treat the item as failed.
    """
    decode = decode or DecodeOptions()
    if decode.sample_rate != VAD_SAMPLE_RATE:
        raise ConfigError(
            f"segmentation needs {VAD_SAMPLE_RATE} Hz audio; DecodeOptions.sample_rate is "
            f"{decode.sample_rate}, leave it at the default"
        )
    yield from segment_blocks(stream_audio(source, decode), media_id=media_id, options=options)


def segment_blocks(
    blocks: Iterable[np.ndarray],
    *,
    media_id: str = "",
    options: SegmenterOptions | None = None,
    offset_s: float = 0.0,
) -> Iterator[SpeechSegment]:
    """Segment 16 kHz mono float32 blocks (any sizes); times start at ``offset_s``."""
    segmenter = _Segmenter(options or SegmenterOptions(), media_id, offset_s)
    for block in blocks:
        yield from segmenter.feed(block)
    yield from segmenter.finish()


def no_speech_warning(audio_s: float, tracks: int) -> str:
    """The warning for media without speech; for a file of several audio tracks it says that
    only the first was read, and how to ingest another (a film whose first track is silent or
    music-only, with the dialogue on the second)."""
    if tracks < 2:
        return f"no speech found in its {audio_s:.1f} s of audio; nothing of it can be searched"
    return (
        f"no speech found in its first audio track ({audio_s:.1f} s), the only one of its {tracks} "
        "tracks read; nothing of it can be searched. To ingest another track, extract it "
        "(ffmpeg -i FILE -map 0:a:1 -c copy track2.mka) and ingest that"
    )


@dataclass(frozen=True)
class _Limits:
    """The options in frames and samples."""

    min_f: int
    max_f: int  # longest unpadded segment
    pause_f: int
    speech_f: int
    merge_gap_f: int
    hold_f: int  # pending regions spanning more than this are emitted
    pad: int  # samples

    @classmethod
    def of(cls, o: SegmenterOptions) -> _Limits:
        max_f = math.floor((o.max_segment_s - 2 * o.speech_pad_s) * _FPS)
        pad = round(o.speech_pad_s * VAD_SAMPLE_RATE)
        return cls(
            min_f=math.ceil(o.min_segment_s * _FPS),
            max_f=max_f,
            pause_f=max(1, round(o.min_pause_s * _FPS)),
            speech_f=round(o.min_speech_s * _FPS),
            merge_gap_f=max(round(o.max_merge_gap_s * _FPS), math.ceil(pad / FRAME_SAMPLES)),
            hold_f=4 * max_f,
            pad=pad,
        )


class _Samples:
    """The audio still needed, as blocks with absolute sample positions."""

    def __init__(self) -> None:
        self._blocks: deque[tuple[int, np.ndarray]] = deque()
        self.end = 0

    def append(self, block: np.ndarray) -> None:
        if block.size:
            self._blocks.append((self.end, block))
            self.end += block.size

    def slice(self, start: int, stop: int) -> np.ndarray:
        parts = [
            block[max(start - pos, 0) : stop - pos]
            for pos, block in self._blocks
            if pos < stop and pos + block.size > start
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def drop_before(self, position: int) -> None:
        while self._blocks and self._blocks[0][0] + self._blocks[0][1].size <= position:
            self._blocks.popleft()


class _Segmenter:
    """The streaming state machine behind :func:`segment_blocks` (works in 32 ms frames)."""

    def __init__(self, options: SegmenterOptions, media_id: str, offset_s: float) -> None:
        self._o = options
        self._lim = _Limits.of(options)
        self._media_id = media_id
        self._offset_s = offset_s
        self._vad = StreamingVad(options.vad_gain_db)
        self._samples = _Samples()
        self._energy: list[float] = []  # smoothed-later frame energies from _energy_base on
        self._energy_base = 0
        self._frame = 0  # frames seen
        self._start: int | None = None  # open region's first frame
        self._temp_end: int | None = None
        self._pending: list[tuple[int, int]] = []  # closed regions that may still merge
        self._last_end = 0  # sample where the last emitted segment ends
        self._index = 0

    # -- input -----------------------------------------------------------------------
    def feed(self, block: np.ndarray) -> Iterator[SpeechSegment]:
        samples = np.asarray(block, dtype=np.float32).reshape(-1)
        self._samples.append(samples)
        yield from self._frames(*self._vad.feed(samples))
        self._trim()

    def finish(self) -> Iterator[SpeechSegment]:
        yield from self._frames(*self._vad.finish())
        if self._start is not None:
            end = self._temp_end if self._temp_end is not None else self._frame
            yield from self._close(self._start, end)
            self._start = None
        yield from self._emit(self._merge(self._pending), next_start=None)
        self._pending = []

    def _frames(self, probs: np.ndarray, energy: np.ndarray) -> Iterator[SpeechSegment]:
        self._energy.extend(energy.tolist())
        high, low = self._o.threshold, self._o.stop_threshold
        for prob in probs.tolist():
            i = self._frame
            self._frame += 1
            if self._start is None:
                if prob >= high:
                    self._start, self._temp_end = i, None
                elif self._pending and i - self._pending[-1][1] >= self._lim.merge_gap_f:
                    yield from self._emit(self._merge(self._pending), next_start=None)
                    self._pending = []
                continue
            if prob >= high:
                self._temp_end = None
            elif prob < low:
                if self._temp_end is None:
                    self._temp_end = i
                if i + 1 - self._temp_end >= self._lim.pause_f:
                    start, self._start = self._start, None
                    yield from self._close(start, self._temp_end)
                    continue
            if i + 1 - self._start >= 2 * self._lim.max_f:
                yield from self._force_split(self._start, i + 1)

    # -- regions ---------------------------------------------------------------------
    def _close(self, start: int, end: int) -> Iterator[SpeechSegment]:
        """A region ended: drop blips, split it if too long, queue the pieces."""
        if end - start < max(self._lim.speech_f, 1):
            return
        for piece in self._split(start, end):
            yield from self._queue(piece)

    def _force_split(self, start: int, now: int) -> Iterator[SpeechSegment]:
        """An open region grew too long: cut at its quietest point, queue the part before it."""
        cut = self._quietest(start + self._lim.min_f, now - self._lim.min_f)
        self._start = cut
        for piece in self._split(start, cut):
            yield from self._queue(piece)

    def _split(self, start: int, end: int) -> list[tuple[int, int]]:
        """Cut a region at its quietest points until no piece is longer than the maximum."""
        if end - start <= self._lim.max_f:
            return [(start, end)]
        cut = self._quietest(start + self._lim.min_f, end - self._lim.min_f)
        return self._split(start, cut) + self._split(cut, end)

    def _quietest(self, lo: int, hi: int) -> int:
        """The frame in ``[lo, hi]`` with the lowest energy smoothed over ~160 ms."""
        if hi < lo:  # rounding to frames left no room: cut in the middle
            return (lo + hi) // 2
        half = _SMOOTH_FRAMES // 2
        first = max(lo - half, self._energy_base)
        window = np.asarray(self._energy[first - self._energy_base : hi + half + 1 - self._energy_base])
        padded = np.pad(window, half, mode="edge")
        smooth = np.convolve(padded, np.ones(_SMOOTH_FRAMES) / _SMOOTH_FRAMES, mode="valid")
        score = smooth[lo - first : hi - first + 1]
        # Among points about as quiet (within ~1 dB), prefer the middle: balanced pieces.
        centre = np.abs(np.arange(score.size) - (score.size - 1) / 2) / max(score.size / 2, 1)
        return lo + int(np.argmin(score + _CENTRE_DB * centre))

    def _queue(self, region: tuple[int, int]) -> Iterator[SpeechSegment]:
        self._pending.append(region)
        if self._pending[-1][1] - self._pending[0][0] <= self._lim.hold_f or len(self._pending) < 2:
            return
        gaps = [b[0] - a[1] for a, b in itertools.pairwise(self._pending)]
        cut = len(gaps) - 1 - int(np.argmax(gaps[::-1]))  # the widest pause (the latest on ties)
        ready, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
        yield from self._emit(self._merge(ready), next_start=self._pending[0][0])

    def _merge(self, regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Merge fragments shorter than the minimum into their nearer neighbour, shortest first."""
        segs = list(regions)
        while True:
            choice = self._merge_choice(segs)
            if choice is None:
                return segs
            a, b = sorted(choice)
            segs[a : b + 1] = [(segs[a][0], segs[b][1])]

    def _merge_choice(self, segs: list[tuple[int, int]]) -> tuple[int, int] | None:
        """(short segment, neighbour) to merge next: the shortest fragment, its nearer neighbour."""
        best: tuple[int, int, int] | None = None  # (length, index, neighbour)
        for idx, (start, end) in enumerate(segs):
            if end - start >= self._lim.min_f or (best is not None and end - start >= best[0]):
                continue
            options = [
                (self._gap(segs, idx, n), n) for n in (idx - 1, idx + 1) if self._mergeable(segs, idx, n)
            ]
            if options:
                best = (end - start, idx, min(options)[1])
        return None if best is None else (best[1], best[2])

    def _mergeable(self, segs: list[tuple[int, int]], idx: int, other: int) -> bool:
        if not 0 <= other < len(segs):
            return False
        a, b = sorted((idx, other))
        return segs[b][1] - segs[a][0] <= self._lim.max_f and self._gap(segs, a, b) <= self._lim.merge_gap_f

    @staticmethod
    def _gap(segs: list[tuple[int, int]], idx: int, other: int) -> int:
        """Frames of pause between the adjacent segments ``idx`` and ``other``."""
        a, b = sorted((idx, other))
        return segs[b][0] - segs[a][1]

    # -- output ----------------------------------------------------------------------
    def _emit(self, segs: list[tuple[int, int]], next_start: int | None) -> Iterator[SpeechSegment]:
        pad = self._lim.pad
        for k, (start_f, end_f) in enumerate(segs):
            start, end = start_f * FRAME_SAMPLES, min(end_f * FRAME_SAMPLES, self._samples.end)
            following = segs[k + 1][0] if k + 1 < len(segs) else next_start
            limit = self._samples.end if following is None else (end + following * FRAME_SAMPLES) // 2
            first = _to_ms(max(start - pad, self._last_end, 0), up=True)
            last = _to_ms(min(end + pad, limit, self._samples.end), up=False)
            if last <= first:
                continue
            self._last_end = last
            yield self._segment(first, last)

    def _segment(self, first: int, last: int) -> SpeechSegment:
        segment = Segment(
            self._media_id,
            self._index,
            round(self._offset_s + first / VAD_SAMPLE_RATE, 3),
            round(self._offset_s + last / VAD_SAMPLE_RATE, 3),
        )
        self._index += 1
        return SpeechSegment(segment, self._samples.slice(first, last))

    def _trim(self) -> None:
        """Forget audio and energies no future segment can need."""
        keep = self._frame
        if self._start is not None:
            keep = min(keep, self._start)
        if self._pending:
            keep = min(keep, self._pending[0][0])
        self._samples.drop_before(keep * FRAME_SAMPLES - self._lim.pad - FRAME_SAMPLES)
        energy_keep = self._start if self._start is not None else self._frame
        drop = energy_keep - _SMOOTH_FRAMES - self._energy_base
        if drop > 0:
            del self._energy[:drop]
            self._energy_base += drop


def _to_ms(sample: int, *, up: bool) -> int:
    """Round a sample position to a whole millisecond, so times and samples agree exactly."""
    return (-(-sample // _MS) if up else sample // _MS) * _MS
