"""Frozen-backbone features, computed once and cached on disk.

Training a fusion head never back-propagates into the backbones, so each clip's speech and
spectrogram features and each caption's text embedding are computed once and reused by
every epoch and every later run. Cache keys:

- audio: ``sha256(file bytes)`` under a folder named by the hash of the speech and
  spectrogram encoders' identity (their config), so another backbone never reads stale
  features; stored as ``<root>/audio-<id>/<ab>/<sha256>.npz`` (arrays ``speech``,
  ``spectrogram``).
- text: ``sha256(utf-8 text)`` under ``<root>/text-<id>/``, as ``.npy``.
- speech frames (only for heads that pool frames themselves, ``FusionSpec.speech_pool``):
  ``<root>/frames-<id>/<ab>/<sha256>.npy``, float16 ``(frames, dim)``. In memory all clips'
  frames are one :class:`FrameBank`.

Files are written to a temporary name and renamed, so a killed run leaves no torn entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from clasp_ingest.errors import ConfigError, MediaDecodeError
from clasp_ingest.log import get_logger
from clasp_ingest.model.assets import atomic_write
from clasp_ingest.model.base import FrameSpeechEncoder, SpectrogramEncoder, SpeechEncoder, TextEncoder

__all__ = [
    "Backbones",
    "FeatureCache",
    "FeatureSet",
    "FrameBank",
    "ProgressFn",
    "compute_features",
    "default_cache_dir",
    "encoder_identity",
    "file_sha256",
    "text_features",
]

log = get_logger("training.features")

#: ``progress(stage, done, total)``; stages: ``"audio features"``, ``"text features"``.
ProgressFn = Callable[[str, int, int], None]


class Backbones(Protocol):
    """The frozen parts of a CLASP model that training reads features from."""

    @property
    def speech(self) -> SpeechEncoder: ...

    @property
    def spectrogram(self) -> SpectrogramEncoder: ...

    @property
    def text(self) -> TextEncoder: ...


class FrameBank:
    """Variable-length speech frames of many clips in one float16 array, indexed like rows.

    Row ``i`` is ``frames[starts[i] : starts[i] + lengths[i]]``. Indexing with a slice, an
    integer array or a boolean mask gives another bank over the same frames (no copy);
    :meth:`padded` gives a zero-padded float32 ``(rows, longest, dim)`` batch, the input of
    a head that pools frames (:class:`~clasp_ingest.model.fusion.PooledFusion`).
    """

    def __init__(self, frames: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
        if frames.ndim != 2 or len(starts) != len(lengths):
            raise ValueError(f"frames must be (n, dim) and starts/lengths aligned, got {frames.shape}")
        self.frames = frames
        self.starts = np.asarray(starts, np.int64)
        self.lengths = np.asarray(lengths, np.int64)

    @classmethod
    def stack(cls, clips: Sequence[np.ndarray | Path]) -> FrameBank:
        """One bank over ``clips``: ``(frames, dim)`` arrays or ``.npy`` files of them.

        Files are read one at a time straight into the bank (a training set's frames can be
        many GB); a clip given twice (the same array object or path) is stored once.
        """
        unique: dict[Any, np.ndarray | Path] = {}
        for clip in clips:
            unique.setdefault(_clip_key(clip), clip)
        shapes = [_clip_shape(clip) for clip in unique.values()]
        if not shapes:
            raise ValueError("a frame bank needs at least one clip")
        dims = {dim for _, dim in shapes}
        if len(dims) != 1:
            raise ValueError(f"clips have frames of different widths: {sorted(dims)}")
        offsets = np.concatenate([[0], np.cumsum([n for n, _ in shapes])]).astype(np.int64)
        frames = np.empty((int(offsets[-1]), dims.pop()), np.float16)
        slot = {}
        for i, (key, clip) in enumerate(unique.items()):
            frames[offsets[i] : offsets[i + 1]] = np.load(clip) if isinstance(clip, Path) else clip
            slot[key] = i
        rows = [slot[_clip_key(clip)] for clip in clips]
        return cls(frames, offsets[rows], np.diff(offsets)[rows])

    @property
    def dim(self) -> int:
        return int(self.frames.shape[1])

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: Any) -> FrameBank:
        return FrameBank(self.frames, self.starts[index], self.lengths[index])

    def padded(self, rows: Any = None) -> np.ndarray:
        """float32 ``(len(rows), longest, dim)``, each clip's frames first and zeros after."""
        from clasp_ingest.model.base import pad_frames

        starts = self.starts if rows is None else self.starts[rows]
        lengths = self.lengths if rows is None else self.lengths[rows]
        return pad_frames([self.frames[s : s + n] for s, n in zip(starts, lengths, strict=True)])


def _clip_key(clip: np.ndarray | Path) -> Any:
    return clip if isinstance(clip, Path) else id(clip)


def _clip_shape(clip: np.ndarray | Path) -> tuple[int, int]:
    if isinstance(clip, Path):
        with clip.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape = read(fh)[0]
    else:
        shape = clip.shape
    if len(shape) != 2:
        where = clip if isinstance(clip, Path) else "an array"
        raise ValueError(f"speech frames must be (frames, dim), got {shape} in {where}")
    return int(shape[0]), int(shape[1])


@dataclass(frozen=True)
class FeatureSet:
    """Aligned per-item features: row ``i`` of each array belongs to the same clip/caption.

    ``speech`` is a ``(n, dim)`` array of pooled vectors, or a :class:`FrameBank` of each
    clip's frames when the model's head pools them (``compute_features`` decides).
    """

    speech: np.ndarray | FrameBank
    spectrogram: np.ndarray
    text: np.ndarray
    unreadable: tuple[int, ...] = ()  # input positions left out (``compute_features(skip_unreadable=True)``)

    def __post_init__(self) -> None:
        n = {len(self.speech), len(self.spectrogram), len(self.text)}
        if len(n) != 1:
            raise ValueError(
                f"feature arrays differ in length: speech {len(self.speech)}, "
                f"spectrogram {len(self.spectrogram)}, text {len(self.text)}"
            )

    def __len__(self) -> int:
        return len(self.text)


def default_cache_dir() -> Path:
    """``~/.cache/clasp-ingest/features`` (``$XDG_CACHE_HOME`` honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clasp-ingest" / "features"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def encoder_identity(model: object, *parts: str) -> str:
    """A short stable hash of what makes the named parts' output differ.

    For a ``ClaspModel`` that is each part's ``ComponentSpec`` (backend, source, dim,
    options) from ``model.config``, the config's ``seed`` (random tiny backbones) and the
    encoder's class and dtype; for any other object, its class and its ``dim``.
    """
    config = getattr(model, "config", None)
    described: dict[str, Any] = {"seed": getattr(config, "seed", None)}
    for part in parts:
        encoder = getattr(model, part)
        to_dict = getattr(getattr(config, part, None), "to_dict", None)
        described[part] = {
            "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
            "dtype": str(getattr(encoder, "dtype", "")),
            "dim": int(encoder.dim),
            "spec": to_dict() if callable(to_dict) else None,
        }
    blob = json.dumps(described, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class FeatureCache:
    """Content-addressed feature store under ``root`` (no disk at all when ``root`` is None)."""

    def __init__(self, root: Path | str | None) -> None:
        self.root = None if root is None else Path(root)  # evaluate(cache_dir="cache"): str / str failed

    def _path(self, kind: str, identity: str, key: str, suffix: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / f"{kind}-{identity}" / key[:2] / f"{key}{suffix}"

    def get_audio(self, identity: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._path("audio", identity, key, ".npz")
        if path is None or not path.is_file():
            return None
        with np.load(path) as data:
            return data["speech"], data["spectrogram"]

    def put_audio(self, identity: str, key: str, speech: np.ndarray, spectrogram: np.ndarray) -> None:
        path = self._path("audio", identity, key, ".npz")
        if path is not None:
            atomic_write(path, lambda fh: np.savez(fh, speech=speech, spectrogram=spectrogram))

    def frames_file(self, identity: str, key: str) -> Path | None:
        """The ``.npy`` file of a clip's cached speech frames (float16 ``(frames, dim)``), if any."""
        path = self._path("frames", identity, key, ".npy")
        return path if path is not None and path.is_file() else None

    def put_frames(self, identity: str, key: str, frames: np.ndarray) -> None:
        path = self._path("frames", identity, key, ".npy")
        if path is not None:
            atomic_write(path, lambda fh: np.save(fh, np.asarray(frames, np.float16)))

    def get_text(self, identity: str, key: str) -> np.ndarray | None:
        path = self._path("text", identity, key, ".npy")
        if path is None or not path.is_file():
            return None
        return np.asarray(np.load(path))

    def put_text(self, identity: str, key: str, embedding: np.ndarray) -> None:
        path = self._path("text", identity, key, ".npy")
        if path is not None:
            atomic_write(path, lambda fh: np.save(fh, embedding))


def load_waveform(path: Path) -> np.ndarray:
    """16 kHz mono float32 samples of a media file, decoded with ffmpeg."""
    from clasp_ingest.media.decode import decode_audio

    return np.asarray(decode_audio(path), dtype=np.float32)


def compute_features(
    model: Backbones,
    audio: Sequence[Path],
    texts: Sequence[str],
    *,
    cache: FeatureCache,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
    loader: Callable[[Path], np.ndarray] = load_waveform,
    skip_unreadable: bool = False,
) -> FeatureSet:
    """Speech, spectrogram and text features of aligned (audio, text) pairs, cached.

    For a model whose head pools speech frames itself (``model.speech_frames``), ``speech``
    is a :class:`FrameBank` of each clip's frames (the speech encoder needs
    ``encode_frames``); otherwise an array of pooled vectors.

    An audio file that cannot be read or decoded raises, or with ``skip_unreadable`` is
    logged and left out: the result then holds the other pairs, in order, and lists the
    left-out positions in ``unreadable``.
    """
    if len(audio) != len(texts):
        raise ValueError(f"{len(audio)} audio files but {len(texts)} texts")
    frames = bool(getattr(model, "speech_frames", False))
    if frames and not isinstance(model.speech, FrameSpeechEncoder):
        raise ConfigError(
            f"the model's head pools speech frames but its speech encoder "
            f"{type(model.speech).__name__} gives none (no encode_frames); use speech_pool 'mean'"
        )
    keys, found = _audio_features(model, audio, cache, batch_size, progress, loader, skip_unreadable, frames)
    kept = [(i, key) for i, key in enumerate(keys) if key is not None]
    if audio and not kept:
        raise MediaDecodeError(str(audio[0]), f"none of the {len(audio)} audio files could be decoded")
    text = text_features(model, [texts[i] for i, _ in kept], cache, batch_size, progress)
    speech: np.ndarray | FrameBank
    if frames:
        speech = FrameBank.stack([found[key][2] for _, key in kept])
    else:
        speech = np.stack([found[key][0] for _, key in kept])
    return FeatureSet(
        speech=speech,
        spectrogram=np.stack([found[key][1] for _, key in kept]),
        text=text,
        unreadable=tuple(i for i, key in enumerate(keys) if key is None),
    )


def _content_key(path: Path, skip_unreadable: bool) -> str | None:
    try:
        return file_sha256(path)
    except OSError as exc:
        if not skip_unreadable:
            raise MediaDecodeError(str(path), f"cannot read it: {exc}") from exc
        log.warning("skipping %s: %s", path, exc)
        return None


def _audio_features(
    model: Backbones,
    paths: Sequence[Path],
    cache: FeatureCache,
    batch_size: int,
    progress: ProgressFn | None,
    loader: Callable[[Path], np.ndarray],
    skip_unreadable: bool,
    frames: bool = False,
) -> tuple[list[str | None], dict[str, tuple[Any, ...]]]:
    """Each path's content key (``None``: unreadable, skipped) and its features by key:
    (speech vector, spectrogram vector) and, with ``frames``, the speech frames (an array, or
    the cache file holding them: :meth:`FrameBank.stack` reads those one at a time)."""
    identity = encoder_identity(model, "speech", "spectrogram")
    frame_identity = encoder_identity(model, "speech")
    keys = [_content_key(path, skip_unreadable) for path in paths]
    found: dict[str, tuple[Any, ...]] = {}
    missing: dict[str, Path] = {}
    for key, path in zip(keys, paths, strict=True):
        if key is not None and key not in found and key not in missing:
            hit = cache.get_audio(identity, key)
            clip = cache.frames_file(frame_identity, key) if frames and hit is not None else None
            if hit is None or (frames and clip is None):
                missing[key] = path
            else:
                found[key] = hit if clip is None else (*hit, clip)
    log.info("audio features: %d cached, %d to compute", len(found), len(missing))
    done = len(paths) - len(missing)
    bad: set[str] = set()
    for batch in _batches(list(missing.items()), batch_size):
        loaded: list[tuple[str, np.ndarray]] = []
        for key, path in batch:
            try:
                loaded.append((key, _samples(loader, path)))
            except (MediaDecodeError, OSError) as exc:
                if not skip_unreadable:
                    raise
                log.warning("skipping %s: %s", path, exc)
                bad.add(key)
        if loaded:
            waves = [wave for _, wave in loaded]
            sg = model.spectrogram.encode(waves)
            if frames:
                exact = model.speech.encode_frames(waves)  # type: ignore[attr-defined]
                sp = [f.mean(0, dtype=np.float64) for f in exact]  # as encode() pools them
                clips = [np.asarray(f, np.float16) for f in exact]
            else:
                sp = list(model.speech.encode(waves))
            for j, ((key, _), s, g) in enumerate(zip(loaded, sp, sg, strict=True)):
                vectors = (np.asarray(s, np.float32), np.asarray(g, np.float32))
                cache.put_audio(identity, key, *vectors)
                if frames:
                    cache.put_frames(frame_identity, key, clips[j])
                found[key] = (*vectors, clips[j]) if frames else vectors
        done += len(batch)
        if progress is not None:
            progress("audio features", min(done, len(paths)), len(paths))
    return [None if key in bad else key for key in keys], found


def _samples(loader: Callable[[Path], np.ndarray], path: Path) -> np.ndarray:
    """``loader(path)``; a clip without a single sample (a 0-second file) is as unreadable as one
    that does not decode: it has nothing to embed."""
    wave = loader(path)
    if len(wave) == 0:
        raise MediaDecodeError(
            str(path), "it holds no audio samples (0 seconds); remove it or give a longer clip"
        )
    return wave


def text_features(
    model: Backbones,
    texts: Sequence[str],
    cache: FeatureCache,
    batch_size: int = 32,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """``(n, dim)`` text-encoder outputs of ``texts``, read from or written to ``cache``."""
    identity = encoder_identity(model, "text")
    keys = [hashlib.sha256(text.encode("utf-8")).hexdigest() for text in texts]
    found: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in found and key not in missing:
            hit = cache.get_text(identity, key)
            if hit is None:
                missing[key] = text
            else:
                found[key] = hit
    done = len(texts) - len(missing)
    for batch in _batches(list(missing.items()), max(batch_size, 32)):
        embedded = model.text.encode([text for _, text in batch])
        for (key, _), vector in zip(batch, embedded, strict=True):
            found[key] = np.asarray(vector, np.float32)
            cache.put_text(identity, key, found[key])
        done += len(batch)
        if progress is not None:
            progress("text features", min(done, len(texts)), len(texts))
    return np.stack([found[k] for k in keys])


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
